"""Learning-rate schedules as pure functions of the step (nanoGPT's `get_lr`): the same step
always gives the same factor, so resume and review need no scheduler object state. Plateau is
the one schedule that depends on evaluations; its decays live in `LearningRateControl`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from signconsole.config import ScheduleConfig


def schedule_factor(step: int, config: ScheduleConfig, total_steps: int) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based)."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        start = config.warmup_start_factor
        return start + (1.0 - start) * step / config.warmup_steps
    after = step - config.warmup_steps
    if config.name in ("constant", "plateau"):
        return 1.0
    if config.name == "step":
        return config.gamma ** (after // max(1, config.step_size))
    if config.name == "cyclic":  # triangle between min factor and 1
        position = (after % config.cycle_steps) / config.cycle_steps
        return 1.0 - 2.0 * abs(position - 0.5) * (1.0 - config.warmup_start_factor)
    if config.name == "cosine":
        if total_steps <= 0:  # only a time budget ends the run: no known end to decay towards
            return 1.0
        span = max(1, total_steps - config.warmup_steps)
        progress = min(1.0, after / span)
        return 0.0 + 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {config.name!r}")


@dataclass
class LearningRateControl:
    """base lr x schedule(step) x manual scale (commands, plateau decays), floored at min_lr."""

    base_lr: float
    config: ScheduleConfig
    total_steps: int
    manual_scale: float = 1.0
    best_metric: float = math.inf
    evals_without_improvement: int = 0

    def lr(self, step: int) -> float:
        value = self.base_lr * schedule_factor(step, self.config, self.total_steps)
        value *= self.manual_scale
        if self.config.name == "cosine" and step >= self.config.warmup_steps:
            value = max(value, self.config.min_lr * self.manual_scale)
        return value

    def set_exact(self, value: float, next_step: int) -> None:
        """Make the LR of `next_step` exactly `value`; the schedule continues from there."""
        self.manual_scale = 1.0
        current = self.lr(next_step)
        self.manual_scale = value / current if current > 0 else 1.0

    def scale(self, factor: float) -> None:
        self.manual_scale *= factor

    def observe_eval(self, metric: float) -> bool:
        """Plateau schedule: decay after `patience` evaluations without improvement. Returns True
        when it decayed."""
        if metric < self.best_metric - 1e-9:
            self.best_metric, self.evals_without_improvement = metric, 0
            return False
        self.evals_without_improvement += 1
        if self.config.name == "plateau" and self.evals_without_improvement >= self.config.patience:
            self.manual_scale *= self.config.gamma
            self.evals_without_improvement = 0
            return True
        return False

    def state_dict(self) -> dict[str, float]:
        return {
            "manual_scale": self.manual_scale,
            "best_metric": self.best_metric,
            "evals_without_improvement": self.evals_without_improvement,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.manual_scale = float(state["manual_scale"])
        self.best_metric = float(state["best_metric"])
        self.evals_without_improvement = int(state["evals_without_improvement"])
