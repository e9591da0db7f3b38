"""``lec registry load|show|export``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml


def register(app: typer.Typer) -> None:
    reg = typer.Typer(help="The registry of communities, members, suppliers, devices and flows.",
                      no_args_is_help=True)

    @reg.command("load")
    def load(file: Path = typer.Argument(..., help="Community YAML file (see examples/community.yaml).")) -> None:
        """Load (or replace) a community from a YAML file; errors name the line and field."""
        from lec.progress import progress
        from lec.registry import open_registry, read_community_file

        registry = open_registry()
        with progress(f"registry: reading {file.name}"):  # a spinner on a terminal: a large file takes a while
            doc = read_community_file(file)
        with progress(f"registry: loading community '{doc.community.id}'", total=registry.load_steps(doc)) as advance:
            registry.load(doc, advance)
        typer.echo(f"loaded community '{doc.community.id}': {len(doc.users)} members, {len(doc.suppliers)} "
                   f"suppliers, {len(doc.devices)} devices, {len(doc.flows)} flows")
        _tell_running_stack()

    @reg.command("show")
    def show() -> None:
        """Summary of each community in the registry, as JSON."""
        from lec.registry import open_registry

        typer.echo(json.dumps(open_registry().summary(), indent=2))

    @reg.command("export")
    def export(community: str = typer.Argument(..., help="Community id."),
               out: Path | None = typer.Option(None, "--out", help="File to write; default stdout.")) -> None:
        """Write a community back out in the load format (no secrets, no password hashes)."""
        from lec.registry import open_registry

        text = yaml.safe_dump(open_registry().export(community), sort_keys=False, allow_unicode=True)
        if out:
            out.write_text(text)
        else:
            typer.echo(text)

    app.add_typer(reg, name="registry")


def _tell_running_stack() -> None:
    """Hand the new registry to every running component (they follow ``lec.registry``: a second or two),
    and with an embedded stack up deploy missing contracts."""
    import subprocess
    import sys

    from lec.config import running_stack_env, settings
    from lec.errors import LecError
    from lec.registry.view import publish_registry

    s = settings()
    try:
        version = publish_registry(s)
    except LecError as exc:
        typer.echo(f"loaded, but the running components were not told: {exc}; run `lec streams publish-registry` "
                   "once Kafka is reachable", err=True)
        version = None
    if version:
        typer.echo(f"published registry snapshot {version} on lec.registry")
    env = running_stack_env(s.resolved_run_dir())
    if env is None:
        return
    if s.chain_rpc == env.get("LEC_CHAIN_RPC"):  # the embedded chain; an external one has its operators
        args = ["chain", "deploy", "--dev", "--if-missing"]
        r = subprocess.run([sys.executable, "-m", "lec.cli", *args], capture_output=True, text=True, timeout=300)
        lines = (r.stdout + r.stderr).strip().splitlines()
        typer.echo(lines[-1] if lines else f"lec {' '.join(args)}: exit {r.returncode}", err=r.returncode != 0)


# The package's one Typer app, which `lec/cli.py` mounts (its commands join `lec`'s own).
app = typer.Typer(no_args_is_help=True)
register(app)
