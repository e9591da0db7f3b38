"""`lec connectors mqtt-config|mqtt-broker|mqtt-bridge|feedback-relay`: the MQTT channel (foreground workers)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(group: typer.Typer) -> None:
    """Add the MQTT commands to the `lec connectors` group."""

    @group.command("mqtt-config")
    def mqtt_config(out: Path = typer.Option(..., "--out", help="Folder for password_file, acl_file, mosquitto.conf."),
                    port: int = typer.Option(0, help="Listener port written in mosquitto.conf (default: LEC_MQTT_PORT or 1883)."),
                    persistence_dir: Path = typer.Option(None, help="Where Mosquitto keeps sessions across its restarts "
                                                                    "(writable by user mosquitto)."),
                    follow: bool = typer.Option(False, help="Keep running: rewrite the files on every registry change "
                                                            "(lec.registry) and SIGHUP Mosquitto."),
                    mosquitto_pid: int = typer.Option(0, help="With --follow: the Mosquitto process to SIGHUP.")) -> None:
        """Write Mosquitto's password_file and acl_file (and a mosquitto.conf) from the registry."""
        from connectors.mqtt.config import follow_registry, write_mqtt_config
        from lec.config import settings
        from lec.registry import open_registry

        s = settings()
        if follow:
            import signal
            import threading

            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_a: stop.set())
            follow_registry(s, out, stop, mosquitto_pid=mosquitto_pid or None, port=port or None,
                            persistence_dir=persistence_dir)
            return
        files = write_mqtt_config(s, open_registry(s).supplier_password_hashes(), out, port or None,
                                  persistence_dir)
        for name, path in files.items():
            typer.echo(f"{name}: {path}")

    @group.command("mqtt-broker")
    def mqtt_broker() -> None:
        """Embedded MQTT 3.1.1 broker (amqtt) on LEC_MQTT_HOST:LEC_MQTT_PORT with registry passwords and ACL."""
        from connectors.mqtt.broker import run_broker

        run_broker()

    @group.command("mqtt-bridge")
    def mqtt_bridge(processes: int = typer.Option(1, help="Bridge processes sharing $share/lec-bridge/lec/# (needs a broker with shared subscriptions: Mosquitto)."),
                    protocol: str = typer.Option("auto", help="auto, 5 or 3.1.1.")) -> None:
        """Forward every message under lec/# to Kafka lec.raw (QoS 1 acked after Kafka acked it)."""
        from connectors.mqtt.bridge import run_bridge

        proto = {"auto": 0, "5": 5, "3.1.1": 4, "311": 4}.get(protocol)
        if proto is None:
            raise typer.BadParameter("--protocol must be auto, 5 or 3.1.1")
        run_bridge(processes=processes, protocol=proto)

    @group.command("feedback-relay")
    def feedback_relay() -> None:
        """Publish each lec.feedback record to the supplier's own MQTT topic lec-feedback/{supplier}."""
        from connectors.mqtt.feedback_relay import run_relay

        run_relay()
