"""`lec registry load|show|export` through the real console entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import EXAMPLE_COMMUNITY


def lec(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEC_RUN_DIR": str(tmp_path / "run")}
    return subprocess.run([sys.executable, "-m", "lec.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_load_show_export_round_trip(tmp_path: Path) -> None:
    r = lec(tmp_path, "registry", "load", str(EXAMPLE_COMMUNITY))
    assert r.returncode == 0, r.stderr
    assert "3 devices" in r.stdout
    shown = json.loads(lec(tmp_path, "registry", "show").stdout)
    assert shown["cer-example"]["flows"] == 3
    out = tmp_path / "exported.yaml"
    assert lec(tmp_path, "registry", "export", "cer-example", "--out", str(out)).returncode == 0
    exported = yaml.safe_load(out.read_text())
    assert {d["id"] for d in exported["devices"]} == {"IT001E00000001", "IT001E00000002", "PV-0001"}
    assert "password" not in out.read_text()
    # the export loads back as is
    assert lec(tmp_path, "registry", "load", str(out)).returncode == 0
    # secrets stay out of the registry database and of every output
    assert "secret" not in r.stdout.lower()


def test_bad_file_exits_2_naming_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE_COMMUNITY.read_text().replace("channel: http", "channel: pigeon"))
    r = lec(tmp_path, "registry", "load", str(bad))
    assert r.returncode == 2
    line = next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if "pigeon" in ln)
    assert f"line {line}" in r.stderr and "flows.2.channel" in r.stderr
    assert "Traceback" not in r.stderr


def test_export_of_unknown_community_is_a_clear_error(tmp_path: Path) -> None:
    r = lec(tmp_path, "registry", "export", "nope")
    assert r.returncode == 2 and "community 'nope' is not in the registry of run dir" in r.stderr
