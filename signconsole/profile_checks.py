"""The range of every profile value, and the rules that involve more than one key.

Types are checked while the TOML is read (`signconsole.profile`); this module checks what a type
cannot say: finite, positive, within sane bounds, and not contradicting another key. Upper
bounds are generous but finite because a value far past them never trains, it only hangs (a
billion fingerspelling sequences) or exhausts memory (a million hidden units). Every rule yields
at most one message per key, so a bad profile prints one line per problem.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from signconsole.config import LANDMARK_GROUPS, Profile
from signconsole.models.names import BUILTIN_STAGES
from signconsole.runtime import worker_processes_available

INT64_MAX = 2**63 - 1  # beyond this no tensor, SQLite column or RNG takes the value
SEED_MAX = 2**32 - 1  # the batch-order seed is seed * 7919 + epoch; torch takes < 2**64


@dataclass(frozen=True)
class Bound:
    """An interval; `low_open`/`high_open` exclude the end itself."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        above_low = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below_high = self.high is None or (
            value < self.high if self.high_open else value <= self.high
        )
        return above_low and below_high

    def text(self) -> str:
        if self.low is not None and self.high is not None:
            return (
                f"must be in {'(' if self.low_open else '['}{_number(self.low)}, "
                f"{_number(self.high)}{')' if self.high_open else ']'}"
            )
        if self.low is not None:
            return f"must be {'>' if self.low_open else '>='} {_number(self.low)}"
        return f"must be {'<' if self.high_open else '<='} {_number(self.high)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def between(low: float, high: float) -> Bound:
    return Bound(low, high)


POSITIVE = Bound(0.0, low_open=True)
NON_NEGATIVE = Bound(0.0)
FRACTION = Bound(0.0, 1.0, high_open=True)  # [0, 1)
COUNT = Bound(1, 1_000_000_000)  # steps, epochs, intervals: at least 1, far from overflow
OPTIONAL_COUNT = Bound(0, 1_000_000_000)  # the same where 0 means "off" / "no limit"

# Every numeric key of config.py. A key missing here is still checked for finiteness and int64
# range; `test_every_numeric_key_has_a_bound` keeps this table complete.
BOUNDS: dict[str, Bound] = {
    "data.fingerspell.seed": between(0, SEED_MAX),
    "data.fingerspell.train": between(1, 100_000),
    "data.fingerspell.dev": between(1, 100_000),
    "data.fingerspell.test": between(1, 100_000),
    "data.batch_size": between(1, 4096),
    "data.synthesis.random_share": between(0, 1),
    "data.synthesis.random_letters[]": between(1, 64),
    "data.synthesis.widen": between(0, 10),
    "data.max_frames": between(0, 1_000_000),
    "data.bucket_width": between(1, 100_000),
    "data.num_workers": between(0, 256),
    "data.augment_rotation": between(0, 180),
    "data.augment_noise": between(0, 1),
    "model.hidden": between(2, 65_536),
    "model.fusion_dim": between(1, 65_536),
    "model.lstm_layers": between(1, 64),
    "model.dropout": FRACTION,
    "model.temporal_stride": between(1, 4),  # and 1, 2 or 4: see the cross checks
    "model.width_multiplier": Bound(0.0, 64.0, low_open=True),
    "optimizer.learning_rate": Bound(0.0, 100.0, low_open=True),
    "optimizer.weight_decay": between(0, 100),
    "optimizer.momentum": FRACTION,
    "optimizer.betas[]": FRACTION,
    "optimizer.grad_clip": NON_NEGATIVE,
    "optimizer.stage_lr.*": between(0, 1000),  # a multiplier; 0 keeps the stage still
    "schedule.warmup_steps": OPTIONAL_COUNT,
    "schedule.warmup_start_factor": Bound(0.0, 1.0, low_open=True),
    "schedule.min_lr": NON_NEGATIVE,
    "schedule.step_size": COUNT,
    "schedule.gamma": Bound(0.0, 1.0, low_open=True),
    "schedule.patience": OPTIONAL_COUNT,
    "schedule.cycle_steps": Bound(2, 1_000_000_000),  # a triangle needs an up and a down step
    "training.max_epochs": OPTIONAL_COUNT,
    "training.max_steps": OPTIONAL_COUNT,
    "training.max_minutes": between(0, 1_000_000),
    "training.eval_every": OPTIONAL_COUNT,
    "training.log_every": COUNT,
    "training.grad_accumulation": between(1, 4096),
    "training.nproc": between(1, 1024),
    "training.seed": between(0, SEED_MAX),
    "training.early_stopping": OPTIONAL_COUNT,
    "training.beam_width": between(1, 1000),
    "training.sample_decodes": between(0, 1000),
    "training.checkpoint_every": OPTIONAL_COUNT,
    "training.checkpoint_minutes": between(0, 1_000_000),
    "freeze.schedule[].epoch": between(0, 1_000_000_000),
    "freeze.stages": between(0, 1000),
    "health.nonfinite_pause_after": OPTIONAL_COUNT,  # 0 = never pause (or end) on them
    "health.grad_norm_explode": POSITIVE,
    "health.grad_norm_vanish": NON_NEGATIVE,
    "health.logit_std_min": NON_NEGATIVE,
    "health.collapse_similarity": Bound(0.0, 1.0, low_open=True),
    "health.blank_only_after_evals": OPTIONAL_COUNT,
    "health.overfit_samples": between(1, 10_000),
    "health.overfit_max_steps": between(1, 1_000_000),
    "distill.temperature": Bound(0.0, 1000.0, low_open=True),
    "distill.alpha": between(0, 1),
}

