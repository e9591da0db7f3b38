"""Commands of the `streams` package, added to `lec` by `register`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the `lec` app (keep heavy imports inside commands)."""
    streams = typer.Typer(help="Stream processing: lec.raw -> canonical lec.readings (+ dead letters, feedback, "
                          "anomalies).", no_args_is_help=True)

    @streams.command("worker")
    def worker(
        app_id: str = typer.Option("lec-streams", help="Faust app id = consumer group; workers sharing it split "
                                   "the partitions."),
        batch_size: int = typer.Option(500, help="Raw records per batch (stream.take)."),
        raw_topic: str = typer.Option("lec.raw", help="Input topic."),
        readings_topic: str = typer.Option("lec.readings", help="Canonical output topic."),
        silence_check_s: float = typer.Option(30.0, help="Seconds between checks for silent flows."),
    ) -> None:
        """Run a streams worker in the foreground (reads LEC_KAFKA_BOOTSTRAP, LEC_REGISTRY_URL, LEC_RUN_DIR,
        LEC_CLOCK_SKEW_S, LEC_MAX_PAYLOAD_BYTES); SIGTERM stops it cleanly."""
        from lec.config import settings
        from streams.app import build_app, run_worker

        run_worker(build_app(settings(), app_id=app_id, batch_size=batch_size, raw_topic=raw_topic,
                             readings_topic=readings_topic, silence_check_s=silence_check_s))

    @streams.command("passthrough")
    def passthrough(
        app_id: str = typer.Option(..., help="Faust app id (consumer group)."),
        raw_topic: str = typer.Option(..., help="Input topic."),
        out_topic: str = typer.Option(..., help="Output topic."),
        batch_size: int = typer.Option(2000, help="Records per batch."),
    ) -> None:
        """A Faust pass-through worker (benchmark baseline): copies records, no processing."""
        from lec.config import settings
        from streams.app import build_passthrough_app, run_worker

        run_worker(build_passthrough_app(settings(), app_id=app_id, raw_topic=raw_topic, out_topic=out_topic,
                                         batch_size=batch_size))

    @streams.command("publish-registry")
    def publish_registry() -> None:
        """Publish the registry snapshot to the compacted topic lec.registry (run after `lec registry load`)."""
        from lec.config import settings
        from lec.registry import open_registry
        from streams.errors import StreamsError
        from streams.registry_sync import publish

        s = settings()
        if not s.kafka_bootstrap:
            raise StreamsError("LEC_KAFKA_BOOTSTRAP is not set")
        snap = open_registry(s).snapshot()
        version = publish(s.kafka_bootstrap, snap)
        typer.echo(f"published registry snapshot {version}: {len(snap.flows)} flows, {len(snap.devices)} devices")

    app.add_typer(streams, name="streams")


# The package's one Typer app, which `lec/cli.py` mounts (its commands join `lec`'s own).
app = typer.Typer(no_args_is_help=True)
register(app)
