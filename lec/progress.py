"""Progress bars for long work (rich), on a terminal only: quiet in logs, pipes and CI.

    with progress("uploading", total=len(files)) as advance:
        for f in files:
            ...
            advance(1)

``total=None`` shows a spinner with a count. Output goes to stderr, so stdout stays the command's
answer (CSV, JSON) even on a terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def enabled() -> bool:
    """A person is watching: stderr is a terminal and progress is not switched off (LEC_PROGRESS=0)."""
    return sys.stderr.isatty() and os.environ.get("LEC_PROGRESS", "1") != "0"


_active: list = []  # the live Progress, if any: nested bars become extra lines of it (rich allows one live display)


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, description=None)``; a no-op when nobody watches."""
    if not enabled():
        yield lambda n=1, description=None: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if _active:
        bar = _active[-1]
        task = bar.add_task(description, total=total)
        try:
            yield lambda n=1, description=None: bar.update(task, advance=n,
                                                          **({"description": description} if description else {}))
        finally:
            bar.remove_task(task)
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()] + ([TimeRemainingColumn()] if total else [])
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: float = 1, description: str | None = None) -> None:
            bar.update(task, advance=n, **({"description": description} if description else {}))

        _active.append(bar)
        try:
            yield advance
        finally:
            _active.pop()
