"""Commands of the `connectors` package, added to `lec` as the `lec connectors` group.

Each channel keeps its commands in its own module (``mqtt_http_cli``, ``sftp_camel_cli``); this
file only gathers them under one typer group.
"""

from __future__ import annotations

import importlib.util

import typer


def register(app: typer.Typer) -> None:
    """Add `lec connectors ...` to the `lec` app (heavy imports stay inside the commands)."""
    from connectors.mqtt_http_cli import register_mqtt_http, register_tokens

    group = typer.Typer(help="Connectors: MQTT, HTTP, SFTP and Camel ingest into Kafka.", no_args_is_help=True)
    register_mqtt_http(group)
    if importlib.util.find_spec("connectors.sftp_camel_cli") is not None:
        from connectors.sftp_camel_cli import register_sftp_camel

        register_sftp_camel(group)
    app.add_typer(group, name="connectors")
    register_tokens(app)
