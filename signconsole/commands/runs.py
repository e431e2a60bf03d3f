"""`signconsole runs`: the runs in a directory, newest first. A damaged run is listed as
`unreadable` with the reason under the table; the others list as usual and the exit code is 0."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from signconsole.metrics import format_duration
from signconsole.store.catalog import list_runs

STATUS_STYLE = {
    "running": "green",
    "paused": "yellow",
    "finished": "blue",
    "stopped": "cyan",
    "failed": "red",
    "killed": "bold red",
    "unreadable": "bold red",
}


def runs_command(runs_dir: Path, kind: str | None, status: str | None) -> int:
    from signconsole.errors import UserError

    if not runs_dir.is_dir():
        raise UserError(
            f"{runs_dir}: no runs directory (runs land in runs/ by default; pass --dir)"
        )
    runs = [
        r
        for r in list_runs(runs_dir)
        if (kind is None or r.kind == kind) and (status is None or r.status == status)
    ]
    table = Table(
        "run",
        "kind",
        "status",
        "best dev",
        "at step",
        "steps",
        "duration",
        "started",
        title=Text(f"runs in {runs_dir}"),
        title_justify="left",
    )
    for run in runs:
        rate = "LER" if run.unit == "letter" else "WER"
        best = "-" if run.best_error_rate is None else f"{rate} {run.best_error_rate:.1%}"
        started = (
            time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)) if run.started else ""
        )
        # Text, not markup: names, kinds and statuses come from run directories and run.db
        # rows, which may hold anything, brackets included.
        table.add_row(
            Text(run.path.name),
            Text(run.kind),
            Text(run.status, style=STATUS_STYLE.get(run.status, "")),
            best,
            str(run.best_step or "-"),
            str(run.steps),
            format_duration(run.duration),
            started,
        )
    console = Console(width=max(Console().width, 120), highlight=False)
    console.print(
        table
        if runs
        else f"no runs in {runs_dir}" + (" matching the filter" if kind or status else ""),
        markup=False,
    )
    for run in runs:
        if run.problem:
            console.print(f"{run.path.name}: unreadable: {run.problem}", markup=False)
    return 0
