"""`lec status` as a table people can read (``--json`` keeps the machine form)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_status(status: dict[str, dict[str, Any]], run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from lec.stack.supervisor import read_state

    console = Console()
    if not status:
        console.print(f"no stack has run in {run_dir}: start one with `lec up` (or `lec demo`)")
        return
    if not (read_state(run_dir) or {}).get("running"):
        console.print(f"the stack in {run_dir} is stopped; start it again with `lec up` (last run below)")
    table = Table(title=f"stack in {run_dir}", title_justify="left")
    for col in ("service", "state", "pid", "port", "restarts", "log"):
        table.add_column(col, justify="right" if col in ("pid", "port", "restarts") else "left")
    for name, svc in status.items():
        if not (read_state(run_dir) or {}).get("running"):
            state = "stopped"
        elif not svc["alive"]:
            state = "[red]down[/red]"
        elif svc["answering"] is False:
            state = "[yellow]not answering[/yellow]"
        else:
            state = "[green]up[/green]"
        log = svc["log"]
        try:
            log = str(Path(log).relative_to(run_dir))
        except ValueError:
            pass
        table.add_row(name, state, str(svc["pid"]), str(svc["port"] or "-"), str(svc["restarts"]), log)
    console.print(table)
