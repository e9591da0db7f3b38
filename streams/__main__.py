"""``python -m streams ...``: the streams commands alone (same as ``lec streams ...``)."""

import typer

from streams.cli import register

app = typer.Typer(pretty_exceptions_enable=False)
register(app)

if __name__ == "__main__":
    app()
