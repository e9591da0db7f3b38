"""The one runner of commands and workers: logging set up once (quiet libraries, LEC_LOG_LEVEL or
--verbose), typed errors as one line and exit code 2, anything else as one line and exit code 1."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

import typer

from lec.errors import LecError
from lec.io.logs import configure_logging

# Libraries whose INFO lines are chatter to a user (alembic's plugins, Faust's and uvicorn's start-up,
# Kafka clients, Spark Connect, web3...): WARNING and above only, unless --verbose or LEC_LOG_LEVEL=DEBUG.
CHATTY_LIBRARIES = ("alembic", "faust", "mode", "aiokafka", "kafka", "uvicorn", "uvicorn.access", "uvicorn.error",
                    "httpx", "httpcore", "asyncssh", "paramiko", "amqtt", "transitions", "py4j", "pyspark", "web3",
                    "urllib3", "opensearch", "sqlalchemy", "matplotlib", "PIL", "numexpr", "deltalake", "passlib",
                    "websockets", "filelock", "fsspec", "great_expectations", "asyncio", "hpack", "grpc")


def verbose_requested(argv: list[str] | None = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "--verbose" in argv or os.environ.get("LEC_LOG_LEVEL", "").upper() == "DEBUG"


def setup_logging(verbose: bool = False) -> None:
    """Quiet libraries unless asked; our own loggers follow LEC_LOG_LEVEL (the workers' logs)."""
    if verbose:
        os.environ["LEC_LOG_LEVEL"] = "DEBUG"  # children (workers, `lec` subprocesses) follow
        configure_logging(level=logging.DEBUG)
        return
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def run_app(typer_app: typer.Typer) -> None:
    """Run a Typer app; an error is one line and exit code 2 (the traceback only with --verbose)."""
    verbose = verbose_requested()
    if "--verbose" in sys.argv[1:]:
        sys.argv.remove("--verbose")  # accepted anywhere on the line: `lec --verbose kpi ...` or `lec kpi ... --verbose`
    setup_logging(verbose)
    try:
        typer_app()
    except LecError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:
        if verbose:
            raise
        typer.echo(f"error: {type(exc).__name__}: {exc} (run again with --verbose for the details)", err=True)
        if not sys.stderr.isatty():  # a worker's log or CI: keep the traceback for whoever reads it later
            import traceback

            traceback.print_exc()
        sys.exit(1)


def run_standalone(*registers: Callable[[typer.Typer], None]) -> None:
    """``python -m <package>...``: one package's commands alone, with the same error handling as ``lec``."""
    standalone = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    for register in registers:
        register(standalone)
    run_app(standalone)