# Strings that become paths or file names: an empty one or a NUL byte fails deep in the OS.
NON_EMPTY = ("name", "data.corpus", "data.fingerspell.lang", "output.runs_dir")


def walk(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) for every value of a profile, lists as `key[i]`."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            if f.name != "source":
                yield from walk(getattr(value, f.name), f"{key}.{f.name}" if key else f.name)
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            yield from walk(item, f"{key}[{index}]")
    elif isinstance(value, dict) and not key.startswith("model.args"):
        for name, item in value.items():
            yield from walk(item, f"{key}.{name}")
    else:
        yield key, value


def bound_key(key: str) -> str:
    """`optimizer.betas[1]` -> `optimizer.betas[]`, `optimizer.stage_lr.fusion` -> `.*`."""
    key = re.sub(r"\[\d+\]", "[]", key)
    return "optimizer.stage_lr.*" if key.startswith("optimizer.stage_lr.") else key


def value_problems(profile: Profile) -> list[tuple[str, str]]:
    """(key, message) for each value outside its range, one per key."""
    problems = []
    for key, value in walk(profile):
        if key.startswith("model.args"):
            continue  # the user's model checks its own arguments when it is built
        if isinstance(value, str):
            if "\x00" in value:
                problems.append((key, "contains a NUL character"))
            elif key in NON_EMPTY and not value.strip():
                problems.append((key, "must not be empty"))
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((key, f"must be a finite number, got {value}"))
            continue
        if isinstance(value, int) and abs(value) > INT64_MAX:
            problems.append((key, f"{value:.3g} is out of range (at most 2**63 - 1)"))
            continue
        bound = BOUNDS.get(bound_key(key))
        if bound is not None and not bound.admits(value):
            problems.append((key, f"{bound.text()}, got {value!r}"))
    return problems


def name_problems(profile: Profile) -> list[tuple[str, str]]:
    """The run name becomes a directory name: one path component, printable."""
    name = profile.name
    if not name.strip() or "\x00" in name:
        return []  # reported by value_problems
    if "/" in name or "\\" in name or name in (".", "..") or len(name) > 100:
        return [("name", f"{name[:40]!r} is not usable as a folder name (no / or \\, 1-100 chars)")]
    if not name.isprintable():
        return [("name", f"{name!r} holds control characters")]
    return []


