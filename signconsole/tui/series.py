"""A chart series that stays small however long the run: full data lives in the store."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CAPACITY = 1200  # points per series: more than any terminal chart has pixel columns, x2


def _larger(a: float, b: float) -> float:
    """The larger value, a finite one over NaN: a merged point keeps spikes visible."""
    if not math.isfinite(a):
        return b if math.isfinite(b) else a
    if not math.isfinite(b):
        return a
    return a if a >= b else b


@dataclass
class Series:
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    capacity: int = CAPACITY

    def add(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)
        if len(self.steps) > self.capacity:
            self._halve()

    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def _halve(self) -> None:
        """Merge neighbouring pairs (the later step, the larger value): the series keeps its
        whole history at half the resolution, so memory and draw time stay bounded, and the
        newest step stays the right end of the chart."""
        steps, values, count = self.steps, self.values, len(self.steps)
        pairs = range(0, count, 2)
        self.steps = [steps[min(i + 1, count - 1)] for i in pairs]
        self.values = [
            _larger(values[i], values[i + 1]) if i + 1 < count else values[i] for i in pairs
        ]
