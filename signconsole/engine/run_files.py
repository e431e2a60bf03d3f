"""A run's directory: created for a new run, reopened (and rolled back to its checkpoint) for a
resumed one; and which model code a run is built from."""

from __future__ import annotations

import time
import tomllib
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signconsole.config import Profile
from signconsole.engine import checkpointing
from signconsole.errors import UserError
from signconsole.events import CommandApplied
from signconsole.models.provenance import record_source, source_for_run
from signconsole.models.registry import ModelSource, resolve_architecture
from signconsole.models.user_code import first_line, user_frame
from signconsole.profile import ProfileError, profile_from_dict, profile_to_dict
from signconsole.store.lock import RunLock
from signconsole.store.run import RunRecorder, new_run_dir

if TYPE_CHECKING:
    from signconsole.engine.trainer import Engine


def model_source(profile: Profile, resume_dir: Path | None) -> tuple[ModelSource, str]:
    """The profile's model code; on resume, the code the run recorded (with a note when the
    original file changed or is gone and the run's copy is used)."""
    architecture = profile.model.architecture
    if resume_dir is not None:
        recorded = checkpointing.recorded_source(resume_dir / "checkpoints" / "last.pt")
        rebuilt = source_for_run(architecture, recorded, resume_dir)
        return rebuilt.source, rebuilt.note
    base = Path(profile.source).parent if profile.source else None
    return resolve_architecture(architecture, base), ""


def open_run_dir(engine: Engine) -> None:
    if not engine.dist.is_main:
        _follow_run_dir(engine)
        return
    if engine.resume_dir is not None:
        # First: a run another process is training must not be trained twice.
        engine.lock = RunLock.acquire(engine.resume_dir)
        # run_dir is set once the resume is accepted: a refused one records nothing in the run.
        changes = profile_changes(engine.resume_dir, engine.profile_toml)
        structural = [c for c in changes if c.startswith(STRUCTURAL)]
        if structural:
            raise UserError(
                f"{engine.resume_dir}: cannot resume with a different "
                + "; ".join(structural[:4])
                + ": the checkpoint was made with the old value; start a new run (pretrained "
                "weights: model.pretrained.path = the run directory)"
            )
        if changes and not engine.allow_changes:
            raise UserError(
                f"{engine.resume_dir}: the profile differs from the one this run trained with ("
                + "; ".join(changes[:6])
                + ("; ..." if len(changes) > 6 else "")
                + "); resume with the same profile, or add --allow-changes to train on with the "
                "new values (the difference is recorded in the run)"
            )
        last = engine.resume_dir / "checkpoints" / "last.pt"
        checkpointing.restore(engine, last)
        engine.run_dir = engine.resume_dir
        engine.model_record = checkpointing.recorded_source(last) or record_source(
            engine.model_source, engine.run_dir
        )
    else:
        engine.run_dir = new_run_dir(engine.runs_dir, engine.profile.name)
        engine.lock = RunLock.acquire(engine.run_dir)
        (engine.run_dir / "profile.toml").write_text(engine.profile_toml)
        engine.vocabulary.save(engine.run_dir / "vocabulary.json")
        if engine.data.stats is not None:
            engine.data.stats.save(engine.run_dir / "stats.npz")
        engine.model_record = record_source(engine.model_source, engine.run_dir)
        for name in engine.control.initially_frozen:
            engine.control.set_trainable(name, False)
    engine.dist.broadcast(str(engine.run_dir))  # the other ranks' _follow_run_dir
    engine.recorder = RunRecorder(engine.run_dir)
    if engine.resume_dir is not None:
        # Rows written after the last checkpoint describe steps about to be trained again.
        engine.recorder.db.forget_after(engine.state.step)
    engine.bus.subscribe(engine.recorder)
    if engine.lock.note:  # a stale lock of a dead process was taken over: say so, once
        engine.bus.publish(
            CommandApplied(engine.state.step, command="LockTakenOver", detail=engine.lock.note)
        )
    if engine.resume_dir is not None and changes:
        record_changes(engine, changes)


def _follow_run_dir(engine: Engine) -> None:
    """Ranks other than 0 write nothing: they learn the run directory from rank 0 and, on a
    resume, load the same checkpoint."""
    engine.run_dir = Path(engine.dist.broadcast(None))
    engine.model_record = None
    if engine.resume_dir is not None:
        checkpointing.restore(engine, engine.run_dir / "checkpoints" / "last.pt")
    else:
        for name in engine.control.initially_frozen:
            engine.control.set_trainable(name, False)


def profile_changes(run_dir: Path, profile_toml: str) -> list[str]:
    """'key: old -> new' for every value that differs from the run's recorded profile, both read
    through the profile schema (so a key added to signconsole since the run is its default, not
    a change)."""
    recorded = run_dir / "profile.toml"
    if not recorded.is_file():
        return []
    try:
        before = profile_to_dict(profile_from_dict(tomllib.loads(recorded.read_text("utf-8"))))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ProfileError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{recorded}: unreadable ({first}); the run cannot be resumed") from None
    return _diff(before, profile_to_dict(profile_from_dict(tomllib.loads(profile_toml))))


# What the checkpoint's tensors were made with: a change would not load or would be a new run.
STRUCTURAL = ("kind", "model.", "optimizer.name", "data.normalization", "data.coordinates")


def _diff(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += _diff(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return changes


def record_changes(engine: Engine, changes: list[str]) -> None:
    """--allow-changes: the run's profile.toml becomes the new one; the log keeps the old values."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(engine.run_dir / "profile-changes.txt", "a", encoding="utf-8") as log:
        log.writelines(f"{stamp} step {engine.state.step}: {change}\n" for change in changes)
    (engine.run_dir / "profile.toml").write_text(engine.profile_toml)
    engine.bus.publish(
        CommandApplied(
            engine.state.step, command="ProfileChanged", detail="; ".join(changes)[:2000]
        )
    )


def record_traceback(engine: Engine, error: BaseException) -> Path | None:
    """The failure's full traceback at the end of the run's log.txt (rank 0), for debugging:
    what the terminal shows of it is one line. Returns the log's path, None if not written."""
    if engine.run_dir is None or not engine.dist.is_main:
        return None
    log = engine.run_dir / "log.txt"
    try:
        with log.open("a", encoding="utf-8") as out:
            out.write(f"traceback of the failure at step {engine.state.step}:\n")
            out.write("".join(traceback.format_exception(error)))
    except OSError:
        return None
    return log


def user_model_failure(engine: Engine, error: BaseException, log: Path | None) -> UserError | None:
    """An exception raised in the user's model code (its forward, output_lengths, a hook) as
    one line that names the user's file:line; None for anything else: an error in signconsole
    keeps its traceback, a UserError already is one line."""
    if isinstance(error, UserError) or not isinstance(error, Exception):
        return None
    source = getattr(engine, "model_source", None)  # set once setup has resolved the model
    user_code = source is not None and source.is_user_code
    teacher = engine.teacher is not None and engine.teacher.user_code
    frame = user_frame(error) if user_code or teacher else None
    if frame is None:
        return None
    kept = f"; the run failed, its full traceback is in {log}" if log else ""
    return UserError(
        f"{frame.name} raised {type(error).__name__}: {first_line(error)} "
        f"({frame.filename}:{frame.lineno}) at step {engine.state.step}{kept}"
    )
