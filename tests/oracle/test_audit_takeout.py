"""`lec audit takeout` and `lec audit verify` end to end on anvil; tampered take-outs are caught."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from oracle.agent import OracleEngine
from oracle.anchoring import Anchorer
from oracle.claims import Claimer
from oracle.qh import QhWindows
from oracle.store import OracleLake
from oracle.verify import verify_takeout
from tests.oracle.test_anchoring import LATE, QH1, READINGS
from tests.support.oracle_env import ANNA, COMMUNITY, reading, setup_run, write_readings_table

ROOT = Path(__file__).resolve().parents[2]
LEC = [sys.executable, "-c", "from lec.cli import main; main()"]


@pytest.fixture(scope="module")
def audited(anvil_rpc: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The example community anchored by the oracle engine (two QHs, one with a version 2)."""
    run = tmp_path_factory.mktemp("audit") / "run"
    env, reg, secrets, dep, client = setup_run(run, anvil_rpc)
    lake = OracleLake(env["LEC_LAKE_URI"])
    engine = OracleEngine(QhWindows(300), Anchorer(client, lake, secrets, reg.snapshot, chain_id=dep.chainId,
                                                   notary=dep.notary), Claimer(client, lake))
    engine.ingest([orjson.dumps(r) for r in READINGS])
    engine.anchor_due_sync()
    engine.ingest([orjson.dumps(LATE)])
    assert engine.anchor_due_sync() == 1
    write_readings_table(env["LEC_LAKE_URI"], READINGS + [LATE])
    return {"env": env, "rpc": anvil_rpc, "run": run}


def lec(audited: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LEC, *args], env=audited["env"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          check=False)


