"""The one console script, ``lec``. Each package adds its commands through ``<package>.cli.register``.

Heavy imports (Spark, web3, deltalake, Faust) stay inside the commands so ``lec --help`` is fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from lec.errors import LecError

app = typer.Typer(help="LEC platform: ingest, normalise, store and anchor energy-community readings.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

PACKAGES = ("lec.registry.cli", "lec.stack.cli", "connectors.cli", "streams.cli", "lakehouse.cli", "oracle.cli")


def _register_all() -> None:
    for module_name in PACKAGES:
        module = importlib.import_module(module_name)
        module.register(app)


def main() -> None:
    _register_all()
    try:
        app()
    except LecError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
