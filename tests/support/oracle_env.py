"""Shared set-up for the oracle and audit tests: contracts on anvil, readings, the example community."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from oracle.types import RewardParams

COMMUNITY = "cer-example"
ANNA, BRUNO = "0x1000000000000000000000000000000000000001", "0x1000000000000000000000000000000000000002"
QH0 = 1704067200  # 2024-01-01T00:00:00Z
PARAMS = RewardParams(modelId=3, rateConsumption=10**12, rateProduction=2 * 10**12, rateNoPeak=5 * 10**15,
                      peakMwh=300_000, w1Bps=5000, w2Bps=5000, effectiveFrom=0)
FLOWS = {  # flow -> (supplier, device, account)
    "f-anna-load": ("sup-home", "IT001E00000001", 1),
    "f-bruno-load": ("sup-utility", "IT001E00000002", 1),
    "f-bruno-pv": ("sup-utility", "PV-0001", 2),
}


def iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reading(flow: str, ts: int, energy: int | None, *, interval: int = 900, msg: str | None = None,
            community: str = COMMUNITY) -> dict[str, Any]:
    """A canonical lec.reading/1 record (every field present)."""
    supplier, device, account = FLOWS[flow]
    return {"schema": "lec.reading/1", "community_id": community, "supplier_id": supplier, "device_id": device,
            "flow_id": flow, "channel": "http", "message_id": msg or f"{flow}:{ts}:{interval}:0",
            "ts": iso(ts), "interval_s": interval, "ingest_ts": iso(ts + 60) + "", "current_a": None,
            "voltage_v": None, "power_active_w": None, "power_reactive_var": None, "energy_mwh": energy,
            "charge_pct": None, "measurement": "production" if account == 2 else "load", "account": account,
            "estimated": False, "interpolated": False, "late": False, "conflict": False}


def deploy_chain(rpc: str, run_dir: Path, params: RewardParams | None = PARAMS) -> tuple[Any, Any, Path]:
    """Notary + token for the example community, oracle role to anvil account 1, both members added.

    Returns (deployment, admin client, deployment file)."""
    from oracle.chain.client import NotaryClient, deploy, save_deployment
    from oracle.chain.keys import address_of, dev_key

    dep = deploy(rpc, dev_key(0), oracle_address=address_of(dev_key(1)), community_ids=[COMMUNITY], params=params)
    admin = NotaryClient(rpc, dep, dev_key(0))
    for wallet in (ANNA, BRUNO):
        admin.add_member(COMMUNITY, wallet)
    path = run_dir / "chain" / "deployment.json"
    save_deployment(dep, path)
    return dep, admin, path


def oracle_client(rpc: str, dep: Any) -> Any:
    from oracle.chain.client import NotaryClient
    from oracle.chain.keys import dev_key

    return NotaryClient(rpc, dep, dev_key(1))


def write_readings_table(lake_root: str, readings: list[dict[str, Any]]) -> None:
    """The lake's `readings` Delta table (lakehouse.tables schema), as the sink writes it."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from lakehouse.tables import READINGS_SCHEMA

    rows = []
    for i, r in enumerate(readings):
        ts = datetime.fromisoformat(r["ts"])
        row = {f.name: r.get(f.name) for f in READINGS_SCHEMA}
        row.update(ts=ts, ingest_ts=datetime.fromisoformat(r["ingest_ts"]), date=ts.date(), kafka_partition=0,
                   kafka_offset=i)
        rows.append(row)
    write_deltalake(f"{lake_root}/readings", pa.Table.from_pylist(rows, schema=READINGS_SCHEMA), mode="append",
                    partition_by=["community_id", "date"])


def setup_run(run: Path, rpc: str, **extra: str) -> tuple[dict[str, str], Any, Any, Any, Any]:
    """A run dir with the example community registered and the contracts deployed.

    Returns (LEC_* environment for `lec` subprocesses, registry, secret store, deployment, oracle client)."""
    import os

    from lec.registry import Registry, SecretStore
    from tests.conftest import EXAMPLE_COMMUNITY

    env = {**os.environ, "LEC_RUN_DIR": str(run), "LEC_CHAIN_RPC": rpc,
           "LEC_REGISTRY_URL": f"sqlite:///{run / 'registry.db'}",
           "LEC_SECRETS_URL": f"sqlite:///{run / 'secrets' / 'device-secrets.db'}",
           "LEC_LAKE_URI": str(run / "lake"), **extra}
    secrets = SecretStore(env["LEC_SECRETS_URL"])
    reg = Registry(env["LEC_REGISTRY_URL"], secrets)
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    dep, _, _ = deploy_chain(rpc, run)
    return env, reg, secrets, dep, oracle_client(rpc, dep)