@pytest.fixture(scope="module")
def community_takeout(audited: dict) -> Path:
    out = audited["run"] / "community.json"
    res = lec(audited, "audit", "takeout", "--community", COMMUNITY, "--from", "2024-01-01T00:00:00Z",
              "--to", "2024-01-01T01:00:00Z", "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out


def test_community_takeout_is_complete_and_verifies(audited: dict, community_takeout: Path) -> None:
    doc = orjson.loads(community_takeout.read_bytes())
    assert [(a["qh"], a["version"], a["complete"], len(a["readings"])) for a in doc["anchors"]] == [
        (QH1 - 900, 1, True, 3), (QH1, 2, True, 2)]
    assert all(len(v) == 66 for a in doc["anchors"] for r in a["readings"] for v in (r["values"][0], r["values"][3]))
    res = lec(audited, "audit", "verify", str(community_takeout), "--rpc", audited["rpc"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: 2 quarter-hours, 5 leaves" in res.stdout


def test_openzeppelin_only_auditor_script_agrees(audited: dict, community_takeout: Path, tmp_path: Path) -> None:
    script = ROOT / "examples" / "audit_takeout.js"
    ok = subprocess.run(["node", str(script), str(community_takeout), audited["rpc"]], capture_output=True, text=True,
                        check=False,
                        timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    doc = orjson.loads(community_takeout.read_bytes())
    doc["anchors"][0]["readings"][1]["values"][2] = str(int(doc["anchors"][0]["readings"][1]["values"][2]) + 1)
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(doc))
    res = subprocess.run(["node", str(script), str(bad), audited["rpc"]], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 1 and "does not prove" in res.stdout


def _tamper(doc: dict, what: str) -> dict:
    doc = copy.deepcopy(doc)
    a = doc["anchors"][0]
    if what == "energy":
        a["readings"][0]["values"][2] = str(int(a["readings"][0]["values"][2]) - 1000)
    elif what == "salt":
        s = a["readings"][1]["values"][3]
        a["readings"][1]["values"][3] = s[:-1] + ("0" if s[-1] != "0" else "1")
    elif what == "proof":
        p = a["readings"][2]["proof"][0]
        a["readings"][2]["proof"][0] = p[:2] + ("f" if p[2] != "f" else "e") + p[3:]
    elif what == "reward":
        a["rewards"][0]["values"][2] = str(int(a["rewards"][0]["values"][2]) + 1)
    return doc


@pytest.mark.parametrize("what", ["energy", "salt", "proof", "reward"])
def test_tampered_takeout_is_caught(audited: dict, community_takeout: Path, what: str) -> None:
    doc = orjson.loads(community_takeout.read_bytes())
    assert verify_takeout(doc, audited["rpc"]) == []
    problems = verify_takeout(_tamper(doc, what), audited["rpc"])
    assert problems, what
    expected = {"energy": "does not prove", "salt": "does not prove", "proof": "does not prove",
                "reward": "recomputed reward"}[what]
    assert any(expected in p for p in problems), problems


def test_cli_exits_nonzero_on_tampering(audited: dict, community_takeout: Path) -> None:
    bad = audited["run"] / "tampered.json"
    bad.write_bytes(orjson.dumps(_tamper(orjson.loads(community_takeout.read_bytes()), "energy")))
    res = lec(audited, "audit", "verify", str(bad), "--rpc", audited["rpc"])
    assert res.returncode == 1
    assert "MISMATCH" in res.stdout and "does not prove" in res.stdout


def test_member_and_device_takeouts(audited: dict) -> None:
    out = audited["run"] / "anna.json"
    res = lec(audited, "audit", "takeout", "--member", ANNA, "--from", "1704067200", "--to", "1704070800",
              "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = orjson.loads(out.read_bytes())
    assert all(not a["complete"] for a in doc["anchors"])
    assert {r["device_id"] for a in doc["anchors"] for r in a["readings"]} == {"IT001E00000001"}
    assert {r["values"][0].lower() for a in doc["anchors"] for r in a["rewards"]} == {ANNA.lower()}
    assert verify_takeout(doc, audited["rpc"]) == []
    out = audited["run"] / "pv.json"
    res = lec(audited, "audit", "takeout", "--device", "PV-0001", "--from", "1704067200", "--to", "1704070800",
              "--out", str(out))
    assert res.returncode == 0, res.stderr
    doc = orjson.loads(out.read_bytes())
    assert [len(a["readings"]) for a in doc["anchors"]] == [1, 1]
    assert verify_takeout(doc, audited["rpc"]) == []


def test_verify_community_from_lake(audited: dict) -> None:
    args = ("audit", "verify", "--community", COMMUNITY, "--from", "1704067200", "--to", "1704070800",
            "--rpc", audited["rpc"])
    res = lec(audited, *args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 quarter-hours" in res.stdout
    # a reading the chain never saw (e.g. altered in the lake) is reported
    write_readings_table(audited["env"]["LEC_LAKE_URI"], [reading("f-bruno-load", QH1, 1234)])
    res = lec(audited, *args)
    assert res.returncode == 1
    assert f"qh {QH1}: lake recomputation differs from chain version 2" in res.stdout


def test_verify_lake_reports_anchors_without_readings(audited: dict, tmp_path: Path) -> None:
    from lec.registry import Registry, SecretStore
    from oracle.verify import read_only_client, verify_lake

    env = audited["env"]
    dep = orjson.loads((audited["run"] / "chain" / "deployment.json").read_bytes())
    client = read_only_client(audited["rpc"], dep["chainId"], dep["notary"], dep["tokens"])
    problems, checked = verify_lake(str(tmp_path / "empty-lake"), client, SecretStore(env["LEC_SECRETS_URL"]),
                                    Registry(env["LEC_REGISTRY_URL"]).snapshot(), COMMUNITY, 1704067200, 1704070800)
    assert checked == 0
    assert sorted(problems) == [f"{COMMUNITY} qh {q}: anchored on chain but no readings in the lake"
                                for q in (QH1 - 900, QH1)]


def test_erased_device_leaves_the_rest_provable(audited: dict, tmp_path: Path) -> None:
    """GDPR erasure deletes a device's secret: its leaf can no longer be disclosed, the QH's
    take-out is incomplete, and every other leaf still proves against the anchored root."""
    import shutil

    from lec.registry import SecretStore
    from oracle.store import OracleLake
    from oracle.takeout import build_takeout
    from oracle.verify import read_only_client

    env = audited["env"]
    copy_db = tmp_path / "secrets.db"
    shutil.copy(env["LEC_SECRETS_URL"].removeprefix("sqlite:///"), copy_db)
    secrets = SecretStore(f"sqlite:///{copy_db}")
    assert secrets.delete("PV-0001")
    dep = orjson.loads((audited["run"] / "chain" / "deployment.json").read_bytes())
    client = read_only_client(audited["rpc"], dep["chainId"], dep["notary"], dep["tokens"])
    doc = build_takeout(OracleLake(env["LEC_LAKE_URI"]), client, secrets, community_id=COMMUNITY,
                        qh_from=1704067200, qh_to=1704070800)
    assert [(a["complete"], len(a["readings"]), a["leafCount"]) for a in doc["anchors"]] == [(False, 2, 3),
                                                                                              (False, 1, 2)]
    assert "PV-0001" not in {r["device_id"] for a in doc["anchors"] for r in a["readings"]}
    assert verify_takeout(doc, audited["rpc"]) == []
