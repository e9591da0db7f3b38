"""The README's commands work verbatim after a short demo (and the docs pages' blocks marked to run).

Every fenced shell/Python block of README.md runs, in order, from a project-like directory whose
`.lec/run` is a copy of the session's demo run: a block is skipped only when marked with a reason
(`<!-- doctest: skip: why -->`). Blocks marked `stack` run while `lec up` serves that run dir;
`loop N` blocks (a consumer's `while True`) run for N seconds and pass if they did not fail.
In docs/*.md only blocks marked `run` or `stack` are executed (most pages show reference syntax).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lec.procs import wait_until
from tests.conftest import copy_demo_run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the first test pays for the session demo

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"(?:<!--\s*doctest:\s*(?P<mark>[^>]*?)\s*-->\s*\n)?^```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^```",
                   re.DOTALL | re.MULTILINE)
COMMAND_LANGS = ("", "sh", "bash", "shell", "console", "python")
LIBRARY_INFO = re.compile(r"\bINFO\b:?\s+(alembic|faust|mode|uvicorn|aiokafka|kafka|py4j|pyspark|sqlalchemy|httpx|web3|"
                          r"asyncssh|paramiko|amqtt)\b")
LIBRARY_INFO_NAME_FIRST = re.compile(r"(?<![\w.])(alembic|faust|mode|uvicorn|aiokafka|kafka|py4j|pyspark|sqlalchemy|"
                                     r"httpx|web3|asyncssh|paramiko|amqtt)(?:\.[\w.]+)?\s+INFO\b")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    body: str
    mark: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def stack(self) -> bool:
        return self.mark.startswith("stack")

    @property
    def loop_s(self) -> float | None:
        m = re.search(r"loop (\d+)", self.mark)
        return float(m.group(1)) if m else None


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    out = []
    for m in FENCE.finditer(text):
        mark, lang = (m.group("mark") or "").strip(), m.group("lang")
        if lang not in COMMAND_LANGS or mark.startswith("skip"):
            continue
        if page.name != "README.md" and not mark.startswith(("run", "stack")):
            continue
        out.append(Block(str(page.relative_to(ROOT)), text.count("\n", 0, m.start("body")), lang, m.group("body"),
                         mark))
    return out


ALL = blocks(ROOT / "README.md") + [b for p in sorted((ROOT / "docs").glob("*.md")) for b in blocks(p)]


def test_every_readme_block_runs_or_says_why_not() -> None:
    text = (ROOT / "README.md").read_text()
    for m in FENCE.finditer(text):
        mark = (m.group("mark") or "").strip()
        if mark.startswith("skip"):
            assert len(mark) > len("skip: ") + 10, f"README block at char {m.start()}: a skip needs its reason"
    assert any(b.stack for b in ALL) and any(not b.stack for b in ALL)


@pytest.fixture(scope="module")
def workdir(demo_run: tuple[dict, str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like the project after `bash scripts/demo.sh`: `.lec/run` is the demo's."""
    work = tmp_path_factory.mktemp("readme")
    copy_demo_run(demo_run[2], work / ".lec" / "run")
    for name in ("examples", "scripts", "notebooks", "schemas", ".cache"):  # .cache: setup.sh's JVM jars
        (work / name).symlink_to(ROOT / name)
    return work


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    # a newcomer's shell: no LEC_ settings, and none of the Spark Connect switches earlier in-process
    # tests leave in os.environ (pyspark sets SPARK_CONNECT_MODE_ENABLED on its first remote session)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LEC_") and k not in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_API_MODE")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = str(ROOT)
    return {**env, **(extra or {})}


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> None:
    argv = [sys.executable, "-c", block.body] if block.lang == "python" else ["bash", "-euo", "pipefail", "-c",
                                                                                block.body]
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=block.loop_s or 900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert block.loop_s, f"{block.id} did not finish within 900 s"
        assert "Traceback" not in err and "error" not in err.lower(), f"{block.id} failed while looping: {err[-2000:]}"
        return
    assert proc.returncode == 0, f"{block.id} failed ({proc.returncode}):\n{block.body}\n{out[-2000:]}\n{err[-3000:]}"
    chatter = LIBRARY_INFO.findall(err)
    assert not chatter, f"{block.id} printed library INFO lines ({sorted(set(chatter))}):\n{err[-2000:]}"


@pytest.mark.parametrize("block", [b for b in ALL if not b.stack], ids=lambda b: b.id)
def test_block_after_demo(block: Block, workdir: Path) -> None:
    run_block(block, workdir, _env())


@pytest.fixture(scope="module")
def stack(workdir: Path):
    """`lec up` on the demo's run dir, as a user would start it in another shell."""
    log = open(workdir / "lec-up.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "lec.cli", "up"], cwd=workdir, env=_env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    state = workdir / ".lec" / "run" / "stack.json"

    def ready() -> bool:
        try:
            doc = json.loads(state.read_text())
        except (OSError, ValueError):
            return False
        return bool(doc.get("running") and doc.get("ready") and doc.get("supervisor_pid") == proc.pid)

    try:
        wait_until(ready, 300, "lec up on the demo's run dir", proc)
        yield json.loads(state.read_text())["env"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.parametrize("block", [b for b in ALL if b.stack], ids=lambda b: b.id)
def test_block_with_stack(block: Block, workdir: Path, stack: dict[str, str]) -> None:
    # a shell where the user started nothing but `lec up`: only what the README tells them to set
    extra = {"LEC_KAFKA_BOOTSTRAP": stack["LEC_KAFKA_BOOTSTRAP"]} if block.loop_s else {}
    run_block(block, workdir, _env(extra))


def test_lec_up_output_is_for_people(workdir: Path, stack: dict[str, str]) -> None:
    """`lec up` in the foreground: the status table, its own start-up lines, no library INFO (Faust's banner
    and INFO stay in the workers' own logs under .lec/run/logs)."""
    text = (workdir / "lec-up.log").read_text()
    assert "┃ service" in text and "restarts" in text and "stop with Ctrl-C" in text, text[-2000:]
    assert "is stopped" not in text, text[-2000:]
    chatter = LIBRARY_INFO.findall(text) + LIBRARY_INFO_NAME_FIRST.findall(text)  # `lec up` logs "name LEVEL msg"
    assert not chatter and "ƒaµS†" not in text, f"lec up printed library lines ({sorted(set(chatter))}):\n{text[-3000:]}"


def test_demo_says_where_its_state_is(demo_run: tuple[dict, str, Path]) -> None:
    _, stdout, run_dir = demo_run
    assert f"stay in {run_dir}" in stdout and "lec kpi --community cer-demo" in stdout
    assert "export LEC_RUN_DIR=" in stdout  # the session's demo ran outside ./.lec/run: the one setting is shown
