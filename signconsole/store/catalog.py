"""Finding runs: the list behind the console's picker (and `signconsole runs`)."""

from __future__ import annotations

import os
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from signconsole.store.db import connect, last_metric_step, read_meta


@dataclass(frozen=True)
class RunSummary:
    path: Path
    name: str
    kind: str
    status: str  # running, paused, finished, failed, killed, unknown
    best_error_rate: float | None
    best_step: int | None
    steps: int
    started: float | None
    unit: str
    ended: float | None = None  # finish time, or the newest event of a live/killed run
    test_error_rate: float | None = None  # the best checkpoint on the test split, at the end

    @property
    def duration(self) -> float | None:
        return self.ended - self.started if self.started and self.ended else None

    @property
    def resumable(self) -> bool:
        return (self.path / "checkpoints" / "last.pt").exists() and self.status != "running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def summarize(run_dir: Path) -> RunSummary | None:
    database = run_dir / "run.db"
    if not database.exists():
        return None
    try:
        connection = connect(database, readonly=True)
        try:
            meta = read_meta(connection)
            steps = last_metric_step(connection)
            best = connection.execute(
                "SELECT error_rate, step FROM evals WHERE split = 'dev' "
                "ORDER BY error_rate, step LIMIT 1"
            ).fetchone()
            heartbeat = connection.execute("SELECT max(time) FROM events").fetchone()[0]
            test = connection.execute(
                "SELECT error_rate FROM evals WHERE split = 'test' ORDER BY step DESC LIMIT 1"
            ).fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return RunSummary(run_dir, run_dir.name, "?", "unknown", None, None, 0, None, "gloss")
    status = meta.get("status", "unknown")
    if status in ("running", "paused", "stopping", "starting"):
        same_host = meta.get("host") == socket.gethostname()
        if same_host and isinstance(meta.get("pid"), int) and not _alive(meta["pid"]):
            status = "killed"  # the process died without recording an end
    return RunSummary(
        path=run_dir,
        name=meta.get("name", run_dir.name),
        kind=meta.get("kind", "?"),
        status=status,
        best_error_rate=best["error_rate"] if best else None,
        best_step=best["step"] if best else None,
        steps=max(steps, meta.get("last_step") or 0),
        started=meta.get("started"),
        unit=meta.get("unit", "gloss"),
        ended=meta.get("finished") or heartbeat,
        test_error_rate=test["error_rate"] if test else None,
    )


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """Runs under `runs_dir`, newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    runs = [s for d in root.iterdir() if d.is_dir() and (s := summarize(d)) is not None]
    return sorted(runs, key=lambda r: (r.started or 0, r.path.name), reverse=True)
