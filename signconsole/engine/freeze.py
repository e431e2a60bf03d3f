"""Freeze stages: which layer groups train, and when they are unfrozen.

A frozen stage has requires_grad=False (no gradient work) and stays in eval mode so its
BatchNorm statistics do not move. Its parameters stay in the optimizer, so Adam's moments
survive a freeze/unfreeze round trip (a parameter without a gradient is skipped, not reset).
"""

from __future__ import annotations

import math

from torch import nn

from signconsole.config import FreezeConfig
from signconsole.errors import UserError


class StageError(UserError):
    pass


class StageControl:
    def __init__(self, stages: dict[str, nn.Module], config: FreezeConfig, max_epochs: int) -> None:
        self.stages = stages
        self.order = list(stages)
        self.trainable = {name: True for name in self.order}
        self.unfreeze_at: dict[int, list[str]] = {}
        for name in config.frozen:
            self.check(name, "freeze.frozen")
        if config.freeze_until:
            self.check(config.freeze_until, "freeze.freeze_until")
        initially_frozen = set(config.frozen)
        if config.freeze_until:
            initially_frozen |= set(self.order[: self.order.index(config.freeze_until) + 1])
        for entry in config.schedule:
            for name in entry.unfreeze:
                self.check(name, "freeze.schedule.unfreeze")
            self.unfreeze_at.setdefault(entry.epoch, []).extend(entry.unfreeze)
        # Stages without parameters (a pooling, an activation) train nothing either way.
        learning = [name for name in self.order if any(True for _ in stages[name].parameters())]
        if learning and not set(learning) & set(config.training_at_start(self.order)):
            key, message = config.all_frozen_message(self.order)
            raise StageError(f"{key}: {message}")
        if config.stages:
            self._generate(config.stages, initially_frozen, max_epochs)
        self.initially_frozen = [name for name in self.order if name in initially_frozen]

    def _generate(self, phases: int, frozen: set[str], max_epochs: int) -> None:
        """Seed 004's progressive unfreezing: `phases` equal spans of the run; the first trains
        only what is not frozen, each later one unfreezes the next group, top (output side)
        first. Extra stages go to the last groups, so the bottom of the network (stem, fusion)
        unfreezes together, as the seed does with "mixed_3 & stem". Example: 4 phases over 50
        epochs with mixed_5, mixed_4, mixed_3, stem frozen: mixed_5 at epoch 13, mixed_4 at 25,
        mixed_3 and stem at 38 (epoch i * 50 / 4, rounded up)."""
        if phases < 2:
            raise StageError(
                f"freeze.stages = {phases}: give 2 or more phases (the first trains only the "
                "unfrozen stages), or 0 for no generated schedule"
            )
        if not frozen:
            raise StageError(
                f"freeze.stages = {phases} unfreezes frozen stages, but none is frozen at the "
                "start: set freeze.freeze_until or freeze.frozen"
            )
        if max_epochs <= 0:
            raise StageError(
                "freeze.stages spreads unfreezing over training.max_epochs, which is 0; set "
                "training.max_epochs or use an explicit [[freeze.schedule]]"
            )
        top_down = [name for name in reversed(self.order) if name in frozen]
        groups = min(phases - 1, len(top_down))
        base, extra = divmod(len(top_down), groups)
        start = 0
        for index in range(1, groups + 1):
            size = base + (1 if index > groups - extra else 0)
            epoch = max(1, math.ceil(index * max_epochs / (groups + 1)))
            self.unfreeze_at.setdefault(epoch, []).extend(top_down[start : start + size])
            start += size

    def check(self, name: str, key: str) -> None:
        if name not in self.stages:
            raise StageError(
                f"{key}: unknown stage {name!r}; this model's stages are {', '.join(self.order)}"
            )

    def set_trainable(self, name: str, trainable: bool) -> bool:
        """Returns whether anything changed."""
        self.check(name, "stage")
        if self.trainable[name] == trainable:
            return False
        self.trainable[name] = trainable
        for parameter in self.stages[name].parameters():
            parameter.requires_grad_(trainable)
            if not trainable:
                parameter.grad = None
        return True

    def apply_modes(self, training: bool) -> None:
        """Call after model.train(): frozen stages go back to eval (fixed BatchNorm statistics)."""
        if not training:
            return
        for name, module in self.stages.items():
            if not self.trainable[name]:
                module.eval()

    def scheduled(self, epoch: int) -> list[str]:
        return [name for name in self.unfreeze_at.get(epoch, []) if not self.trainable[name]]

    def schedule_text(self) -> list[tuple[int, list[str]]]:
        return sorted(self.unfreeze_at.items())
