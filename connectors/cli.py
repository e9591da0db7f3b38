"""Commands of the `connectors` package, added to `lec` by `register`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the `lec` app (keep heavy imports inside commands)."""
