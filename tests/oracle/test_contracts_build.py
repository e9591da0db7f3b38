"""The committed contract artifacts are exactly what the pinned solc-js makes from contracts/src."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "contracts" / "artifacts"


def test_recompiling_gives_the_committed_artifacts_byte_for_byte(tmp_path: Path) -> None:
    subprocess.run(["node", str(ROOT / "contracts" / "compile.js"), "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    fresh = sorted(p.name for p in tmp_path.glob("*.json"))
    committed = sorted(p.name for p in ARTIFACTS.glob("*.json"))
    assert fresh == committed == ["CommunityToken.json", "NaiveReadingStore.json", "Notary.json"]
    for name in fresh:
        assert (tmp_path / name).read_bytes() == (ARTIFACTS / name).read_bytes(), name


def test_artifacts_target_cancun_and_carry_verifiable_metadata() -> None:
    for path in ARTIFACTS.glob("*.json"):
        art = json.loads(path.read_text())
        meta = json.loads(art["metadata"])
        assert art["evmVersion"] == meta["settings"]["evmVersion"] == "cancun"
        assert meta["settings"]["optimizer"] == {"enabled": True, "runs": 200}
        assert art["compiler"].startswith("solc-js 0.8.37")
        assert art["bytecode"].startswith("0x60") and len(art["deployedBytecode"]) > 2
        src = ROOT / "contracts" / art["sourceName"]
        from eth_utils import keccak
        assert meta["sources"][art["sourceName"]]["keccak256"] == "0x" + keccak(src.read_bytes()).hex()
