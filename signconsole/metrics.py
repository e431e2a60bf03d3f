"""Metric names and the words for events, in one place.

The recorder writes metrics under these names, the console charts them, review and export read
them back, and the headless reporter, the run log and the console's Events tab describe events
with the same functions. No Textual, no torch: every layer may import this.
"""

from __future__ import annotations

import math

from signconsole.events import (
    AlarmRaised,
    CheckpointSaved,
    CommandApplied,
    EvalFinished,
    LearningRateChanged,
    StageChanged,
    StateChanged,
    StepLogged,
)

TRAIN_LOSS = "train/loss"
LR = "lr"
GRAD_TOTAL = "grad_norm/total"
GRAD_PREFIX = "grad_norm/"
TRAIN_PREFIX = "train/"
FRAMES_PER_SECOND = "frames_per_second"
LOGIT_STD = "logit_std"
EPOCH = "epoch"
TEACHER_MS = "teacher_ms"
DATA_WAIT = "data_wait_share"  # a starved GPU shows here: the step waited for its batch
DEV_LOSS = "dev/loss"
DEV_ERROR = "dev/error_rate"
# The series the console charts (everything else is a single value on the status line).
CHARTED = (TRAIN_PREFIX, "dev/", GRAD_PREFIX, LR)
# Commands recorded before LearningRateChanged existed that changed the learning rate.
LR_COMMANDS = frozenset({"SetLearningRate", "PlateauDecay"})


def train_part(part: str) -> str:
    return f"{TRAIN_PREFIX}{part}"


def stage_grad(stage: str) -> str:
    return f"{GRAD_PREFIX}{stage}"


def eval_loss(split: str) -> str:
    return f"{split}/loss"


def eval_error(split: str) -> str:
    return f"{split}/error_rate"


def step_metrics(event: StepLogged) -> dict[str, float]:
    """What one StepLogged stores: the recorder writes exactly these rows."""
    values = {
        TRAIN_LOSS: event.loss,
        LR: event.lr,
        GRAD_TOTAL: event.grad_norm,
        FRAMES_PER_SECOND: event.frames_per_second,
        DATA_WAIT: event.data_wait_share,
        LOGIT_STD: event.logit_std,
        EPOCH: float(event.epoch),
    }
    if event.teacher_ms:
        values[TEACHER_MS] = event.teacher_ms
    values.update({train_part(k): v for k, v in event.parts.items()})
    values.update({stage_grad(k): v for k, v in event.stage_grad_norms.items()})
    return values


def eval_metrics(event: EvalFinished) -> dict[str, float]:
    return {eval_loss(event.split): event.loss, eval_error(event.split): event.error_rate}


def rate_name(unit: str) -> str:
    """The error rate's name: letters are spelled (LER), glosses are words (WER)."""
    return "LER" if unit == "letter" else "WER"


# ------------------------------------------------------------------------------- event words


def command_name(event: CommandApplied) -> str:
    return event.command.split(" ", 1)[0]


def describe_alarm(event: AlarmRaised) -> str:
    return f"{event.kind}: {event.message}"


def alarm_where(event: AlarmRaised, ids: int = 4) -> str:
    where = event.stage
    if event.batch_ids:
        shown = ", ".join(event.batch_ids[:ids]) + (" ..." if len(event.batch_ids) > ids else "")
        where = f"{where} batch {shown}".strip()
    return where


def describe_stage(event: StageChanged) -> str:
    return f"stage {event.stage} {'unfrozen' if event.trainable else 'frozen'} ({event.reason})"


def describe_state(event: StateChanged) -> str:
    return event.state + (f": {event.reason}" if event.reason else "")


def state_worth_telling(event: StateChanged) -> bool:
    """`running` after `starting` is the normal course; anything else a person wants to read."""
    return bool(event.reason) or event.state not in ("running", "starting")


def describe_applied(event: CommandApplied) -> str:
    return f"{event.command} {event.detail}".strip()


def lr_change_worth_telling(event: LearningRateChanged) -> bool:
    """A commanded change is already told by its CommandApplied ("next lr ..."): once is enough."""
    return event.reason != "command"


def describe_lr(event: LearningRateChanged) -> str:
    return f"learning rate {event.previous:.3g} -> {event.lr:.3g} ({event.reason})"


def describe_checkpoint(event: CheckpointSaved) -> str:
    return f"checkpoint {event.which} -> {event.path}"


def describe_eval(event: EvalFinished, split: bool = True) -> str:
    return (
        (f"{event.split} " if split else "")
        + f"loss {event.loss:.4f}  {rate_name(event.unit)} {event.error_rate:.2%}  "
        f"(S {event.substitutions} D {event.deletions} I {event.insertions} / "
        f"{event.reference_words})"
    )


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
