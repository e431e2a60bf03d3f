"""The run store: one SQLite database per run, in WAL mode so other processes can read it (and
queue commands) while the run writes.

Metrics are kept in long form (step, name, value) with a covering index on (name, step, value):
review and compare query a downsampled series (`GROUP BY step / bucket`) from the index alone and
never load everything; the last step and the metric names are index seeks, not scans.
Non-finite values are stored as such: SQLite turns NaN into NULL, so the text form goes in
`nonfinite` and the history keeps the hole instead of hiding it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    step INTEGER NOT NULL, name TEXT NOT NULL, value REAL, nonfinite TEXT);
CREATE INDEX IF NOT EXISTS metrics_by_name_step_value ON metrics (name, step, value);
CREATE TABLE IF NOT EXISTS evals (
    step INTEGER NOT NULL, epoch INTEGER, split TEXT, loss REAL, error_rate REAL,
    substitutions INTEGER, deletions INTEGER, insertions INTEGER, reference_words INTEGER,
    unit TEXT, is_best INTEGER, blank_only REAL, time REAL);
CREATE TABLE IF NOT EXISTS decodes (
    step INTEGER NOT NULL, sample_id TEXT, reference TEXT, greedy TEXT, beam TEXT, error_rate REAL);
CREATE TABLE IF NOT EXISTS alarms (
    step INTEGER NOT NULL, time REAL, severity TEXT, kind TEXT, message TEXT, hint TEXT,
    stage TEXT, batch_ids TEXT);
CREATE TABLE IF NOT EXISTS events (
    step INTEGER NOT NULL, time REAL, type TEXT, payload TEXT);
CREATE TABLE IF NOT EXISTS evaluations (
    time REAL, checkpoint TEXT, step INTEGER, data TEXT, split TEXT, decoder TEXT, unit TEXT,
    error_rate REAL, substitutions INTEGER, deletions INTEGER, insertions INTEGER,
    reference_words INTEGER, sequences INTEGER, report TEXT);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL, source TEXT, payload TEXT,
    applied_step INTEGER);
"""


def connect(path: str | Path, readonly: bool = False) -> sqlite3.Connection:
    path = Path(path)
    if readonly:
        connection = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False
        )
    else:
        connection = sqlite3.connect(path, timeout=10, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a kill -9
        connection.executescript(SCHEMA)
    connection.row_factory = sqlite3.Row
    return connection


def metric_row(step: int, name: str, value: float) -> tuple[int, str, float | None, str | None]:
    if math.isfinite(value):
        return (step, name, value, None)
    return (step, name, None if math.isnan(value) else value, repr(value))


class RunDatabase:
    """Writer side. Rows are buffered and committed in one transaction per flush."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.connection = connect(self.path)
        self._metrics: list[tuple] = []
        self._last_flush = time.monotonic()

    def set_meta(self, **values: Any) -> None:
        self.connection.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, json.dumps(v)) for k, v in values.items()],
        )
        self.connection.commit()

    def add_metrics(self, step: int, values: dict[str, float]) -> None:
        self._metrics.extend(metric_row(step, name, value) for name, value in values.items())

    def execute(self, sql: str, parameters: tuple = ()) -> None:
        self.connection.execute(sql, parameters)

    def flush(self) -> None:
        if self._metrics:
            self.connection.executemany(
                "INSERT INTO metrics (step, name, value, nonfinite) VALUES (?, ?, ?, ?)",
                self._metrics,
            )
            self._metrics.clear()
        self.connection.commit()
        self._last_flush = time.monotonic()

    def flush_if_due(self, seconds: float = 2.0) -> None:
        if time.monotonic() - self._last_flush >= seconds:
            self.flush()

    def forget_after(self, step: int) -> None:
        """Delete measurements after `step` (a resume from a checkpoint at `step`)."""
        for table in ("metrics", "evals", "decodes", "alarms"):
            self.connection.execute(f"DELETE FROM {table} WHERE step > ?", (step,))
        self.connection.commit()

    def pending_commands(self) -> list[tuple[int, object]]:
        """Commands queued by other processes (attach), not yet applied, as stored: the payload
        is whatever another process wrote, so the engine parses and validates it
        (engine/inbox.py) and a malformed row can never stop the run."""
        rows = self.connection.execute(
            "SELECT id, payload FROM commands WHERE applied_step IS NULL ORDER BY id"
        ).fetchall()
        return [(row["id"], row["payload"]) for row in rows]

    def mark_command_applied(self, command_id: int, step: int) -> None:
        self.connection.execute(
            "UPDATE commands SET applied_step = ? WHERE id = ?", (step, command_id)
        )

    def close(self) -> None:
        self.flush()
        self.connection.close()


def stored_number(value: Any) -> float | None:
    """A finite number from a stored value, or None (a damaged row is not a crash)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def read_meta(connection: sqlite3.Connection) -> dict[str, Any]:
    """The meta table; a value that is not JSON (a damaged or hand-edited row) stays text, so
    one bad row does not hide the rest."""

    def value(text: Any) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError):
            return text

    return {
        row["key"]: value(row["value"])
        for row in connection.execute("SELECT key, value FROM meta")
        if isinstance(row["key"], str)
    }


def metric_series(
    connection: sqlite3.Connection,
    name: str,
    points: int = 500,
    start: int | None = None,
    end: int | None = None,
) -> list[tuple[int, float | None]]:
    """A metric downsampled to about `points` buckets (mean per bucket), in step order. Rows
    another writer left with a step that is not an integer, or a value that is not a number,
    are skipped (a damaged row is not a crash)."""
    low, high = connection.execute(
        "SELECT min(step), max(step) FROM metrics WHERE name = ? AND typeof(step) = 'integer'",
        (name,),
    ).fetchone()
    if low is None:
        return []
    low = low if start is None else max(low, start)
    high = high if end is None else min(high, end)
    bucket = max(1, (high - low + 1) // max(1, points))
    rows = connection.execute(
        "SELECT max(step) AS step, avg(value) AS value FROM metrics "
        "WHERE name = ? AND step BETWEEN ? AND ? AND typeof(step) = 'integer' "
        "AND typeof(value) IN ('real', 'integer', 'null') GROUP BY step / ? ORDER BY step",
        (name, low, high, bucket),
    ).fetchall()
    return [(row["step"], row["value"]) for row in rows]


def metric_names(connection: sqlite3.Connection) -> list[str]:
    """Distinct metric names, one index seek each (a skip scan, not a pass over every row)."""
    names: list[str] = []
    row = connection.execute("SELECT min(name) FROM metrics").fetchone()
    while row and row[0] is not None:
        names.append(row[0])
        row = connection.execute(
            "SELECT min(name) FROM metrics WHERE name > ?", (row[0],)
        ).fetchone()
    return names


def last_metric_step(connection: sqlite3.Connection) -> int:
    def last(name: str) -> int | None:
        step = connection.execute(
            "SELECT max(step) FROM metrics WHERE name = ?", (name,)
        ).fetchone()[0]
        if step is None or isinstance(step, int):
            return step
        # A damaged row (text sorts above every number): the slower query that skips it.
        return connection.execute(
            "SELECT max(step) FROM metrics WHERE name = ? AND typeof(step) = 'integer'", (name,)
        ).fetchone()[0]

    steps = [last(name) for name in metric_names(connection)]
    return max((step for step in steps if step is not None), default=0)


def last_metric_value(connection: sqlite3.Connection, name: str) -> float | None:
    row = connection.execute(
        "SELECT value FROM metrics WHERE name = ? ORDER BY step DESC LIMIT 1", (name,)
    ).fetchone()
    return None if row is None else row[0]
