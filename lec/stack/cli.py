"""``lec up``, ``lec status``, ``lec down`` and ``lec demo``."""

from __future__ import annotations

import json
import logging
import os
import signal
import time

import typer

from lec.io import configure_logging


def register(app: typer.Typer) -> None:
    register_config(app)
    register_demo(app)

    @app.command("up")
    def up(servers_only: bool = typer.Option(False, "--servers-only",
                                             help="Start the servers (Kafka, MQTT, SFTP, chain) without workers."),
           keycloak: bool = typer.Option(False, "--keycloak",
                                         help="Also start Keycloak; HTTP ingest verifies its tokens (docs/keycloak.md)."),
           ) -> None:
        """Start every local service and worker; runs until Ctrl-C, SIGTERM or `lec down`."""
        from lec.config import settings
        from lec.stack.supervisor import PID_FILE, Stack, service_status

        s = settings()
        if keycloak:
            s = s.model_copy(update={"keycloak": True})
        configure_logging(level=s.log_level)
        stack = Stack(s, with_workers=not servers_only)
        stopping = {"flag": False}

        def on_signal(signum: int, _frame: object) -> None:
            stopping["flag"] = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        run_dir = s.resolved_run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / PID_FILE).write_text(str(os.getpid()))
        try:
            stack.start()
            from lec.stack.status_table import print_status

            print_status(service_status(run_dir), run_dir)  # the table `lec status` shows (--json there for scripts)
            typer.echo(f"stack up; run dir {run_dir}; stop with Ctrl-C or `lec down`", err=True)
            while not stopping["flag"]:
                stack.supervise_once()
                time.sleep(0.5)
        finally:
            stack.stop()
            (run_dir / PID_FILE).unlink(missing_ok=True)

    @app.command("status")
    def status(as_json: bool = typer.Option(False, "--json", help="JSON instead of a table.")) -> None:
        """Each service of the stack: pid, port, alive, answering (a table; --json for scripts); with the MQTT
        bridge running, an end-to-end probe (MQTT -> bridge -> Kafka) on stderr. Exit 1 if any is down."""
        from lec.config import settings
        from lec.stack.supervisor import service_status

        s = settings()
        run_dir = s.resolved_run_dir()
        st = service_status(run_dir)
        healthy = bool(st) and all(v["alive"] for v in st.values())
        if as_json:
            typer.echo(json.dumps(st, indent=2))
        else:
            from lec.stack.status_table import print_status

            print_status(st, run_dir)
        if "mqtt-bridge" in st and healthy:  # end to end: a probe published on MQTT must reach Kafka
            from connectors.mqtt.bridge import probe_liveness

            ok, detail = probe_liveness(s, s.kafka_bootstrap)
            typer.echo(f"mqtt liveness: {'ok' if ok else 'DOWN'} ({detail})", err=True)
            healthy = healthy and ok
        if not healthy:
            raise typer.Exit(1)

    @app.command("down")
    def down(timeout: float = typer.Option(30.0, help="Seconds to wait for a clean stop.")) -> None:
        """Stop a stack started with `lec up`."""
        from lec.config import settings
        from lec.procs import pid_running
        from lec.stack.supervisor import PID_FILE

        pid_file = settings().resolved_run_dir() / PID_FILE
        if not pid_file.exists():
            typer.echo("no stack running")
            return
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid_file.unlink(missing_ok=True)
            typer.echo("stack was not running (stale pid file removed)")
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_running(pid):
                typer.echo("stack stopped")
                return
            time.sleep(0.2)
        typer.echo("stack did not stop in time", err=True)
        raise typer.Exit(1)


def register_config(app: typer.Typer) -> None:
    @app.command("config")
    def config(reference: bool = typer.Option(False, "--reference", help="Print the settings reference page.")) -> None:
        """Print the settings in force (secrets masked), or the reference of every setting."""
        from lec.config import settings, settings_reference

        if reference:
            typer.echo(settings_reference(), nl=False)
        else:
            typer.echo(json.dumps(settings().public_dict(), indent=2))


def register_demo(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(days: int = typer.Option(2, min=1, max=28, help="Days of demo traffic (from 26 March 2016, across DST)."),
             households: int = typer.Option(8, min=2, max=13, help="Households of the SimBench grid."),
             run_dir: str = typer.Option(None, help="Run directory (default: the one every `lec` command uses, "
                                                    "LEC_RUN_DIR or .lec/run); a previous demo's state there is "
                                                    "replaced, any other state is refused."),
             summary_json: str = typer.Option("", help="Also write the summary as JSON to this file."),
             ) -> None:
        """The main job: embedded stack, SimBench demo community, traffic over MQTT/SFTP/HTTP, summary."""
        from pathlib import Path

        from lec.demo.run import default_start, run_demo

        configure_logging(level=logging.WARNING)

        def on_sigterm(signum: int, _frame: object) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean stop short
            raise KeyboardInterrupt  # unwinds through run_demo's `finally`, which stops every service

        signal.signal(signal.SIGTERM, on_sigterm)
        from lec.config import settings

        target = Path(run_dir).resolve() if run_dir else settings().resolved_run_dir()
        summary = run_demo(target, default_start(), days, households, echo=typer.echo)
        if summary_json:
            Path(summary_json).write_text(json.dumps(summary, indent=2, default=str))


# The package's one Typer app, which `lec/cli.py` mounts (its commands join `lec`'s own).
app = typer.Typer(no_args_is_help=True)
register(app)
