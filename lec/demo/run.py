"""The platform's main job on the embedded default: stack up, demo community, traffic, summary."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import yaml

from lakehouse.settlement.demo import add_settlement_terms, settle_demo
from lakehouse.settlement.model import Month
from lec import topics
from lec.config import Settings, load_settings
from lec.demo.community import COMMUNITY_ID, build_demo
from lec.demo.send import send_http, send_mqtt, send_sftp
from lec.demo.traffic import build_traffic
from lec.errors import LecError
from lec.io import read_topic
from lec.progress import progress
from lec.stack.supervisor import Stack, assert_not_running, lec_argv

log = logging.getLogger("lec.demo")
# The phase that follows each summary line (for the progress bar on a terminal).
NEXT_PHASE = (("registry:", "deploying contracts"), ("chain: contracts", "starting workers"),
              ("stack up", "sending traffic over MQTT, SFTP, HTTP"), ("sent:", "reading the topics"),
              ("lake:", "computing KPIs"), ("KPIs", "waiting for the oracle's anchors"),
              ("chain:", "waiting for reward claims"), ("member balances", "take-out and audit"))
DEMO_MARKER = ".lec-demo"  # a run dir holding this was made by the demo: another demo may replace it


def demo_settings(run_dir: Path) -> Settings:
    os.environ["LEC_RUN_DIR"] = str(run_dir)
    os.environ.setdefault("LEC_ORACLE_CLAIM_INTERVAL_S", "5")  # members see their tokens within the demo
    return load_settings()


def run_demo(run_dir: Path, start: datetime, days: int, households: int = 8,
             echo: Any = print) -> dict[str, Any]:
    """Run the whole demo and return its summary (also printed through ``echo``)."""
    assert_not_running(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not (run_dir / DEMO_MARKER).exists():
            raise LecError(f"{run_dir} holds a platform state that no demo made (registry, lake, chain): the demo "
                           f"starts from an empty run dir and would wipe it; pass --run-dir DIR (or set "
                           f"LEC_RUN_DIR) to run the demo elsewhere")
        shutil.rmtree(run_dir)  # Kafka is in memory: lake offsets and chain must start fresh too
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DEMO_MARKER).write_text("made by `lec demo`: the next demo may replace this run dir\n")
    settings = demo_settings(run_dir)
    doc, series = build_demo(start, days, households)
    add_settlement_terms(doc)  # perimeters, plants and statute: the demo month is settled at the end
    traffic = build_traffic(series)
    community_file = run_dir / "demo-community.yaml"
    community_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    bars = ExitStack()
    phase = bars.enter_context(progress("demo: loading the registry, starting servers"))
    user_echo = echo

    def echo(line: str) -> None:
        user_echo(line)
        phase(1, description="demo: " + next((nxt for prefix, nxt in NEXT_PHASE if line.startswith(prefix)),
                                             "working"))

    stack = Stack(settings)
    summary: dict[str, Any] = {"community": COMMUNITY_ID, "period": [start.isoformat(), (start + timedelta(days=days)).isoformat()]}
    t0 = time.monotonic()
    try:
        from lec.registry import open_registry

        # the registry first: the brokers read their suppliers' accounts from it when they start
        open_registry(settings).load_file(community_file)
        stack.start_servers()
        settings = load_settings()  # now with the stack's ports (LEC_* set by the stack)
        echo(f"registry: loaded {community_file.name}: {len(doc['users'])} members, {len(doc['devices'])} devices, "
             f"{len(doc['flows'])} flows")
        prepare_workers(settings, start, echo)
        stack.start_workers()
        stack.supervise_in_background()
        echo(f"stack up in {time.monotonic() - t0:.1f}s: {', '.join(s.spec.name for s in stack.services)}")

        sent = {"mqtt": send_mqtt(settings, traffic.mqtt), "sftp": send_sftp(settings, traffic.sftp),
                "http": dict(send_http(settings, traffic.http))}
        echo(f"sent: {sent['mqtt']} MQTT messages, {sent['sftp']} SFTP files, HTTP batches by status {sent['http']}")
        echo(f"faults injected: {traffic.faults}")
        summary["sent"] = sent
        summary["faults"] = traffic.faults
        summary.update(summarise_topics(settings))
        echo_summary(summary, echo)
        summary.update(finish_downstream(settings, run_dir, summary, start, days, echo))
    finally:
        bars.close()
        stack.stop()
    summary["seconds"] = round(time.monotonic() - t0, 1)
    echo(f"demo finished in {summary['seconds']}s; run dir {run_dir}")
    echo_next_steps(run_dir, start, days, echo)
    return summary


def echo_next_steps(run_dir: Path, start: datetime, days: int, echo: Any) -> None:
    """What the demo left and the README's next commands, with the one setting they need if any."""
    from lec.config import Settings

    default = Settings().resolved_run_dir()  # .lec/run under the current directory
    first, end = start.date().isoformat(), (start + timedelta(days=days)).date().isoformat()
    echo("")
    echo(f"The lake, the registry, the chain state and a take-out stay in {run_dir}.")
    if run_dir != default:
        echo(f"Point the other commands at it first:  export LEC_RUN_DIR={run_dir}")
    echo("Try (README.md, per role):")
    echo(f"  lec kpi --community {COMMUNITY_ID} --from {first} --to {end} --resolution 1h --format csv --plot kpi.png")
    echo(f"  lec registry export {COMMUNITY_ID}")
    echo("  lec gdpr export --user u-02")
    echo("  lec up        # the stack again on this state (Kafka starts empty), then in another shell:")
    echo(f"  lec audit verify {run_dir / 'takeout.json'}")


