"""Run directories and the recorder that writes every event into run.db.

runs/<YYYYmmdd-HHMMSS>-<profile name>/
    profile.toml       the fully resolved profile that ran
    vocabulary.json    index -> gloss, blank at 0
    stats.npz          normalization statistics (corpus_stats)
    run.db             SQLite (WAL): metrics, evals, decodes, alarms, events, commands
    checkpoints/       last.pt, best.pt (written to a temp file, then renamed)
    log.txt            plain log, one line per event worth reading
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from pathlib import Path

from signconsole.events import (
    AlarmRaised,
    CheckpointSaved,
    CommandApplied,
    DistillationSummary,
    EvalFinished,
    Event,
    LearningRateChanged,
    PretrainedLoaded,
    RunFinished,
    RunStarted,
    StageChanged,
    StateChanged,
    StepLogged,
    to_payload,
)
from signconsole.launch import LAUNCH_VARIABLE
from signconsole.metrics import (
    describe_applied,
    describe_checkpoint,
    describe_lr,
    eval_metrics,
    rate_name,
    step_metrics,
)
from signconsole.store.db import RunDatabase, read_meta, stored_number


def ensure_runs_dir(runs_dir: str | Path) -> Path:
    """The folder runs are written in, made if missing; a path that cannot be one (a file, a
    file on the way, no permission) is one line before any data is read or model built."""
    from signconsole.errors import UserError

    path = Path(runs_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file, not a runs folder; give a folder with --runs-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise UserError(
            f"{path}: cannot make the runs folder ({reason}); give another with --runs-dir"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{path}: the runs folder is not writable; give another with --runs-dir")
    return path


def new_run_dir(runs_dir: str | Path, name: str) -> Path:
    runs_dir = ensure_runs_dir(runs_dir)  # a run started from the console is checked the same
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in ["", *(f"-{i}" for i in range(2, 100))]:
        path = runs_dir / f"{stamp}-{name}{suffix}"
        # Only the owner may write: commands reach a run through its database (attach). Others
        # may read (review, compare, eval) as far as the umask allows: mkdir applies it.
        try:
            path.mkdir(mode=0o755)
        except FileExistsError:
            continue
        (path / "checkpoints").mkdir(mode=0o755)
        return path
    raise RuntimeError(f"cannot create a run directory in {runs_dir}")


class RunRecorder:
    """An event sink: every event into run.db (buffered), readable lines into log.txt."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.db = RunDatabase(run_dir / "run.db")
        self.log = (run_dir / "log.txt").open("a", encoding="utf-8", buffering=1)

    def __call__(self, event: Event) -> None:
        db = self.db
        if isinstance(event, StepLogged):
            db.add_metrics(event.step, step_metrics(event))
            db.flush_if_due()
            return
        if isinstance(event, EvalFinished):
            db.execute(
                "INSERT INTO evals VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    event.step,
                    event.epoch,
                    event.split,
                    event.loss,
                    event.error_rate,
                    event.substitutions,
                    event.deletions,
                    event.insertions,
                    event.reference_words,
                    event.unit,
                    int(event.is_best),
                    event.blank_only,
                    event.time,
                ),
            )
            db.add_metrics(event.step, eval_metrics(event))
            for sample in event.samples:
                db.execute(
                    "INSERT INTO decodes VALUES (?,?,?,?,?,?)",
                    (
                        event.step,
                        sample.id,
                        " ".join(sample.reference),
                        " ".join(sample.greedy),
                        " ".join(sample.beam),
                        sample.error_rate,
                    ),
                )
            self._line(
                event,
                f"eval {event.split} loss={event.loss:.4f} "
                f"{rate_name(event.unit)}={event.error_rate:.2%}"
                f"{' (best)' if event.is_best else ''}",
            )
        elif isinstance(event, AlarmRaised):
            db.execute(
                "INSERT INTO alarms VALUES (?,?,?,?,?,?,?,?)",
                (
                    event.step,
                    event.time,
                    event.severity,
                    event.kind,
                    event.message,
                    event.hint,
                    event.stage,
                    json.dumps(list(event.batch_ids)),
                ),
            )
            self._line(
                event, f"ALARM {event.severity} {event.kind}: {event.message} | {event.hint}"
            )
        else:
            payload = to_payload(event)
            if isinstance(event, RunStarted):
                payload.pop("profile_toml")
                db.set_meta(
                    name=event.name,
                    kind=event.kind,
                    device=event.device,
                    unit=event.unit,
                    **self._session_started(event.time),
                    pid=os.getpid(),
                    host=socket.gethostname(),
                    status="running",
                    stages=list(event.stages),
                    parameters=event.parameters,
                    total_steps=event.total_steps,
                    # the console that started this job finds its run by this (launch.py)
                    launch=os.environ.get(LAUNCH_VARIABLE, ""),
                )
            elif isinstance(event, StateChanged):
                db.set_meta(status=event.state, heartbeat=event.time)
            elif isinstance(event, DistillationSummary):
                (self.run_dir / "comparison.json").write_text(
                    json.dumps({"unit": event.unit, "models": list(event.rows)}, indent=2) + "\n"
                )
            elif isinstance(event, PretrainedLoaded):
                db.set_meta(pretrained=event.report[0] if event.report else event.source)
            elif isinstance(event, RunFinished):
                db.set_meta(
                    status=event.status,
                    finished=event.time,
                    **self._session_ended(event.time),
                    best_error_rate=event.best_error_rate,
                    best_step=event.best_step,
                    last_step=event.step,
                )
            db.execute(
                "INSERT INTO events VALUES (?,?,?,?)",
                (event.step, event.time, type(event).__name__, json.dumps(payload)),
            )
            self._line(event, _describe(event))
        db.flush()  # lifecycle events and evaluations are committed at once

    def _session_started(self, now: float) -> dict[str, float | None]:
        """A resumed run keeps its first start; the time it trained is summed session by
        session (`trained_seconds`), so its duration is not the days between two sessions. A
        session killed before it ended counts up to its newest event."""
        meta = read_meta(self.db.connection)
        first = stored_number(meta.get("started"))
        trained = stored_number(meta.get("trained_seconds")) or 0.0
        unended = stored_number(meta.get("session_started"))
        if unended is not None:
            newest = self.db.connection.execute("SELECT max(time) FROM events").fetchone()[0]
            trained += max(0.0, (stored_number(newest) or unended) - unended)
        return {
            "started": first if first is not None else now,
            "session_started": now,
            "trained_seconds": trained,
            "finished": None,  # the end of an earlier session is not this one's
        }

    def _session_ended(self, now: float) -> dict[str, float | None]:
        meta = read_meta(self.db.connection)
        trained = stored_number(meta.get("trained_seconds")) or 0.0
        session = stored_number(meta.get("session_started"))
        if session is not None:
            trained += max(0.0, now - session)
        return {"trained_seconds": trained, "session_started": None}

    def _line(self, event: Event, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
        self.log.write(f"{stamp} step {event.step}: {text}\n")

    def close(self) -> None:
        self.db.close()
        self.log.close()


def _describe(event: Event) -> str:
    if isinstance(event, StateChanged):
        return f"state {event.state}" + (f" ({event.reason})" if event.reason else "")
    if isinstance(event, StageChanged):
        return (
            f"stage {event.stage} {'trainable' if event.trainable else 'frozen'} ({event.reason})"
        )
    if isinstance(event, CommandApplied):
        return f"command {describe_applied(event)}"
    if isinstance(event, LearningRateChanged):
        return describe_lr(event)
    if isinstance(event, CheckpointSaved):
        return describe_checkpoint(event)
    if isinstance(event, PretrainedLoaded):
        return "\n".join(event.report)
    if isinstance(event, DistillationSummary):
        return "teacher vs student\n" + "\n".join(f"  {line}" for line in event.table)
    fields = {k: v for k, v in dataclasses.asdict(event).items() if k not in ("time", "step")}
    return f"{type(event).__name__} {json.dumps(fields, default=str)[:300]}"
