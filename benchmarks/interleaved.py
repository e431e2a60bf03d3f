"""The whole run against a bare loop fed by an ideal loader, interleaved block by block.

`engine_overhead.py`'s headline. Whole passes a minute apart drifted by up to ±10% against each
other on the shared 2-vCPU machine (2026-12-02: single pairs 0.81-1.14 for the same code), more
than the 2% the target allows; blocks of ~20 steps seconds apart, on the same batches, see the
same machine.

Import it after `signconsole.runtime.tune_process()`: it imports torch.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from training_paths import BarePath, StepTimedEngine

from signconsole.data.dataset import Batch
from signconsole.data.prepare import PreparedData
from signconsole.engine.trainer import Engine
from signconsole.events import EventBus


class InterleavedEngine(StepTimedEngine):
    """The whole run, paused every `block` steps for bare loops fed by an ideal loader to take
    the same steps on the very batches the run just trained on (already in memory). Each block
    compares the same work a few seconds apart, where whole passes a minute apart drift by up to
    ±10% on a shared machine. The bare loops take turns going first, block by block.

    The run's block is timed from the end of the previous bare block to the end of its last
    step: waiting for batches, handing them over, the loop, callbacks and epoch ends are in it.
    Its first steps find the batches the worker prefetched during the bare block (at most the
    stream's prefetch, 4): that part of the worker's work overlaps the bare loop instead, so a
    block of 20 shifts at most 4/20 of the worker's cost on the step (`loader_contention.py`)."""

    def __init__(
        self, *args, bare_paths: dict[str, Callable[[Engine], BarePath]], block: int, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.make_bare, self.block = bare_paths, block
        self.bare: dict[str, BarePath] = {}
        self.held: list[Batch] = []
        self.blocks: list[dict[str, float]] = []  # seconds of "run" and of each bare loop
        self.resumed = 0.0

    def take_step(self, batches) -> None:
        if not self.bare:  # the engine's initial weights, before step 1
            self.bare = {name: make(self) for name, make in self.make_bare.items()}
        super().take_step(batches)
        if self.state.step == 1:  # every loop's first step (lazy allocations) is left out
            for bare in self.bare.values():
                bare.step(batches[0])
            self.resumed = time.perf_counter()
            return
        self.held.extend(batches)
        if len(self.held) < self.block:
            return
        times = {"run": time.perf_counter() - self.resumed}
        names = list(self.bare)
        for name in names if len(self.blocks) % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            for batch in self.held:
                self.bare[name].step(batch)
            times[name] = time.perf_counter() - start
        self.blocks.append(times)
        self.held = []
        self.resumed = time.perf_counter()


def interleaved_run(
    profile,
    data: PreparedData,
    steps: int,
    runs_dir: Path,
    bare_paths: dict[str, Callable[[Engine], BarePath]],
    block: int,
) -> list[dict[str, float]]:
    """A whole `Engine.run()` of `steps` steps interleaved block by block with bare loops on
    the same batches (`InterleavedEngine`): the seconds of the run and of each loop, a block."""
    profile = dataclasses.replace(
        profile, training=dataclasses.replace(profile.training, max_steps=steps)
    )
    engine = InterleavedEngine(
        profile,
        EventBus(),
        runs_dir=runs_dir,
        data=data,
        freeze_gc=True,
        bare_paths=bare_paths,
        block=block,
    )
    engine.run()
    return engine.blocks


def summarize(blocks: list[list[dict[str, float]]], name: str, warmup: int = 2) -> dict:
    """Loop `name`'s time / the run's, summed over every block of every run (the time-weighted
    figure), the median and quartiles of the block ratios, and the standard error of their mean.

    "steady" is the same sum without each run's first `warmup` blocks. There the run meets
    longer and longer batches (a run's first epoch runs short to long) and faults in the
    memory they need: 5,000-20,000 page faults a block in the training thread against 50-2,700
    for the loop that steps the same batches after it (2026-12-03). Whoever steps first on new
    memory pays for it, and in a block that is always the run. A bare loop in a process of its
    own would meet the same new memory (not measured), so the headline keeps these blocks and
    "steady" shows their share."""

    def ratio(chosen: list[dict[str, float]]) -> float:
        return sum(block[name] for block in chosen) / sum(block["run"] for block in chosen)

    ratios = sorted(block[name] / block["run"] for run in blocks for block in run)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    steady = [block for run in blocks for block in run[warmup:]]
    return {
        "ratio": ratio([block for run in blocks for block in run]),
        "steady": ratio(steady) if steady else float("nan"),
        "warmup_blocks": warmup,
        "median": statistics.median(ratios),
        "stderr": statistics.stdev(ratios) / len(ratios) ** 0.5 if len(ratios) > 1 else 0.0,
        "low": quartiles[0],
        "high": quartiles[2],
        "blocks": len(ratios),
        "runs": len(blocks),
        "per_run": [ratio(run) for run in blocks],
    }
