"""What a person sees from `lec`: a progress bar on a terminal only, no library INFO lines, and a bad
argument answered by one line saying what to do (exit 2), without a traceback.

Cheap on purpose: one large-ish registry file, commands that need no stack and no Spark, run side by
side (each `lec` process mostly pays for its imports).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lec.config import Settings
from lec.registry import Registry, SecretStore
from tests.support.kpi_sample import SampleFlow, community_yaml

ROOT = Path(__file__).resolve().parents[2]
LEC = [sys.executable, "-m", "lec.cli"]
CID = "cer-large"
MEMBERS = 150  # a large-ish community: 150 members, devices and flows (601 rows and secrets), seconds to load
INFO_LINE = re.compile(r"^.*\bINFO\b.*$", re.MULTILINE)
BAR = "━"  # rich's bar glyph


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("cli-output")
    flows = [SampleFlow(f"f-{i:04d}", f"POD{i:04d}", f"u-{i:04d}", "load", 1) for i in range(MEMBERS)]
    path = work / "large.yaml"
    path.write_text(community_yaml(CID, flows))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEC_")}
    env.update(LEC_RUN_DIR=str(work / "run"), PYTHONPATH=str(ROOT), TERM="xterm-256color", COLUMNS="120")
    settings = Settings(run_dir=work / "run")  # the example community beside it, loaded in-process (cheap)
    registry = Registry(settings.resolved_registry_url(), SecretStore(settings.resolved_secrets_url()))
    registry.migrate()
    registry.load_file(ROOT / "examples" / "community.yaml")
    return path, env


def _start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([*LEC, *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def test_registry_load_is_quiet_off_a_terminal(large: tuple[Path, dict[str, str]]) -> None:
    path, env = large
    code, out, err = _finish(_start(env, "registry", "load", str(path)))
    assert code == 0, err
    assert f"loaded community '{CID}': {MEMBERS} members" in out
    assert BAR not in out + err and "registry: loading" not in out + err  # no progress noise in a pipe or a log
    assert not INFO_LINE.findall(out + err), "library INFO lines by default:\n" + err


def test_registry_load_shows_a_bar_on_a_terminal(large: tuple[Path, dict[str, str]]) -> None:
    path, env = large
    master, slave = pty.openpty()
    proc = subprocess.Popen([*LEC, "registry", "load", str(path)], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)  # stderr is a terminal: a person watches
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    out = proc.stdout.read().decode()
    assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")[-2000:]
    text = seen.decode(errors="replace")
    assert f"registry: loading community '{CID}'" in text and BAR in text, text[-2000:]
    assert BAR not in out and f"loaded community '{CID}'" in out  # stdout stays the answer


def test_cheap_commands_print_no_library_info(large: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _, env = large
    procs = [_start(env, "gdpr", "export", "--user", "u-anna", "--out", str(tmp_path / "anna.zip")),
             _start(env, "connectors", "mqtt-config", "--out", str(tmp_path / "mqtt"))]
    for proc in procs:
        code, out, err = _finish(proc)
        assert code == 0, f"{proc.args}: {err}"
        assert not INFO_LINE.findall(out + err), f"{proc.args} printed INFO lines:\n{out}\n{err}"


def test_bad_arguments_get_one_line_and_exit_2(large: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _, env = large
    empty = {**env, "LEC_RUN_DIR": str(tmp_path / "empty-run")}  # a run dir with no registry yet
    cases = {
        "missing file": (_start(env, "registry", "load", str(tmp_path / "nope.yaml")), "does not exist"),
        "unknown community": (_start(empty, "kpi", "--community", "cer-nope", "--from", "2016-03-26", "--to",
                                     "2016-03-28"), "LEC_RUN_DIR"),
        "bad date": (_start(env, "kpi", "--community", "cer-example", "--from", "26/03/2016", "--to", "2016-03-28"),
                     "as a date"),
        "settling an unknown community": (_start(empty, "settlement", "run", "--community", "cer-nope", "--month",
                                                 "2024-05"), "LEC_RUN_DIR"),
        "bad month": (_start(env, "settlement", "run", "--community", "cer-example", "--month", "2024-13"),
                      "2026-05"),
    }
    for name, (proc, hint) in cases.items():
        code, out, err = _finish(proc)
        lines = err.strip().splitlines()
        assert code == 2, f"{name}: exit {code}\n{err}"
        assert len(lines) == 1 and lines[0].startswith("error: ") and hint in lines[0], f"{name}: {err}"
        assert "Traceback" not in out + err
