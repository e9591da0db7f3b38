"""``lec up|status|down|demo``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Placeholder until the stack module lands."""
