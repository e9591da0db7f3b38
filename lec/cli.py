"""The one console script, ``lec``. Each package adds its commands through ``<package>.cli.register``.

Heavy imports (Spark, web3, deltalake, Faust) stay inside the commands so ``lec --help`` is fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

import typer

from lec.errors import LecError

app = typer.Typer(help="LEC platform: ingest, normalise, store and anchor energy-community readings.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

PACKAGES = ("lec.registry.cli", "lec.stack.cli", "connectors.cli", "streams.cli", "lakehouse.cli", "oracle.cli",
            "lakehouse.settlement.cli")


def _register_all() -> None:
    for module_name in PACKAGES:
        module = importlib.import_module(module_name)
        module.register(app)


def _run(typer_app: typer.Typer) -> None:
    """Run a Typer app; a LecError is a message and exit code 2, never a traceback."""
    try:
        typer_app()
    except LecError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


def run_standalone(*registers: Callable[[typer.Typer], None]) -> None:
    """``python -m <package>...``: one package's commands alone, with the same error handling as ``lec``."""
    standalone = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    for register in registers:
        register(standalone)
    _run(standalone)


def main() -> None:
    _register_all()
    _run(app)


if __name__ == "__main__":
    main()