# Reward model 3 (oracle.md §7): 1 token (1e18 base units) per kWh of shared energy, split evenly
# between consumption and production, plus 0.1 token per QH without a peak above 500 Wh.
DEMO_PARAMS = {"model": 3, "rate-consumption": 5 * 10**11, "rate-production": 5 * 10**11,
               "rate-no-peak": 10**17, "peak-mwh": 500_000, "w1-bps": 5000, "w2-bps": 5000}
WELCOME_BONUS = 10 * 10**18


def lec_cli(*args: str, timeout: float = 300) -> str:
    """Run a ``lec`` command as a user would; fail loudly with its output."""
    r = subprocess.run(lec_argv(*args), capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    if r.returncode != 0:
        raise LecError(f"`lec {' '.join(args)}` failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r.stdout


def prepare_workers(settings: Settings, start: datetime, echo: Any) -> None:
    """What the workers need before they start: the registry on its topic, contracts and parameters."""
    lec_cli("streams", "publish-registry")
    lec_cli("chain", "deploy", "--dev", "--welcome-bonus", str(WELCOME_BONUS))
    qh = int(start.timestamp()) // 900 * 900
    args = [item for k, v in DEMO_PARAMS.items() for item in (f"--{k}", str(v))]
    lec_cli("chain", "params-set", "--dev", "--community", COMMUNITY_ID, "--effective-from", str(qh), *args)
    echo(f"chain: contracts deployed on {settings.chain_rpc}, members registered with a welcome bonus, "
         f"reward model 3 in force from qh {qh}")


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    """Poll ``check`` until it returns a truthy value; raise with ``what`` on time-out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    raise LecError(f"demo: {what} did not happen within {timeout_s:.0f}s (see the logs under the run dir)")


def lake_count(settings: Settings, table: str) -> int:
    from lakehouse.tables import open_table, table_exists, table_uri

    uri = table_uri(table, settings)
    if not table_exists(uri):
        return 0
    return open_table(uri).to_pyarrow_dataset().count_rows()


def finish_downstream(settings: Settings, run_dir: Path, summary: dict[str, Any], start: datetime, days: int,
                      echo: Any) -> dict[str, Any]:
    """Lake, KPIs and a plot, anchors, claimed rewards, a take-out and its audit."""
    out: dict[str, Any] = {}
    expected = summary["readings"]
    wait_for(lambda: lake_count(settings, "readings") >= expected, 180, f"{expected} readings in the lake")
    out["lake_readings"] = lake_count(settings, "readings")
    out["lake_deadletter"] = lake_count(settings, "deadletter")
    echo(f"lake: {out['lake_readings']} rows in Delta table readings, {out['lake_deadletter']} in deadletter "
         f"({settings.resolved_lake_uri()})")

    end = start + timedelta(days=days)
    plot = run_dir / "kpi.png"
    period = ["--community", COMMUNITY_ID, "--from", start.date().isoformat(), "--to", end.date().isoformat(),
              "--level", "community"]
    kpis = orjson.loads(lec_cli("kpi", *period, "--resolution", "1d", "--format", "json"))
    hourly = run_dir / "kpi_1h.csv"
    lec_cli("kpi", *period, "--resolution", "1h", "--format", "csv", "--out", str(hourly), "--plot", str(plot))
    out["kpi"] = kpis
    echo(f"KPIs per day (lec kpi --resolution 1d); hourly curves in {hourly} and {plot}:")
    for row in kpis:
        echo("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k in KPI_SHOWN))

    anchors = wait_for(lambda: read_topic(settings.kafka_bootstrap, topics.ANCHORS, idle_s=20, timeout=120),
                       600, "oracle anchors")
    latest: dict[int, dict] = {}
    for a in anchors:
        if a["qh"] not in latest or a["version"] > latest[a["qh"]]["version"]:
            latest[a["qh"]] = a
    out["anchored_qh"] = len(latest)
    out["anchor_versions"] = len(anchors)
    total = sum(int(a["rewardTotal"]) for a in latest.values())
    echo(f"chain: {len(latest)} quarter-hours anchored ({len(anchors)} anchors counting later versions); "
         f"rewards {total / 1e18:.3f} tokens")

    balances = wait_for(lambda: claimed_balances(settings, total), 300, "reward claims")
    out["balances"] = balances
    echo("member balances (welcome bonus + claimed rewards): " +
         ", ".join(f"{w[:10]}…={b / 1e18:.3f}" for w, b in sorted(balances.items())))

    takeout = run_dir / "takeout.json"
    day1 = start.astimezone(UTC)
    lec_cli("audit", "takeout", "--community", COMMUNITY_ID, "--from", day1.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "--to", (day1 + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"), "--out", str(takeout))
    verdict = lec_cli("audit", "verify", str(takeout), "--rpc", settings.chain_rpc)
    out["audit"] = verdict.strip().splitlines()[-1] if verdict.strip() else "ok"
    echo(f"audit: take-out of the first 6 hours in {takeout}; lec audit verify: {out['audit']}")
    out.update(settle_demo(run_dir, COMMUNITY_ID, Month(start.year, start.month), "u-01", settings.chain_rpc,
                           lec_cli, echo))
    return out


KPI_SHOWN = ("period_start", "consumption_kwh", "production_kwh", "selfconsumption_kwh", "selfconsumption_pct",
             "selfsufficiency_pct", "L_kwh", "P_kwh", "shared_kwh")


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def claimed_balances(settings: Settings, reward_total: int) -> dict[str, int] | None:
    """Members' token balances once the claimed rewards reach the anchored total."""
    from lec.registry import open_registry
    from oracle.agent import default_deployment_path
    from oracle.chain.client import NotaryClient, load_deployment
    from oracle.chain.keys import dev_key

    client = NotaryClient(settings.chain_rpc, load_deployment(default_deployment_path(settings)), dev_key(0))
    snap = open_registry(settings).snapshot()
    wallets = [m.wallet for (c, _), m in snap.members.items() if c == COMMUNITY_ID]
    balances = {w: client.balance_of(COMMUNITY_ID, w) for w in wallets}
    minted = sum(balances.values()) - WELCOME_BONUS * len(wallets)
    return balances if minted >= reward_total else None


def summarise_topics(settings: Settings) -> dict[str, Any]:
    bootstrap = settings.kafka_bootstrap
    raw = read_topic(bootstrap, topics.RAW, idle_s=5, timeout=120, min_records=1)
    feedback = read_topic(bootstrap, topics.FEEDBACK, idle_s=10, timeout=300, min_records=1)
    readings = read_topic(bootstrap, topics.READINGS, idle_s=5, timeout=120)
    dead = read_topic(bootstrap, topics.DEADLETTER, idle_s=2, timeout=60)
    anomalies = read_topic(bootstrap, topics.ANOMALIES, idle_s=2, timeout=60)
    return {
        "raw_envelopes": Counter(r["channel"] for r in raw),
        "raw_items": sum(len(r["items"]) for r in raw),
        "readings": len({r["message_id"] for r in readings}),
        "readings_by_channel": Counter(r["channel"] for r in readings),
        "deadletter_by_reason": Counter(d["reason_code"] for d in dead),
        "feedback_by_status": Counter(f["status"] for f in feedback),
        "anomalies_by_kind": Counter(a["kind"] for a in anomalies),
    }


def echo_summary(summary: dict[str, Any], echo: Any) -> None:
    echo("")
    echo(f"raw envelopes on {topics.RAW}: {dict(summary['raw_envelopes'])} ({summary['raw_items']} source messages)")
    echo(f"canonical readings on {topics.READINGS}: {summary['readings']} {dict(summary['readings_by_channel'])}")
    echo(f"dead letters by reason: {dict(summary['deadletter_by_reason'])}")
    echo(f"feedback by status: {dict(summary['feedback_by_status'])}")
    echo(f"anomalies by kind: {dict(summary['anomalies_by_kind'])}")


def default_start() -> datetime:
    # Two days around the 2016 spring DST change in Italy (27 March), in local midnight.
    return datetime(2016, 3, 26, tzinfo=timezone(timedelta(hours=1)))
