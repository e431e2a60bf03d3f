"""Commands reach the engine here, between optimizer steps (never between micro-batches).

Two sources: the in-process bus (the console) and the run store's commands table (another
terminal: `signconsole show` attached to a headless run), polled about once a second. While the
run is paused the inbox waits here for the command that resumes or stops it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import TYPE_CHECKING

from signconsole.engine.callbacks import Callback
from signconsole.engine.distributed import Packet
from signconsole.events import (
    COMMAND_TYPES,
    CheckpointNow,
    Command,
    CommandApplied,
    EvaluateNow,
    Freeze,
    LearningRateChanged,
    Pause,
    Resume,
    SetLearningRate,
    Stop,
    Unfreeze,
    describe_command,
)

if TYPE_CHECKING:
    from signconsole.engine.trainer import Engine

STORE_POLL_SECONDS = 1.0


class CommandInbox(Callback):
    """Rank 0 (the only rank of a one-process run) gathers the commands, from the bus and the
    store, and every rank applies the same ones at the same boundary (engine/distributed.py)."""

    def __init__(self) -> None:
        self._last_poll = 0.0

    def on_boundary(self, engine: Engine) -> None:
        self._exchange(engine, wait=False)
        if engine.state.status == "paused":
            engine.clock.pause()
            while engine.state.status == "paused" and not engine.state.stop_reason:
                self._exchange(engine, wait=True)  # rank 0's heartbeat while paused
            engine.clock.resume()

    def _exchange(self, engine: Engine, wait: bool) -> None:
        dist, state = engine.dist, engine.state
        packet = None
        if dist.is_main:
            commands = engine.bus.pending_commands()
            if wait and not commands:
                command = engine.bus.wait_command(0.2)
                commands = [command] if command is not None else []
            commands += self._store_commands(engine, force=wait)
            packet = Packet(
                commands=commands,
                stop=(state.stop_reason, state.outcome) if state.stop_reason else None,
                lr_state=engine.lr_control.state_dict(),
            )
        if dist.enabled:
            packet = dist.broadcast(packet)
            if not dist.is_main:  # rank 0's decisions: plateau decays, budgets, early stopping
                engine.lr_control.load_state_dict(packet.lr_state)
                if packet.stop is not None:
                    state.stop(*packet.stop)
        for command in packet.commands:
            apply_command(engine, command)

    def _store_commands(self, engine: Engine, force: bool) -> list[Command]:
        """Commands other processes queued in run.db, about once a second."""
        now = time.monotonic()
        if engine.recorder is None or (not force and now - self._last_poll < STORE_POLL_SECONDS):
            return []
        self._last_poll = now
        db, commands = engine.recorder.db, []
        for command_id, payload in db.pending_commands():
            # Marked applied first: a row that cannot be parsed or applied is answered once and
            # never again, so no row in the table can stop this run or any later --resume.
            db.mark_command_applied(command_id, engine.state.step)
            db.connection.commit()
            command = parse_command(payload)
            if isinstance(command, str):
                reject(engine, f"row {command_id} of run.db's commands table", command)
            else:
                commands.append(command)
        return commands


def parse_command(payload: object) -> Command | str:
    """A command from a stored JSON payload, or the reason it is not one."""
    if isinstance(payload, str | bytes):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError) as error:  # RecursionError: "[[[[..." rows
            return f"not JSON ({str(error)[:80]})"
    if not isinstance(payload, dict):
        return f"expected a JSON object with a type, got {type(payload).__name__}"
    fields = dict(payload)
    name = fields.pop("type", None)
    cls = COMMAND_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        return f"unknown command type {name!r} (known: {', '.join(COMMAND_TYPES)})"
    allowed = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in fields.items():
        if key not in allowed:
            return f"{name} has no field {key!r}"
        expected = FIELD_TYPES.get(key, str)
        if value is not None and (
            not isinstance(value, expected) or isinstance(value, bool) and expected is not bool
        ):
            return f"{name}.{key} = {value!r} is not {expected.__name__ if isinstance(expected, type) else 'a number'}"
    try:
        return cls(**fields)
    except TypeError as error:
        return f"{name}: {error}"


FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "source": str,
    "reason": str,
    "stage": str,
    "value": (int, float),
    "factor": (int, float),
}
MAX_LEARNING_RATE = 10.0  # beyond this a command is a typo, not a choice (1e308 once NaN-ed a run)
MAX_LR_FACTOR = 1000.0


def check_command(engine: Engine, command: Command) -> str:
    """Why `command` cannot be applied to this run now ("" when it can)."""
    if isinstance(command, Pause | Resume) and engine.state.stop_reason:
        return f"the run is stopping ({engine.state.stop_reason})"
    if isinstance(command, Freeze | Unfreeze):
        if command.stage not in engine.stages:
            return f"unknown stage {command.stage!r} (stages: {', '.join(engine.stages)})"
        if isinstance(command, Freeze):
            training = [
                s for s, on in engine.control.trainable.items() if on and s != command.stage
            ]
            if not training:
                return f"freezing {command.stage!r} would leave no stage training"
    if isinstance(command, SetLearningRate):
        value, factor = command.value, command.factor
        if (value is None) == (factor is None):
            return "give exactly one of value or factor"
        number = float(value if value is not None else factor) if _sane(value, factor) else math.inf
        limit = MAX_LEARNING_RATE if value is not None else MAX_LR_FACTOR
        if not (math.isfinite(number) and 0 < number <= limit):
            kind = "learning rate" if value is not None else "factor"
            shown = value if value is not None else factor
            return f"{kind} {str(shown)[:30]} must be a finite number in (0, {limit:g}]"
        if factor is not None:
            result = engine.lr_control.lr(engine.state.step) * number
            if result > MAX_LEARNING_RATE:
                return f"the learning rate would become {result:.3g} (> {MAX_LEARNING_RATE:g})"
    return ""


def _sane(*numbers: float | int | None) -> bool:
    """False for integers too large for a float (JSON reads 1 followed by 400 digits as one)."""
    return all(n is None or isinstance(n, float) or abs(n) < 1e300 for n in numbers)


def reject(engine: Engine, what: str, reason: str) -> None:
    engine.bus.publish(
        CommandApplied(engine.state.step, command=what[:120], detail=f"rejected: {reason}")
    )


def apply_command(engine: Engine, command: Command) -> None:
    """Apply one command and record it (CommandApplied), with what it did or why not."""
    problem = check_command(engine, command)
    if problem:
        reject(engine, describe_command(command), problem)
        return
    detail = ""
    if isinstance(command, Pause):
        engine.set_status("paused", "paused by user")
    elif isinstance(command, Resume):
        engine.health.consecutive_nonfinite = 0
        engine.set_status("running", "resumed by user")
    elif isinstance(command, Stop):
        engine.set_status("stopping", command.reason)
        engine.state.stop(command.reason or "stopped by user")
    elif isinstance(command, Freeze | Unfreeze):
        engine.set_trainable(command.stage, isinstance(command, Unfreeze), "command")
    elif isinstance(command, SetLearningRate):
        lr_control, step = engine.lr_control, engine.state.step
        previous = lr_control.lr(step)
        if command.value is not None:
            lr_control.set_exact(command.value, step)
        else:
            lr_control.scale(command.factor)
        detail = f"next lr {lr_control.lr(step):.3g}"
        engine.bus.publish(
            LearningRateChanged(step, lr=lr_control.lr(step), previous=previous, reason="command")
        )
    elif isinstance(command, CheckpointNow):
        engine.checkpoint("last")
    elif isinstance(command, EvaluateNow):
        engine.evaluator.evaluate_dev()
    engine.bus.publish(
        CommandApplied(
            engine.state.step,
            command=describe_command(command),
            detail=detail or f"from {command.source}",
        )
    )
