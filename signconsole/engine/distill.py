"""The teacher of a distillation run: found from `distill.teacher`, checked, frozen.

The teacher comes with its own profile and vocabulary (both are in every signconsole checkpoint),
so its architecture is rebuilt exactly and its outputs mean the same tokens as the student's. What
must agree with the student's data is checked before training: the vocabulary (same tokens in the
same order) and the feature normalization (mode, coordinates and, for corpus_stats, the
statistics), since the teacher only knows features normalized the way it was trained on.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from signconsole.config import Profile
from signconsole.data.normalize import FeatureStats
from signconsole.engine.inference import load_trained
from signconsole.errors import UserError
from signconsole.models.contract import ModelOutput, forward
from signconsole.profile import resolve_path


class TeacherError(UserError):
    pass


@dataclass
class Teacher:
    model: nn.Module
    profile: Profile  # the teacher's own, as it was trained
    checkpoint: Path
    run_dir: Path | None  # when the checkpoint sits in a run directory
    device: torch.device
    bf16: bool  # autocast on CUDA: the teacher's forward pass is half the cost
    note: str = ""  # set when the teacher's model code was rebuilt from its run's copy
    user_code: bool = False  # a user's model: it is fed the whole 6516-vector

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> ModelOutput:
        """Eval mode, no autograd graph: the teacher's gradients are never computed."""
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        )
        with torch.no_grad(), autocast:
            return forward(self.model, features, lengths)


def load_teacher(
    profile: Profile,
    vocabulary: list[str],
    stats: FeatureStats | None,
    device: torch.device,
) -> Teacher:
    key = "distill.teacher"
    if not profile.distill.teacher:
        raise TeacherError(
            f'{key} is empty; kind = "distill" needs the teacher: a run directory, a checkpoint, '
            'or a glob such as "../runs/*-demo-teacher"'
        )
    trained = load_trained(str(resolve_path(profile, profile.distill.teacher)), device, key)
    check_vocabulary(list(trained.vocabulary.tokens), vocabulary, trained.checkpoint)
    check_normalization(profile, trained.profile, stats, trained.stats, trained.checkpoint)
    trained.model.requires_grad_(False)  # eval mode already: load_trained leaves it there
    return Teacher(
        trained.model,
        trained.profile,
        trained.checkpoint,
        trained.run_dir,
        device,
        bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
        note=trained.note,
        user_code=trained.user_code,
    )


def check_vocabulary(teacher: list[str], student: list[str], checkpoint: Path) -> None:
    if teacher == student:
        return
    first = next(
        (i for i, (a, b) in enumerate(zip(teacher, student, strict=False)) if a != b),
        min(len(teacher), len(student)),
    )
    theirs = teacher[first] if first < len(teacher) else "(end)"
    ours = student[first] if first < len(student) else "(end)"
    raise TeacherError(
        f"distill.teacher: {checkpoint}: the teacher's vocabulary ({len(teacher)} tokens) differs "
        f"from this corpus's ({len(student)}): at index {first} the teacher has {theirs!r}, the "
        f"corpus {ours!r}; distill on the corpus the teacher was trained on"
    )


def check_normalization(
    profile: Profile,
    teacher_profile: Profile,
    stats: FeatureStats | None,
    teacher_stats: FeatureStats | None,
    checkpoint: Path,
) -> None:
    ours, theirs = profile.data, teacher_profile.data
    for name in ("normalization", "coordinates"):
        if getattr(ours, name) != getattr(theirs, name):
            raise TeacherError(
                f"distill.teacher: {checkpoint}: the teacher was trained with data.{name} = "
                f"{getattr(theirs, name)!r}, this profile has {getattr(ours, name)!r}; the "
                "teacher only understands features prepared its way: set the same value"
            )
    if stats is None or teacher_stats is None:
        return
    same = torch.allclose(teacher_stats.mean, stats.mean, rtol=1e-3, atol=1e-4) and (
        torch.allclose(teacher_stats.scale, stats.scale, rtol=1e-3, atol=1e-6)
    )
    if not same:
        raise TeacherError(
            f"distill.teacher: {checkpoint}: the teacher's feature statistics (corpus_stats) "
            "differ from this corpus's train split, so it would see differently scaled features; "
            "distill on the teacher's corpus and split sizes"
        )


@dataclass
class TeacherTimer:
    """Milliseconds per teacher forward pass, for the step log. On CUDA only logged steps are
    timed: timing needs a device sync."""

    seconds: float = 0.0
    calls: int = 0

    @contextlib.contextmanager
    def timing(self, device: torch.device, logged_step: bool):
        timed = device.type != "cuda" or logged_step
        if timed and device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        yield
        if timed:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.seconds += time.perf_counter() - started
            self.calls += 1

    def take_ms(self) -> float:
        ms = 1000 * self.seconds / max(1, self.calls)
        self.seconds, self.calls = 0.0, 0
        return ms
