"""The oracle's engine against a real anvil: windows, anchors, versions, idempotency, claims."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest

from lec.registry import Registry, SecretStore
from oracle.agent import OracleEngine
from oracle.anchoring import Anchorer
from oracle.claims import Claimer
from oracle.commitment import device_key, salt
from oracle.merkle import READINGS_TYPES, StandardMerkleTree
from oracle.qh import QhWindows
from oracle.store import OracleLake
from tests.conftest import EXAMPLE_COMMUNITY
from tests.support.oracle_env import (
    ANNA,
    BRUNO,
    COMMUNITY,
    FLOWS,
    PARAMS,
    QH0,
    deploy_chain,
    oracle_client,
    reading,
)

QH1 = QH0 + 900

READINGS = [
    reading("f-anna-load", QH0, 120_000, interval=450),
    reading("f-anna-load", QH0 + 450, 100_000, interval=450),
    reading("f-anna-load", QH0 + 450, 999, interval=450),              # same message id: a redelivery
    reading("f-anna-load", QH0, 5_000_000, interval=3600),             # hourly: never anchored
    reading("f-anna-load", QH0 + 600, 7, interval=600),                # crosses into QH1: never anchored
    reading("f-bruno-load", QH0, 400_000),
    reading("f-bruno-pv", QH0, -500_000),
    reading("f-anna-load", QH1, 50_000),
    reading("f-bruno-pv", QH1, -10_000),
    reading("f-anna-load", QH0 + 2100, 1_000),  # crosses QH2/QH3 so never counted; moves the watermark to QH1 + 900 + 300
]
READINGS[3]["message_id"] = "hourly"
READINGS[4]["message_id"] = "crossing"
LATE = reading("f-bruno-pv", QH1 + 450, -5_000, interval=450)


def r1(rate: int, s: int, part: int, total: int) -> int:
    return rate * s * part // total if total else 0


def expected_rewards(c_anna: int, c_bruno: int | None, g_bruno: int) -> dict[str, int]:
    """oracle.md §7 model 3 with PARAMS, written out (c_bruno None: Bruno has no consumption leaf)."""
    C, G = c_anna + (c_bruno or 0), g_bruno
    S = min(C, G)
    out = {}
    for wallet, cm, gm in ((ANNA, c_anna, 0), (BRUNO, c_bruno, g_bruno)):
        rr1 = r1(PARAMS.rateConsumption, S, cm or 0, C) + r1(PARAMS.rateProduction, S, gm, G)
        rr2 = PARAMS.rateNoPeak if cm is not None and cm <= PARAMS.peakMwh else 0
        r = (PARAMS.w1Bps * rr1 + PARAMS.w2Bps * rr2) // 10000
        if r:
            out[wallet] = r
    return out


@pytest.fixture(scope="module")
def world(anvil_rpc: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("oracle")
    secrets = SecretStore(f"sqlite:///{tmp / 'secrets.db'}")
    reg = Registry(f"sqlite:///{tmp / 'registry.db'}", secrets)
    reg.migrate()
    reg.load_file(EXAMPLE_COMMUNITY)
    dep, admin, _ = deploy_chain(anvil_rpc, tmp)
    client = oracle_client(anvil_rpc, dep)
    return {"tmp": tmp, "secrets": secrets, "registry": reg, "dep": dep, "admin": admin, "client": client}


def make_engine(world: dict, lake_dir: str) -> OracleEngine:
    lake = OracleLake(str(world["tmp"] / lake_dir))
    published: list[dict] = []
    anchorer = Anchorer(world["client"], lake, world["secrets"], world["registry"].snapshot,
                        chain_id=world["dep"].chainId, notary=world["dep"].notary, publish=published.extend)
    engine = OracleEngine(QhWindows(300), anchorer, Claimer(world["client"], lake))
    engine.published = published  # type: ignore[attr-defined]
    return engine


def test_windows_close_on_watermark_only() -> None:
    w2 = QhWindows(300)
    w2.add(reading("f-anna-load", QH0, 1))
    w2.add(reading("f-anna-load", QH0 + 1199, 1))
    assert [b.qh for b in w2.due()] == []
    w2.add(reading("f-anna-load", QH0 + 1200, 1))          # watermark = QH0 + 900 + grace
    assert [b.qh for b in w2.due()] == [QH0]
    other = QhWindows(300)                                    # watermarks are per community
    other.add(reading("f-anna-load", QH0, 1))
    other.add(reading("f-anna-load", QH0 + 5000, 1, community="other"))
    assert other.due() == []


def test_anchor_versions_idempotency_and_claims(world: dict) -> None:
    client = world["client"]
    engine = make_engine(world, "lake")
    assert engine.ingest([orjson.dumps(r) for r in READINGS] + [b"{not json"]) == 6
    assert engine.bad == 1 and engine.windows.duplicates == 1
    assert engine.anchor_due_sync() == 2
    a0 = client.get_anchor(COMMUNITY, QH0, 1)
    assert (a0.leafCount, a0.consumptionMwh, a0.productionMwh, a0.sharedMwh) == (3, 620_000, 500_000, 500_000)
    rewards0 = expected_rewards(220_000, 400_000, 500_000)
    assert a0.rewardTotal == sum(rewards0.values()) and a0.paramsVersion == 1

    # the readings root is the OpenZeppelin tree of [deviceKey, qh, mWh, salt] of the three leaves
    values = []
    for flow, energy in (("f-anna-load", 220_000), ("f-bruno-load", 400_000), ("f-bruno-pv", -500_000)):
        sup, dev, _ = FLOWS[flow]
        key = device_key(COMMUNITY, sup, dev, flow)
        values.append([key, QH0, energy, salt(world["secrets"].get(dev), key, QH0)])
    assert a0.readingsRoot == StandardMerkleTree.of(values, READINGS_TYPES).root

    # nothing changes: nothing is anchored again, now or after a restart (same lake, or a lost lake)
    assert engine.anchor_due_sync() == 0
    for lake_dir in ("lake", "lost-lake"):
        again = make_engine(world, lake_dir)
        again.ingest([orjson.dumps(r) for r in READINGS])
        assert again.anchor_due_sync() == 0
        assert again.anchorer.unchanged == 2
    assert len(OracleLake(str(world["tmp"] / "lost-lake")).anchors()) == 2   # back-filled from the chain
    assert client.latest_version(COMMUNITY, QH1) == 1

    # a late reading: version 2 of QH1 with the full leaf set
    engine.ingest([orjson.dumps(LATE)])
    assert engine.anchor_due_sync() == 1
    a1 = client.get_anchor(COMMUNITY, QH1, 2)
    assert (a1.leafCount, a1.consumptionMwh, a1.productionMwh) == (2, 50_000, 15_000)
    assert client.get_anchor(COMMUNITY, QH1, 1).productionMwh == 10_000
    records = engine.published
    assert [(r["qh"], r["version"]) for r in records] == [(QH0, 1), (QH1, 1), (QH1, 2)]
    schema = orjson.loads((Path(__file__).resolve().parents[2] / "schemas" / "anchor.json").read_bytes())
    for r in records:
        jsonschema.validate(r, schema)   # the published contract of lec.oracle.anchors
    assert OracleLake(str(world["tmp"] / "lake")).latest_anchors()[(COMMUNITY, QH1)]["version"] == 2

    # claims on members' behalf: balances equal the latest versions' rewards; a second run mints nothing
    rewards1 = expected_rewards(50_000, None, 15_000)
    assert engine.claimer.run_once() > 0
    expected = {w: rewards0.get(w, 0) + rewards1.get(w, 0) for w in (ANNA, BRUNO)}
    assert {w: client.balance_of(COMMUNITY, w) for w in (ANNA, BRUNO)} == expected
    assert engine.claimer.pending == {}
    restarted = make_engine(world, "lake")
    assert restarted.claimer.load_unclaimed() == 0
    Claimer(client, OracleLake(str(world["tmp"] / "lost-lake"))).load_unclaimed()
    leftovers = Claimer(client, OracleLake(str(world["tmp"] / "lost-lake")))
    leftovers.load_unclaimed()
    leftovers.run_once()  # re-claiming is harmless: the contract mints only what is still due
    assert {w: client.balance_of(COMMUNITY, w) for w in (ANNA, BRUNO)} == expected


def test_lost_records_are_backfilled_from_chain(world: dict) -> None:
    """After test_anchor_versions...: a lake that missed every record gets all versions back, superseded ones included."""
    engine = make_engine(world, "empty-lake")
    engine.ingest([orjson.dumps(r) for r in READINGS + [LATE]])
    assert engine.anchor_due_sync() == 0
    recorded = [(r["qh"], r["version"]) for r in OracleLake(str(world["tmp"] / "empty-lake")).anchors()]
    assert recorded == [(QH0, 1), (QH1, 1), (QH1, 2)]
    assert [(r["qh"], r["version"]) for r in engine.published] == [(QH1, 1), (QH0, 1), (QH1, 2)]


def test_without_parameters_then_with(world: dict, anvil_rpc: str) -> None:
    """No parameters in force: anchored with paramsVersion 0 and no rewards; a version set later
    (effective from a later QH) is picked up at the next anchoring round."""
    from dataclasses import replace

    dep, admin, _ = deploy_chain(anvil_rpc, world["tmp"] / "noparams", params=None)
    client = oracle_client(anvil_rpc, dep)
    lake = OracleLake(str(world["tmp"] / "noparams-lake"))
    engine = OracleEngine(QhWindows(300), Anchorer(client, lake, world["secrets"], world["registry"].snapshot,
                                                   chain_id=dep.chainId, notary=dep.notary), None)
    engine.ingest([orjson.dumps(r) for r in READINGS])
    assert engine.anchor_due_sync() == 2
    a = client.get_anchor(COMMUNITY, QH0, 1)
    assert (a.paramsVersion, a.rewardTotal, a.rewardsRoot) == (0, 0, b"\0" * 32)
    admin.set_params(COMMUNITY, replace(PARAMS, effectiveFrom=QH1 + 900))
    engine.ingest([orjson.dumps(reading("f-anna-load", QH1 + 900, 10)),
                   orjson.dumps(reading("f-anna-load", QH1 + 3000, 1, msg="wm"))])
    assert engine.anchor_due_sync() == 1
    b = client.get_anchor(COMMUNITY, QH1 + 900, 1)
    assert b.paramsVersion == 1 and b.rewardTotal == PARAMS.rateNoPeak // 2   # model 3, r1 = 0 (no production)


def test_bad_or_future_readings_change_nothing() -> None:
    import time

    w = QhWindows(300)
    bad = reading("f-anna-load", QH0, 5)
    bad["energy_mwh"] = "five"
    engine = OracleEngine(w, None, None)  # type: ignore[arg-type]
    assert engine.ingest([orjson.dumps(bad)]) == 0 and engine.bad == 1
    assert w.buckets == {}
    w.add(reading("f-anna-load", QH0, 5))
    future = int(time.time()) + 10 * 365 * 86400
    w.add(reading("f-anna-load", future - future % 900, 1))
    assert w.watermarks[COMMUNITY] <= int(time.time()) + 300   # capped at now + max_future_s
    assert [b.qh for b in w.due()] == [QH0]                    # QH0 (2024) is closed by the capped watermark


def test_restating_an_anchored_qh_waits_for_the_burst_to_end() -> None:
    import time

    w = QhWindows(300, restate_after_s=0.3)
    w.add(reading("f-anna-load", QH0, 5))
    w.add(reading("f-anna-load", QH0 + 1200, 1, msg="wm"))
    (b,) = w.due()                                   # version 1: at once
    b.settled_revision = b.revision
    w.add(reading("f-bruno-pv", QH0, -3))
    assert w.due() == []                             # version 2 waits until the QH is still
    time.sleep(0.35)
    assert [x.qh for x in w.due()] == [QH0]
