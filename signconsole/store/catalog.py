"""Finding runs: the list behind the console's picker (and `signconsole runs`).

Statuses a run can have:
    starting, running, paused, stopping   live: a process trains it now (it holds run.lock)
    finished      it reached its planned end (max_epochs / max_steps, early stopping)
    stopped       a person (quit, Ctrl+C, SIGTERM, a stop from `show`) or the time budget ended it
    failed        an error ended it (recorded by the process itself)
    killed        recorded as live, but its process is gone (kill -9, power loss, OOM killer)
    unreadable    run.db cannot be read (truncated, not SQLite, tables or rows damaged)
    unknown       run.db holds no status (a run that died before recording its start)
A run directory is never trusted: one damaged run.db makes one `unreadable` row, never an error
for the whole folder.
"""

from __future__ import annotations

import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signconsole.errors import UserError
from signconsole.store.db import connect, last_metric_step, read_meta
from signconsole.store.db import stored_number as _number
from signconsole.store.lock import lock_state, process_alive

LIVE_STATUSES = ("starting", "running", "paused", "stopping")
END_STATUSES = ("finished", "stopped", "failed", "killed")
STATUSES = (*LIVE_STATUSES, *END_STATUSES, "unreadable", "unknown")
RESUMABLE_STATUSES = ("stopped", "failed", "killed")  # a finished run has nothing left to do


@dataclass(frozen=True)
class RunSummary:
    path: Path
    name: str
    kind: str
    status: str  # one of STATUSES
    best_error_rate: float | None
    best_step: int | None
    steps: int
    started: float | None
    unit: str
    ended: float | None = None  # finish time, or the newest event of a live/killed run
    # Seconds spent training in the sessions that ended (a resumed run has several), and when
    # the newest session started if it has not ended (live, or killed: then up to `ended`).
    # None in a run.db written before they were kept: `duration` is then first start to end.
    trained_seconds: float | None = None
    open_session_started: float | None = None
    test_error_rate: float | None = None  # the best checkpoint on the test split, at the end
    problem: str = ""  # why the run is unreadable

    @property
    def duration(self) -> float | None:
        """Time spent training: every session of a resumed run, not the days between them."""
        if self.trained_seconds is None:
            return self.ended - self.started if self.started and self.ended else None
        open_session = 0.0
        if self.open_session_started is not None and self.ended is not None:
            open_session = max(0.0, self.ended - self.open_session_started)
        return self.trained_seconds + open_session

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def resumable(self) -> bool:
        """Ended before its planned end, with a checkpoint to continue from. A live run is
        watched (`show`), not resumed; a finished one has nothing left to train."""
        return not self.why_not_resumable

    @property
    def why_not_resumable(self) -> str:
        """ "" when resumable, else the reason in words a picker or a command can show."""
        if self.status == "finished":
            return "finished: nothing left to train (start a new run from its weights)"
        if self.live:
            return f"{self.status} in another process: review it to watch or control it"
        if self.status == "unreadable":
            return f"unreadable: {self.problem}"
        if self.status not in RESUMABLE_STATUSES:
            return f"{self.status}: not a run that can be resumed"
        if not (self.path / "checkpoints" / "last.pt").exists():
            return "no last checkpoint to resume from"
        return ""


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number.is_integer() else None


def _text(value: Any, default: str) -> str:
    return value if isinstance(value, str) and value else default


def unreadable(run_dir: Path, problem: str) -> RunSummary:
    return RunSummary(
        run_dir, run_dir.name, "?", "unreadable", None, None, 0, None, "gloss", problem=problem
    )


def _live_status(status: str, meta: dict[str, Any], run_dir: Path) -> str:
    """A live status whose process is gone is `killed`. The lock file decides; a run recorded
    before locks existed falls back to the pid and host in run.db."""
    state, _ = lock_state(run_dir)
    if state == "live" or state == "elsewhere":
        return status
    if state == "dead":
        return "killed"
    pid = meta.get("pid")
    if meta.get("host") == socket.gethostname() and isinstance(pid, int):
        return status if process_alive(pid) else "killed"
    return status


def summarize(run_dir: Path) -> RunSummary | None:
    """The run's summary; None when `run_dir` is not a run directory (no run.db)."""
    database = run_dir / "run.db"
    try:
        if not database.exists():
            return None
    except OSError as error:  # a teammate's run directory we may not enter
        return unreadable(run_dir, f"{error.strerror or error}".lower())
    try:
        connection = connect(database, readonly=True)
        try:
            meta = read_meta(connection)
            steps = last_metric_step(connection)
            best = connection.execute(
                "SELECT error_rate, step FROM evals WHERE split = 'dev' "
                "AND typeof(error_rate) IN ('real', 'integer') ORDER BY error_rate, step LIMIT 1"
            ).fetchone()
            heartbeat = connection.execute("SELECT max(time) FROM events").fetchone()[0]
            test = connection.execute(
                "SELECT error_rate FROM evals WHERE split = 'test' ORDER BY step DESC LIMIT 1"
            ).fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:  # not a database, truncated, a table missing or damaged
        return unreadable(run_dir, f"run.db: {error}")
    except (OSError, ValueError) as error:  # unreadable file, text that is not UTF-8
        return unreadable(run_dir, f"run.db: {error}")
    status = _text(meta.get("status"), "unknown")
    if status not in STATUSES:  # a damaged or hand-edited row
        status = "unknown"
    if status in LIVE_STATUSES:
        status = _live_status(status, meta, run_dir)
    started = _number(meta.get("started"))
    return RunSummary(
        path=run_dir,
        name=_text(meta.get("name"), run_dir.name),
        kind=_text(meta.get("kind"), "?"),
        status=status,
        best_error_rate=_number(best["error_rate"]) if best else None,
        best_step=_integer(best["step"]) if best else None,
        steps=max(_integer(steps) or 0, _integer(meta.get("last_step")) or 0),
        started=started,
        unit=_text(meta.get("unit"), "gloss"),
        ended=_number(meta.get("finished")) or _number(heartbeat),
        test_error_rate=_number(test["error_rate"]) if test else None,
        trained_seconds=_number(meta.get("trained_seconds")),
        open_session_started=_number(meta.get("session_started")),
    )


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """Runs under `runs_dir`, newest first; unreadable ones included (status `unreadable`)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    runs = [s for d in root.iterdir() if d.is_dir() and (s := summarize(d)) is not None]
    return sorted(runs, key=lambda r: (r.started or 0, r.path.name), reverse=True)


def require_readable(run_dir: Path) -> RunSummary:
    """The summary of a run a command is about to read, or a UserError saying why it cannot."""
    summary = summarize(run_dir)
    if summary is None:
        raise UserError(f"{run_dir}: not a run directory (no run.db)")
    if summary.status == "unreadable":
        raise UserError(
            f"{run_dir}: cannot read this run ({summary.problem}); its other files "
            "(checkpoints/, profile.toml, log.txt) are untouched"
        )
    return summary


__all__ = ["STATUSES", "RunSummary", "list_runs", "require_readable", "summarize"]
