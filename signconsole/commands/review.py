"""`signconsole show RUN` (the console in review mode) and `signconsole compare RUN RUN ...`."""

from __future__ import annotations

import sqlite3
import sys

from rich.console import Console

from signconsole.errors import UserError
from signconsole.store.catalog import require_readable
from signconsole.store.reader import find_run
from signconsole.tui.comparison import comparison_renderables


def parse_steps(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        start_text, end_text = text.split(":")
        start, end = int(start_text or 0), int(end_text)
    except ValueError:
        raise UserError(
            f"--steps {text}: expected START:END, two step numbers such as 1000:5000"
        ) from None
    if end <= start or start < 0:
        raise UserError(f"--steps {text}: END must be larger than START, both >= 0")
    return start, end


def show_command(run: str, runs_dir: str, steps: str | None) -> int:
    run_dir = find_run(run, runs_dir)
    zoom = parse_steps(steps)
    require_readable(run_dir)  # a damaged run.db is one line here, not a crash in the console
    from signconsole.tui.app import SignConsole

    SignConsole(review=run_dir, zoom=zoom).run()
    return 0


def compare_command(runs: list[str], runs_dir: str, steps: str | None) -> int:
    if len(runs) < 2:
        raise UserError("compare needs two or more runs (run directories or names)")
    span = parse_steps(steps)
    paths = []
    for run_dir in (find_run(run, runs_dir) for run in runs):
        try:
            require_readable(run_dir)
        except UserError as error:  # the others are still worth comparing
            print(f"signconsole: warning: {error}; left out of the comparison", file=sys.stderr)
            continue
        paths.append(run_dir)
    if len(paths) < 2:
        raise UserError(f"compare needs two or more readable runs; {len(paths)} left")
    console = Console(highlight=False)
    width = max(40, min(console.width, 160) - 4)
    try:
        renderables = comparison_renderables(paths, width, span)
    except sqlite3.Error as error:  # damage that only a deeper query reaches
        raise UserError(f"cannot compare: a run.db is damaged ({error})") from None
    for renderable in renderables:
        console.print(renderable)
    return 0
