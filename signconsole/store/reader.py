"""Reading a run back: review, compare, export and attach all go through here.

Read-only SQLite connection (WAL: the run may still be writing). Series are always downsampled in
SQL (`metric_series`), so opening a run with millions of metric rows costs a few indexed queries,
never a full load. Commands for a live run go into its `commands` table through a separate
writable connection, opened only when a command is sent; the engine applies them at its next
step boundary.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signconsole.errors import UserError
from signconsole.events import (
    EVENT_TYPES,
    AlarmRaised,
    Command,
    EvalFinished,
    Event,
    SampleDecode,
    to_payload,
)
from signconsole.store.catalog import RunSummary, summarize
from signconsole.store.db import (
    connect,
    last_metric_step,
    last_metric_value,
    metric_names,
    metric_series,
    read_meta,
    stored_number,
)


class RunNotFound(UserError):
    pass


def find_runs(text: str, runs_dir: str | Path = "runs") -> list[Path]:
    """Every run `text` names, oldest first: a path, a directory name in `runs_dir`, or the end
    of directory names there (`demo-student` matches every `*-demo-student` run)."""
    path = Path(text)
    if (path / "run.db").exists():
        return [path]
    root = Path(runs_dir)
    candidate = root / text
    if (candidate / "run.db").exists():
        return [candidate]
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if (d / "run.db").exists() and d.name.endswith(text))


def find_run(text: str, runs_dir: str | Path = "runs") -> Path:
    """A run directory from a path, a directory name in `runs_dir`, or the end of one (the
    newest match: `demo-student` picks the newest `*-demo-student` run)."""
    matches = find_runs(text, runs_dir)
    if matches:
        return matches[-1]
    root = Path(runs_dir)
    raise RunNotFound(
        f"{text}: no run there (a run directory holds run.db); give a path, or a run name from "
        f"`signconsole runs --dir {root}`"
    )


FOLLOWED = ("metrics", "evals", "alarms", "events", "evaluations")


def _number(value: Any) -> float:
    """A stored number, NaN for anything else (NULL, text another writer left)."""
    return math.nan if (number := stored_number(value)) is None else number


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _json(text: Any, default: Any) -> Any:
    """A JSON column's value, or `default` where the row holds something else."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


def _batch_ids(text: Any) -> tuple[str, ...]:
    ids = _json(text, [])
    return tuple(str(i) for i in ids) if isinstance(ids, list) else ()


def _eval_event(row: sqlite3.Row) -> EvalFinished | None:
    """The evaluation a row records; None for a row without an integer step (damaged)."""
    if not isinstance(row["step"], int):
        return None
    return EvalFinished(
        row["step"],
        time=_number(row["time"]),
        epoch=_count(row["epoch"]),
        split=str(row["split"]),
        loss=_number(row["loss"]),
        error_rate=_number(row["error_rate"]),
        substitutions=_count(row["substitutions"]),
        deletions=_count(row["deletions"]),
        insertions=_count(row["insertions"]),
        reference_words=_count(row["reference_words"]),
        unit=row["unit"] if isinstance(row["unit"], str) else "gloss",
        is_best=bool(row["is_best"]),
        blank_only=_number(row["blank_only"]) if row["blank_only"] is not None else 0.0,
    )


@dataclass(frozen=True)
class DecodeRow:
    sample_id: str
    reference: tuple[str, ...]
    greedy: tuple[str, ...]
    beam: tuple[str, ...]
    error_rate: float


