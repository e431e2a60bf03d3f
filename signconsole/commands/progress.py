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
        began: dict[str, float] = {}

        def plain(what: str, done: int, total: int) -> None:
            now = time.monotonic()
            began.setdefault(what, now)
            if not (done in (0, total) or now - last.get(what, 0.0) > 10):
                return
            last[what] = now
            if total <= 1:  # one piece of work: "0/1" reads as stuck; say it started, then ended
                line = (
                    f"{what} ..." if done < total else f"{what}: done in {now - began[what]:.1f} s"
                )
            else:
                line = f"{what}: {done}/{total}"
            print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

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
            # One piece of work has no steps to count: a pulsing bar until it is done.
            size = None if total <= 1 and done < total else total
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=size)
            bar.update(tasks[what], completed=done, total=size)

        yield rich_progress
