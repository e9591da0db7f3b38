"""`lec up` starts real services as supervised children; `lec status` reports them; `lec down` and
SIGTERM stop them all, leaving no orphan process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lec.procs import port_open, wait_until


def lec(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lec.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture()
def stack_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "LEC_RUN_DIR": str(tmp_path / "run"), "LEC_LOG_LEVEL": "INFO"}


def start_up(env: dict[str, str], *args: str) -> subprocess.Popen:
    log = open(Path(env["LEC_RUN_DIR"]).parent / "up.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "lec.cli", "up", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    state = Path(env["LEC_RUN_DIR"]) / "stack.json"
    try:  # generous: the whole stack (HDFS, Kafka, every worker) took 7.5 min at load 36 on 2 cores
        wait_until(lambda: state.exists() and json.loads(state.read_text()).get("ready"), 900, "lec up", proc,
                   Path(env["LEC_RUN_DIR"]).parent / "up.log")
    except BaseException:  # a stack not ready in time is stopped, not left running
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        raise
    return proc


@pytest.mark.parametrize("mode", [["--servers-only"], []], ids=["servers", "servers+workers"])
def test_up_status_down(stack_env: dict[str, str], mode: list[str]) -> None:
    if not mode:  # the whole stack, with the lake on HDFS (lake_hdfs): one start serves both checks
        stack_env = {**stack_env, "LEC_LAKE_HDFS": "true"}
    proc = start_up(stack_env, *mode)
    try:
        status = json.loads(lec(stack_env, "status", "--json").stdout)
        expected = {"kafka", "mqtt", "sftp", "chain"}
        if not mode:
            expected |= {"mqtt-bridge", "feedback-relay", "sftp-watch", "http", "streams", "lake-sink", "oracle",
                         "hdfs-namenode", "hdfs-datanode"}
            _sink_writes_to_hdfs(stack_env)
        assert expected <= set(status)
        for name, svc in status.items():
            assert svc["alive"], f"{name} is not alive"
            if svc["port"]:
                assert svc["answering"], f"{name} does not answer on {svc['port']}"
        pids = [svc["pid"] for svc in status.values()]
    finally:  # thirteen services to stop with the HDFS pair; minutes on a loaded machine
        r = lec(stack_env, "down", "--timeout", "300", timeout=320)
        proc.wait(timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    time.sleep(0.5)
    assert [p for p in pids if pid_alive(p)] == [], "orphan processes left behind"
    for svc in status.values():
        if svc["port"]:
            assert not port_open(svc["port"])
    assert lec(stack_env, "status").returncode == 1


def _sink_writes_to_hdfs(env: dict[str, str]) -> None:
    """The stack's lake is on its HDFS; readings sent to Kafka land there through the lake sink."""
    from lakehouse.hdfs_cluster import namenode_state
    from lakehouse.tables import open_table, query
    from tests.support.sink_sample import produce, sample_readings

    state = json.loads((Path(env["LEC_RUN_DIR"]) / "stack.json").read_text())["env"]
    lake, webhdfs = state["LEC_LAKE_URI"], state["LEC_WEBHDFS_URL"]
    assert lake.startswith("hdfs://127.0.0.1:") and lake.endswith("/lake")
    cfg = json.loads(lec(env, "config").stdout)  # another shell sees the stack's lake
    assert (cfg["lake_uri"], cfg["webhdfs_url"]) == (lake, webhdfs)
    assert namenode_state(int(webhdfs.rsplit(":", 1)[1])) == {"live_datanodes": 1, "safemode": False}
    produce(state["LEC_KAFKA_BOOTSTRAP"], sample_readings(40, devices=4, days=1))

    def landed() -> bool:
        dt = open_table(f"{lake}/readings")
        return dt is not None and query("SELECT count(*) n FROM t", {"t": dt}).to_pylist()[0]["n"] >= 40

    wait_until(landed, 180, "the lake sink writing readings to hdfs://")


def test_sigterm_stops_everything_and_a_dead_worker_is_restarted(stack_env: dict[str, str]) -> None:
    proc = start_up(stack_env)
    try:
        # another shell with only LEC_RUN_DIR talks to this stack: its ports come from stack.json
        cfg = json.loads(lec(stack_env, "config").stdout)
        state = json.loads((Path(stack_env["LEC_RUN_DIR"]) / "stack.json").read_text())
        assert cfg["kafka_bootstrap"] == state["env"]["LEC_KAFKA_BOOTSTRAP"]
        # loading a community hands it to the workers and deploys the contracts on the embedded chain
        from tests.conftest import EXAMPLE_COMMUNITY

        r = lec(stack_env, "registry", "load", str(EXAMPLE_COMMUNITY), timeout=300)
        assert r.returncode == 0, r.stderr
        assert "published registry snapshot" in r.stdout
        assert (Path(stack_env["LEC_RUN_DIR"]) / "chain" / "deployment.json").exists()
        status = json.loads(lec(stack_env, "status", "--json").stdout)
        victim = status["streams"]["pid"]
        os.killpg(victim, signal.SIGKILL)  # a crash
        wait_until(lambda: json.loads(lec(stack_env, "status", "--json").stdout)["streams"]["restarts"] >= 1, 60,
                   "worker restart")
        status = json.loads(lec(stack_env, "status", "--json").stdout)
        assert status["streams"]["pid"] != victim and status["streams"]["alive"]
        pids = [svc["pid"] for svc in status.values()]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    time.sleep(0.5)
    assert [p for p in pids if pid_alive(p)] == []


def test_demo_stopped_with_sigterm_leaves_nothing_running(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "lec.cli", "demo", "--days", "1", "--households", "2",
                             "--run-dir", str(run_dir)], stdout=log, stderr=subprocess.STDOUT)
    state = run_dir / "stack.json"
    wait_until(lambda: state.exists() and "oracle" in json.loads(state.read_text())["services"], 300, "demo stack",
               proc, tmp_path / "demo.log")
    pids = [s["pid"] for s in json.loads(state.read_text())["services"].values()]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    time.sleep(0.5)
    assert [p for p in pids if pid_alive(p)] == []
    assert json.loads(state.read_text())["running"] is False
