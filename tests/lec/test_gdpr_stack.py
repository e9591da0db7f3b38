"""Erasure on what a real run leaves: a member whose meter sent over MQTT and whose PV plant and battery
sent over HTTP, and a meter whose curve came over SFTP, with KPIs computed and quarter-hours
anchored, are erased; no store of docs/gdpr.md keeps a trace, other members' take-outs still
verify on the chain and another member's export round-trips."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.gdpr.export import plain_types, read_export
from lakehouse.gdpr.files import scan
from lakehouse.tables import arrow_schema, list_tables, open_table, query, table_uri
from lec.services import start_anvil
from tests.conftest import copy_demo_run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the first test pays for the session demo

USER, METER = "u-01", "IT001E00000001"           # household 1: MQTT meter, HTTP PV plant and battery
OTHER = "u-02"


def lec(run: Path, *args: str, timeout: float = 600) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEC_")}
    r = subprocess.run([sys.executable, "-m", "lec.cli", *args], capture_output=True, text=True, timeout=timeout,
                       env={**env, "LEC_RUN_DIR": str(run)}, cwd=run.parent)
    assert r.returncode == 0, f"lec {' '.join(args)}: {r.stdout[-2000:]} {r.stderr[-3000:]}"
    return r.stdout


def lake_hits(root: str, needles: list[str]) -> list[str]:
    """Rows naming a needle in any string column of every readable version of every table."""
    pattern = re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(map(re.escape, needles)) + r")(?![A-Za-z0-9_])")
    hits = []
    for name in list_tables(root):
        latest = open_table(table_uri(name, root=root)).version()
        for v in range(latest + 1):
            try:
                dt = open_table(table_uri(name, root=root), version=v)
                rows = dt.to_pyarrow_table().to_pylist()
            except Exception:  # noqa: BLE001, S112 - an old version made unreadable is what erasure wants
                continue
            cols = [f.name for f in arrow_schema(dt) if str(f.type) in ("string", "large_string", "string_view")]
            hits += [f"{name}@{v}: {r}" for r in rows if any(isinstance(r[c], str) and pattern.search(r[c])
                                                              for c in cols)][:3]
    return hits


@pytest.fixture(scope="module")
def erased(demo_run: tuple[dict, str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    summary, _, source = demo_run
    run = copy_demo_run(source, tmp_path_factory.mktemp("gdpr") / "run")
    snap = json.loads(json.dumps(_registry_doc(run)))
    needles = [USER, *snap["devices"], *snap["flows"], snap["sftp_meter"], *snap["sftp_flows"]]
    lake = str(run / "lake")
    ids = ", ".join(f"'{d}'" for d in snap["devices"] + [snap["sftp_meter"]])
    channels = query(f"SELECT DISTINCT channel FROM t WHERE device_id IN ({ids})",
                     {"t": open_table(table_uri("readings", root=lake))}).column("channel").to_pylist()
    lec(run, "kpi", "--community", "cer-demo", "--from", "2016-03-26", "--to", "2016-03-27", "--resolution", "1d",
        "--level", "member", "--store", "--format", "json")
    kpi_members = {r for n in list_tables(lake) if n.startswith("kpi")
                   for r in query("SELECT DISTINCT member_id FROM t", {"t": open_table(table_uri(n, root=lake))})
                   .column("member_id").to_pylist()} if any(n.startswith("kpi") for n in list_tables(lake)) else set()
    ids = ", ".join(f"'{d}'" for d in snap["devices"])
    leaves = query(f"SELECT count(*) n FROM t WHERE device_id IN ({ids})",
                   {"t": open_table(table_uri("oracle_leaves", root=lake))}).column("n")[0].as_py()
    before = scan(run, needles)
    watch_log = (run / "logs" / "sftp-watch.log").read_text()
    from lec.pseudonym import pseudonym

    pseudonyms = [pseudonym(i, run) for i in needles]
    logs_before = scan(run / "logs", pseudonyms)  # logs name flows and files by pseudonym, never by id
    receipt = json.loads(lec(run, "gdpr", "erase", "--user", USER))
    sftp_receipt = json.loads(lec(run, "gdpr", "erase", "--device", snap["sftp_meter"]))
    return {"run": run, "needles": needles, "pseudonyms": pseudonyms, "watch_log": watch_log,
            "sftp_meter": snap["sftp_meter"], "channels": channels, "kpi_members": kpi_members, "leaves": leaves,
            "other_wallet": snap["other_wallet"], "before": before, "logs_before": logs_before, "receipt": receipt, "sftp_receipt": sftp_receipt, "summary": summary}


def _registry_doc(run: Path) -> dict:
    from lec.config import load_settings
    from lec.registry import open_registry

    snap = open_registry(load_settings({"LEC_RUN_DIR": str(run)})).snapshot()
    devices = sorted(d.id for d in snap.devices.values() if d.user_id == USER)
    sftp_meter = min(f.device_id for f in snap.flows.values() if f.channel == "sftp")
    return {"devices": devices, "flows": sorted(f.id for f in snap.flows.values() if f.device_id in devices),
            "sftp_meter": sftp_meter,
            "sftp_flows": sorted(f.id for f in snap.flows.values() if f.device_id == sftp_meter),
            "other_wallet": next(m.wallet for (_, u), m in snap.members.items() if u == OTHER)}


def test_the_member_was_everywhere_before(erased: dict) -> None:
    assert sorted(erased["channels"]) == ["http", "mqtt", "sftp"]
    assert USER in erased["kpi_members"] and erased["leaves"] > 0
    assert any("sftp" in h for h in erased["before"]) and any("raw" in h for h in erased["before"])
    assert erased["logs_before"]  # the SFTP meter's flow, by pseudonym: the logs held no id to begin with


def test_log_lines_name_files_by_pseudonym(erased: dict) -> None:
    # the watcher logged the utility's files without their PODs (flow and file name pseudonymised)
    assert "acknowledged" in erased["watch_log"] and erased["sftp_meter"] not in erased["watch_log"]


def test_no_store_keeps_a_trace(erased: dict) -> None:
    run, needles = erased["run"], erased["needles"]
    assert scan(run, needles) == []  # every file by name and content: logs, SFTP areas, DBs, take-outs
    assert scan(run / "logs", erased["pseudonyms"]) == []  # nor the pseudonyms log lines used for them
    assert lake_hits(str(run / "lake"), needles) == []  # every readable version of every Delta table
    from lec.config import load_settings
    from lec.registry import open_registry

    snap = open_registry(load_settings({"LEC_RUN_DIR": str(run)})).snapshot()
    assert USER not in {u for (_, u) in snap.members} and METER not in snap.devices
    assert not any(f.channel == "sftp" and f.device_id in erased["needles"] for f in snap.flows.values())


def test_receipt_counts_and_log_hold_no_personal_data(erased: dict) -> None:
    r, run = erased["receipt"], erased["run"]
    assert r["tables"]["readings"] > 0 and r["tables"]["oracle_leaves"] == erased["leaves"] > 0
    d = erased["sftp_receipt"]
    assert d["sftp"]["folders"] > 0 and d["sftp"]["files"] + d["sftp"]["lines"] > 0
    # household 1's ids and pseudonyms are in no log (MQTT/HTTP log no device); the SFTP meter's are
    assert d["logs"] and r["takeouts"] and d["tables"]["readings"] > 0
    assert d["raw_zone"]["folders"] > 0 and d["raw_zone"]["files"] + d["raw_zone"]["lines"] > 0
    assert "memory" in r["kafka"]["residual_window"]  # stated, never hidden
    log = (run / "gdpr" / "erasure-log.jsonl").read_text()
    # both requests logged, in order (the SFTP meter's erasure came after the member's)
    assert [json.loads(ln)["request_id"] for ln in log.splitlines()][-2:] == [r["request_id"], d["request_id"]]
    assert scan(run / "gdpr", erased["needles"]) == []


def test_other_members_takeouts_still_verify(erased: dict, tmp_path: Path) -> None:
    run = erased["run"]
    proc, rpc = start_anvil(tmp_path, state=run / "chain" / "anvil-state.json")
    try:
        wallet = erased["other_wallet"]  # read before the erasure: no SFTP meter is left to pick after it
        mine = tmp_path / "takeout-other.json"
        lec(run, "audit", "takeout", "--member", wallet, "--from", "2016-03-25T23:00:00Z",
            "--to", "2016-03-26T23:00:00Z", "--out", str(mine), "--rpc", rpc)
        assert json.loads(mine.read_text())["anchors"]
        assert "OK" in lec(run, "audit", "verify", str(mine), "--rpc", rpc)
        # the demo's community take-out, with the erased member's readings dropped, still verifies
        assert "OK" in lec(run, "audit", "verify", str(run / "takeout.json"), "--rpc", rpc)
    finally:
        proc.stop()


def test_another_members_export_round_trips(erased: dict, tmp_path: Path) -> None:
    run = erased["run"]
    out = tmp_path / "export.zip"
    lec(run, "gdpr", "export", "--user", OTHER, "--out", str(out))
    archive = read_export(out)
    assert archive["manifest"]["subject"]["user"] == OTHER
    assert {r["id"] for r in archive["registry"]["users"]} == {OTHER}
    devices = archive["manifest"]["subject"]["devices"]
    lake = str(run / "lake")
    expected = plain_types(query(f"SELECT * FROM t WHERE device_id IN ({', '.join(repr(d) for d in devices)})",
                                 {"t": open_table(table_uri("readings", root=lake))}))
    got = archive["tables"]["readings"]
    assert got.num_rows == expected.num_rows > 0
    key = ["device_id", "ts", "message_id"] if "message_id" in got.column_names else ["device_id", "ts"]
    assert got.sort_by([(k, "ascending") for k in key]).to_pylist() == \
        expected.sort_by([(k, "ascending") for k in key]).to_pylist()
    assert archive["csv"]["readings"].num_rows == got.num_rows
    assert archive["anchors"] and all(a["txHash"] for a in archive["anchors"])
    assert USER not in json.dumps(archive["registry"])
