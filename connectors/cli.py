"""Commands of the `connectors` package, added to `lec` as the `lec connectors` group.

Each channel is a subpackage (``connectors/mqtt``, ``sftp``, ``http``, ``camel``) whose ``cli`` module
has ``register(group)``; this file finds them, so adding a channel means adding a folder.
Heavy imports stay inside the commands.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import connectors


def channels() -> list[str]:
    """The channel subpackages, in name order (each has a ``cli`` module)."""
    return sorted(m.name for m in pkgutil.iter_modules(connectors.__path__)
                  if m.ispkg and importlib.util.find_spec(f"connectors.{m.name}.cli") is not None)


def register_channels(group: typer.Typer) -> None:
    """Every channel's commands on ``group`` (``lec connectors``, or ``python -m connectors`` alone)."""
    for name in channels():
        importlib.import_module(f"connectors.{name}.cli").register(group)


def register(app: typer.Typer) -> None:
    """Add `lec connectors ...` and `lec tokens ...` to the `lec` app."""
    from connectors.http.cli import register_tokens

    group = typer.Typer(help="Connectors: MQTT, HTTP, SFTP and Camel ingest into Kafka.", no_args_is_help=True)
    register_channels(group)
    app.add_typer(group, name="connectors")
    register_tokens(app)


# The package's one Typer app, which `lec/cli.py` mounts (its commands join `lec`'s own).
app = typer.Typer(no_args_is_help=True)
register(app)
