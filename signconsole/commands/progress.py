"""Progress for long preparation steps: a Rich bar on a terminal, sparse plain lines otherwise
(a redrawn bar in a log file is noise)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from signconsole.data.prepare import Progress


@contextmanager
def progress_reporter(interactive: bool | None = None) -> Iterator[Progress]:
    interactive = sys.stderr.isatty() if interactive is None else interactive
    if not interactive:
        last: dict[str, float] = {}

        def plain(what: str, done: int, total: int) -> None:
            now = time.monotonic()
            if done in (0, total) or now - last.get(what, 0.0) > 10:
                last[what] = now
                stamp = time.strftime("%H:%M:%S")
                print(f"{stamp} {what}: {done}/{total}", file=sys.stderr, flush=True)

        yield plain
        return

    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    with RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        tasks: dict[str, int] = {}

        def rich_progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        yield rich_progress
