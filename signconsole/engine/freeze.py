"""Freeze stages: which layer groups train, and when they are unfrozen.

A frozen stage has requires_grad=False (no gradient work) and stays in eval mode so its
BatchNorm statistics do not move. Its parameters stay in the optimizer, so Adam's moments
survive a freeze/unfreeze round trip (a parameter without a gradient is skipped, not reset).
"""

from __future__ import annotations

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
        if config.stages > 0 and initially_frozen:
            top_down = [name for name in reversed(self.order) if name in initially_frozen]
            # Seed 004: unfreeze top (output side) first, in `stages` contiguous groups spread
            # evenly over the run.
            size = -(-len(top_down) // config.stages)
            groups = [top_down[i : i + size] for i in range(0, len(top_down), size)]
            for index, group in enumerate(groups, start=1):
                epoch = max(1, round(index * max_epochs / (len(groups) + 1)))
                self.unfreeze_at.setdefault(epoch, []).extend(group)
        self.initially_frozen = [name for name in self.order if name in initially_frozen]

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
