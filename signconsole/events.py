"""Events (engine -> everyone) and commands (anyone -> engine), and the bus between them.

Events are frozen dataclasses named in the past tense; commands are imperative. Everything a user
can see live is an event, and every event lands in the run store, so a past run reviews exactly
as it looked live. The bus never blocks the trainer: `publish` hands the event to each sink
synchronously, and sinks must be cheap (the store buffers, the console queues).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]
RunState = Literal["starting", "running", "paused", "stopping", "finished", "stopped", "failed"]


@dataclass(frozen=True)
class Event:
    step: int
    time: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    run_dir: str
    name: str
    kind: str
    device: str
    unit: str  # "letter" or "gloss": what the error rate counts
    stages: tuple[str, ...]
    parameters: dict[str, int]  # per stage
    trainable: dict[str, bool]
    total_steps: int  # planned optimizer steps (0 = unknown)
    profile_toml: str = ""  # run.db keeps it out of the event row: it is profile.toml beside
    resumed_from: str = ""
    stage_schedule: tuple[tuple[int, tuple[str, ...]], ...] = ()  # (epoch, stages to unfreeze)
    teacher: str = ""  # distillation: the teacher's checkpoint
    teacher_parameters: int = 0


@dataclass(frozen=True)
class StepLogged(Event):
    epoch: int
    loss: float  # total training loss (mean over the log interval)
    parts: dict[str, float]  # e.g. {"ctc": ..., "kd": ...}
    lr: float
    grad_norm: float
    stage_grad_norms: dict[str, float]
    frames_per_second: float
    logit_std: float
    skipped_steps: int = 0  # non-finite steps skipped in this interval
    teacher_ms: float = 0.0  # distillation: the teacher's forward pass, per batch (0 otherwise)
    data_wait_share: float = 0.0  # of this interval's time, spent waiting for the next batch


@dataclass(frozen=True)
class SampleDecode:
    id: str
    reference: tuple[str, ...]
    greedy: tuple[str, ...]
    beam: tuple[str, ...]
    error_rate: float  # of the beam hypothesis


@dataclass(frozen=True)
class EvalFinished(Event):
    epoch: int
    split: str
    loss: float
    error_rate: float
    substitutions: int
    deletions: int
    insertions: int
    reference_words: int
    unit: str
    is_best: bool
    samples: tuple[SampleDecode, ...] = ()
    blank_only: float = 0.0  # share of decodes that came out empty


@dataclass(frozen=True)
class AlarmRaised(Event):
    severity: Severity
    kind: str
    message: str
    hint: str
    stage: str = ""
    batch_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class StageChanged(Event):
    stage: str
    trainable: bool
    reason: str  # "profile", "schedule", "command"


@dataclass(frozen=True)
class PretrainedLoaded(Event):
    source: str  # the checkpoint file read
    source_format: str  # "signconsole", "state_dict", "i3d (piergiaj)", "i3d (hassony2)"
    adapt: str
    stages: tuple[tuple[str, int, int, int, int], ...]  # (stage, tensors, loaded, adapted, skipped)
    report: tuple[str, ...]  # the load report as text lines, summary first
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class DistillationSummary(Event):
    """Teacher vs student (and the same student without distillation, when such a run exists)."""

    unit: str
    rows: tuple[dict[str, Any], ...]  # comparison.ModelRow as dicts
    table: tuple[str, ...]  # the same as text lines


@dataclass(frozen=True)
class StateChanged(Event):
    state: RunState
    reason: str = ""


@dataclass(frozen=True)
class CommandApplied(Event):
    command: str
    detail: str


@dataclass(frozen=True)
class LearningRateChanged(Event):
    """The learning rate changed course by a decision, not by the smooth schedule: a command
    (SetLearningRate), a plateau decay. Charts draw a marker at each one."""

    lr: float  # the learning rate from this step on (base group)
    previous: float
    reason: str  # "command", "plateau", "schedule"


@dataclass(frozen=True)
class CheckpointSaved(Event):
    path: str
    which: str  # "last" or "best"


@dataclass(frozen=True)
class RunFinished(Event):
    status: RunState
    best_error_rate: float | None
    best_step: int | None
    best_checkpoint: str
    epochs: int
    duration: float


# ----------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    source: str = field(default="local", kw_only=True)


@dataclass(frozen=True)
class Pause(Command):
    pass


@dataclass(frozen=True)
class Resume(Command):
    pass


@dataclass(frozen=True)
class Stop(Command):
    reason: str = "stop requested"


@dataclass(frozen=True)
class Freeze(Command):
    stage: str


@dataclass(frozen=True)
class Unfreeze(Command):
    stage: str


@dataclass(frozen=True)
class SetLearningRate(Command):
    value: float | None = None  # exact learning rate for the next step
    factor: float | None = None  # or multiply the current one


@dataclass(frozen=True)
class CheckpointNow(Command):
    pass


@dataclass(frozen=True)
class EvaluateNow(Command):
    pass


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.__name__: cls
    for cls in (Pause, Resume, Stop, Freeze, Unfreeze, SetLearningRate, CheckpointNow, EvaluateNow)
}
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RunStarted,
        StepLogged,
        EvalFinished,
        AlarmRaised,
        StageChanged,
        PretrainedLoaded,
        DistillationSummary,
        StateChanged,
        CommandApplied,
        LearningRateChanged,
        CheckpointSaved,
        RunFinished,
    )
}


def to_payload(item: Event | Command) -> dict[str, Any]:
    return {"type": type(item).__name__, **dataclasses.asdict(item)}


def command_from_payload(payload: dict[str, Any]) -> Command:
    payload = dict(payload)
    cls = COMMAND_TYPES[payload.pop("type")]
    return cls(**payload)


def describe_command(command: Command) -> str:
    fields = {
        k: v for k, v in dataclasses.asdict(command).items() if k != "source" and v is not None
    }
    args = " ".join(f"{k}={v}" for k, v in fields.items())
    return f"{type(command).__name__} {args}".strip()


# ---------------------------------------------------------------------------------------- bus

Sink = Callable[[Event], None]


class EventBus:
    """Fan-out of events to sinks, and the engine's command inbox.

    `publish` runs in the trainer's thread and calls every sink in order; a sink that raises is
    detached and reported once instead of killing the run (a crashing pane must not stop
    training). Commands go through a thread-safe queue the engine drains between steps.
    """

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._lock = threading.Lock()
        self.commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self.sink_errors: list[str] = []

    def subscribe(self, sink: Sink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def unsubscribe(self, sink: Sink) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    def publish(self, event: Event) -> None:
        with self._lock:
            sinks = list(self._sinks)
        for sink in sinks:
            try:
                sink(event)
            except Exception as error:  # noqa: BLE001 - isolate the trainer from a broken view
                self.unsubscribe(sink)
                self.sink_errors.append(f"{getattr(sink, '__qualname__', sink)}: {error!r}")

    def send(self, command: Command) -> None:
        self.commands.put(command)

    def pending_commands(self) -> list[Command]:
        pending = []
        while True:
            try:
                pending.append(self.commands.get_nowait())
            except queue.Empty:
                return pending

    def wait_command(self, timeout: float) -> Command | None:
        try:
            return self.commands.get(timeout=timeout)
        except queue.Empty:
            return None
