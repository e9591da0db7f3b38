"""The one console script, ``lec``. Each package's ``cli`` module exports one Typer ``app`` (built by its
``register``), mounted here without a name, so its commands and groups join ``lec``'s own.

Heavy imports (Spark, web3, deltalake, Faust) stay inside the commands so ``lec --help`` is fast.
"""

from __future__ import annotations

import importlib

import typer

from lec.io.runner import CHATTY_LIBRARIES, run_app, run_standalone, setup_logging, verbose_requested

__all__ = ["CHATTY_LIBRARIES", "app", "main", "run_standalone", "setup_logging", "verbose_requested"]

app = typer.Typer(help="LEC platform: ingest, normalise, store and anchor energy-community readings. "
                       "Add --verbose (or LEC_LOG_LEVEL=DEBUG) anywhere for library logs and tracebacks.",
                  no_args_is_help=True, pretty_exceptions_enable=False)

PACKAGES = ("lec.registry.cli", "lec.stack.cli", "connectors.cli", "streams.cli", "lakehouse.cli", "oracle.cli",
            "lakehouse.settlement.cli")


def _register_all() -> None:
    for module_name in PACKAGES:
        app.add_typer(importlib.import_module(module_name).app)


def main() -> None:
    _register_all()
    run_app(app)


if __name__ == "__main__":
    main()