def contradictions(profile: Profile) -> list[tuple[str, str]]:
    """Values that are each in range but cannot hold together. A rule whose keys are out of
    range is skipped: that key already has its line, and the contradiction would be noise."""
    problems: list[tuple[str, str]] = []
    out_of_range = {key for key, _ in value_problems(profile)}

    def check(ok: bool, key: str, message: str, *others: str) -> None:
        if not ok and not out_of_range.intersection((key, *others)):
            problems.append((key, message))

    model, training, schedule, health = (
        profile.model,
        profile.training,
        profile.schedule,
        profile.health,
    )
    check(
        profile.data.loader != "processes" or worker_processes_available(),
        "data.loader",
        f'"processes" needs fork (Linux), this is {sys.platform}: use "auto" or "threads"',
    )
    check(
        model.temporal_stride in (1, 2, 4),
        "model.temporal_stride",
        "must be 1, 2 or 4",
    )
    check(
        model.hidden % 2 == 0,
        "model.hidden",
        f"must be even (half per LSTM direction), got {model.hidden}",
    )
    check(
        training.precision != "fp16" or training.device.startswith(("cuda", "auto")),
        "training.precision",
        f'"fp16" needs a CUDA device, but training.device = {training.device!r}; '
        'use "bf16" or "fp32"',
    )
    check(
        schedule.min_lr <= profile.optimizer.learning_rate,
        "schedule.min_lr",
        f"{schedule.min_lr} is above optimizer.learning_rate "
        f"({profile.optimizer.learning_rate}): the floor would be the learning rate",
        "optimizer.learning_rate",
    )
    if schedule.name == "plateau":
        check(schedule.gamma < 1, "schedule.gamma", "must be below 1 for the plateau schedule")
    check(
        health.grad_norm_vanish < health.grad_norm_explode,
        "health.grad_norm_vanish",
        f"must be below health.grad_norm_explode ({health.grad_norm_explode})",
        "health.grad_norm_explode",
    )
    ignore_problem = _ignore_problem(profile)
    check(not ignore_problem, "data.ignore", ignore_problem, "data.normalization")
    check(
        profile.kind != "distill"
        or profile.distill.alpha_schedule != "linear"
        or training.max_epochs > 0
        or training.max_steps > 0,
        "distill.alpha_schedule",
        '"linear" falls to 0 at the planned last step, and a run limited by '
        "training.max_minutes alone has none; set training.max_epochs or training.max_steps, "
        'or use "constant"',
        "training.max_epochs",
        "training.max_steps",
    )
    # A user model's stages are known once it is built (engine/freeze.py checks them then).
    builtin_stages = BUILTIN_STAGES.get(model.architecture)
    freeze = profile.freeze
    if builtin_stages and set(freeze.frozen) | {freeze.freeze_until} <= {*builtin_stages, ""}:
        key, message = freeze.all_frozen_message(builtin_stages)
        check(bool(freeze.training_at_start(builtin_stages)), key, message)
    epochs = training.max_epochs
    if epochs > 0 and training.max_steps == 0 and training.max_minutes == 0:
        # Only when epochs are the run's one end: with a step or time limit they may never come.
        check(
            profile.freeze.stages <= epochs,
            "freeze.stages",
            f"{profile.freeze.stages} phases need at least as many epochs "
            f"(training.max_epochs = {epochs})",
            "training.max_epochs",
        )
        for index, entry in enumerate(profile.freeze.schedule):
            check(
                entry.epoch < epochs,
                f"freeze.schedule[{index}].epoch",
                f"epoch {entry.epoch} never comes: the run ends after {epochs} epochs "
                "(epochs count from 0)",
                "training.max_epochs",
            )
    return problems


def _ignore_problem(profile: Profile) -> str:
    """What is wrong with data.ignore ("" when nothing): the first of unknown names, every group
    ignored, or a normalization that cannot hold the ignored groups."""
    groups = profile.data.ignore
    unknown = [group for group in groups if group not in LANDMARK_GROUPS]
    if unknown:
        return (
            f"unknown landmark group(s) {', '.join(map(repr, unknown))}; the groups are "
            f"{', '.join(LANDMARK_GROUPS)}"
        )
    if set(LANDMARK_GROUPS) <= set(groups):
        return (
            f"ignores every landmark group ({', '.join(LANDMARK_GROUPS)}): the model would see "
            "only zeros; leave at least one group out of data.ignore"
        )
    if groups and profile.data.normalization != "corpus_stats":
        return (
            'needs data.normalization = "corpus_stats" (the ignored groups live in the '
            f"statistics), got {profile.data.normalization!r}; set it, or remove data.ignore"
        )
    return ""