class RunReader:
    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        database = self.run_dir / "run.db"
        if not database.exists():
            raise RunNotFound(f"{self.run_dir}: not a run directory (no run.db)")
        try:
            self.connection = connect(database, readonly=True)
        except sqlite3.Error as error:
            raise RunNotFound(f"{database}: cannot open ({error})") from None

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------- reading
    def meta(self) -> dict[str, Any]:
        return read_meta(self.connection)

    def summary(self) -> RunSummary | None:
        return summarize(self.run_dir)

    def profile_text(self) -> str:
        path = self.run_dir / "profile.toml"
        return path.read_text() if path.exists() else ""

    def metric_names(self) -> list[str]:
        return metric_names(self.connection)

    def last_value(self, name: str) -> float | None:
        return last_metric_value(self.connection, name)

    def series(
        self, name: str, points: int = 500, start: int | None = None, end: int | None = None
    ) -> list[tuple[int, float | None]]:
        return metric_series(self.connection, name, points, start, end)

    def last_step(self) -> int:
        return last_metric_step(self.connection)

    def evals(self, split: str | None = None) -> list[EvalFinished]:
        """Evaluations as the events that recorded them (without their sample decodes)."""
        query, parameters = "SELECT * FROM evals", ()
        if split:
            query, parameters = query + " WHERE split = ?", (split,)
        rows = self.connection.execute(query + " ORDER BY step", parameters).fetchall()
        return [event for row in rows if (event := _eval_event(row)) is not None]

    # ------------------------------------------------------- reading only what is new
    # A follower (the console on a run's store) remembers the largest rowid it has read per
    # table and asks only for rows after it: following a long run costs what it wrote since.

    def max_rowids(self) -> dict[str, int]:
        marks = {}
        for table in FOLLOWED:
            try:
                row = self.connection.execute(f"SELECT max(rowid) FROM {table}").fetchone()
            except sqlite3.OperationalError:  # a run recorded before the table existed
                row = (0,)
            marks[table] = row[0] or 0
        return marks

    def metric_rows(self, after: int, upto: int) -> list[tuple[int, str, float]]:
        """(step, name, value) of metric rows with after < rowid <= upto, in write order (a row
        without an integer step or a name is skipped; a value that is not a number is NaN)."""
        rows = self.connection.execute(
            "SELECT step, name, value FROM metrics WHERE rowid > ? AND rowid <= ? ORDER BY rowid",
            (after, upto),
        ).fetchall()
        return [
            (r[0], r[1], _number(r[2]))
            for r in rows
            if isinstance(r[0], int) and isinstance(r[1], str)
        ]

    def evals_between(self, after: int, upto: int) -> list[EvalFinished]:
        rows = self.connection.execute(
            "SELECT * FROM evals WHERE rowid > ? AND rowid <= ? ORDER BY rowid", (after, upto)
        ).fetchall()
        return [event for row in rows if (event := _eval_event(row)) is not None]

    def alarms_between(self, after: int, upto: int) -> list[AlarmRaised]:
        rows = self.connection.execute(
            "SELECT * FROM alarms WHERE rowid > ? AND rowid <= ? ORDER BY rowid", (after, upto)
        ).fetchall()
        return [
            AlarmRaised(
                row["step"],
                time=_number(row["time"]),
                severity=str(row["severity"]),
                kind=str(row["kind"]),
                message=str(row["message"]),
                hint=str(row["hint"]),
                stage=row["stage"] if isinstance(row["stage"], str) else "",
                batch_ids=_batch_ids(row["batch_ids"]),
            )
            for row in rows
            if isinstance(row["step"], int)
        ]

    def events_between(self, after: int, upto: int) -> list[Event]:
        """Lifecycle events as the dataclasses that were published (rows another version wrote
        that no longer fit are skipped)."""
        events: list[Event] = []
        for rowid, kind, payload in self.events(after):
            if rowid > upto:
                break
            cls = EVENT_TYPES.get(kind)
            if cls is None:
                continue
            fields = {k: v for k, v in payload.items() if k != "type"}
            try:
                events.append(cls(**fields))
            except TypeError:
                continue
        return events

    def alarms(self) -> list[dict[str, Any]]:
        rows = self.connection.execute("SELECT * FROM alarms ORDER BY step, time").fetchall()
        return [{**dict(row), "batch_ids": _batch_ids(row["batch_ids"])} for row in rows]

    def change_marker(self) -> tuple:
        """Cheap to read; changes whenever the run wrote anything a reviewer shows."""
        return tuple(self.max_rowids().values())

    def stored_evaluations(self, after: int = 0, upto: int = -1) -> list[dict[str, Any]]:
        """Results of `signconsole eval` on this run's checkpoints, oldest first (rowids
        after < rowid <= upto; upto -1: all)."""
        try:
            rows = self.connection.execute(
                "SELECT time, checkpoint, step, data, split, decoder, unit, error_rate, "
                "substitutions, deletions, insertions, reference_words, sequences "
                "FROM evaluations WHERE rowid > ? AND (? < 0 OR rowid <= ?) ORDER BY time",
                (after, upto, upto),
            ).fetchall()
        except sqlite3.OperationalError:  # a run recorded before the table existed
            return []
        return [dict(row) for row in rows]

    def decodes(self, step: int) -> list[DecodeRow]:
        rows = self.connection.execute(
            "SELECT * FROM decodes WHERE step = ? ORDER BY rowid", (step,)
        ).fetchall()

        def words(text: str) -> tuple[str, ...]:
            return tuple(text.split()) if text else ()

        return [
            DecodeRow(
                row["sample_id"],
                words(row["reference"]),
                words(row["greedy"]),
                words(row["beam"]),
                row["error_rate"],
            )
            for row in rows
        ]

    def samples(self, step: int) -> tuple[SampleDecode, ...]:
        """The sample decodes of the dev evaluation at `step`, as the event carried them."""
        return tuple(
            SampleDecode(d.sample_id, d.reference, d.greedy, d.beam, d.error_rate)
            for d in self.decodes(step)
        )

    def events(self, after_rowid: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
        """(rowid, type, payload) of lifecycle events, oldest first (a row whose payload is not
        a JSON object is skipped)."""
        rows = self.connection.execute(
            "SELECT rowid, type, payload FROM events WHERE rowid > ? ORDER BY rowid",
            (after_rowid,),
        ).fetchall()
        return [
            (row["rowid"], row["type"], payload)
            for row in rows
            if isinstance(payload := _json(row["payload"], None), dict)
        ]

    # -------------------------------------------------------------------------- commanding
    def send(self, command: Command, source: str = "attach") -> None:
        """Queue a command for the engine training this run (applied at its next step)."""
        database = self.run_dir / "run.db"
        command = dataclasses.replace(command, source=source)
        try:
            connection = sqlite3.connect(database, timeout=10)
            try:
                connection.execute(
                    "INSERT INTO commands (time, source, payload) VALUES (?, ?, ?)",
                    (time.time(), source, json.dumps(to_payload(command))),
                )
                connection.commit()
            finally:
                connection.close()
        except sqlite3.OperationalError as error:
            raise UserError(
                f"{database}: cannot queue the command ({error}); only the user who owns the "
                "run directory can control a run"
            ) from None
