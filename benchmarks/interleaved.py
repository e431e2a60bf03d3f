"""The whole run against a bare loop fed by an ideal loader, interleaved block by block.

`engine_overhead.py`'s headline. Whole passes a minute apart drifted by up to ±10% against each
other on the shared 2-vCPU machine (2026-12-02: single pairs 0.81-1.14 for the same code), more
than the 2% the target allows; blocks of ~20 steps seconds apart, on the same batches, see the
same machine.

Import it after `signconsole.runtime.tune_process()`: it imports torch.
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
import pickle
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from training_paths import BarePath, StepTimedEngine

from signconsole.data.dataset import Batch
from signconsole.data.layout import LAYOUT
from signconsole.data.prepare import PreparedData
from signconsole.engine.trainer import Engine
from signconsole.events import EventBus
from signconsole.models.fusion import skip_zero_columns
from signconsole.models.registry import build_model
from signconsole.runtime import tune_process


class Loop(Protocol):
    def time_block(self, batches: list[Batch]) -> tuple[float, int]:
        """Steps `batches` in order: (seconds, minor page faults)."""
        ...

    def close(self) -> None: ...


class InProcessLoop:
    """A bare loop in the run's own process and thread: it finds the memory the run's steps
    just faulted in."""

    def __init__(self, path: BarePath) -> None:
        self.path = path

    def time_block(self, batches: list[Batch]) -> tuple[float, int]:
        faults = _thread_faults()
        start = time.perf_counter()
        for batch in batches:
            self.path.step(batch)
        return time.perf_counter() - start, _thread_faults() - faults

    def close(self) -> None:
        pass  # nothing of its own to release


class LoopProcess:
    """A bare loop in a process of its own, as a training script fed by an ideal loader runs:
    spawned (not forked), so no memory the run touched is shared with it. Each block's batches
    reach it through a pipe before the block is timed, already unpickled into its memory: the
    ideal loader. (Those batches, freed after their block, probably leave its heap memory that
    the next block's steps reuse: it faulted 116-1,950 times in its first blocks, 2026-12-03.)

    It steps a model of its own: the run's initial weights, the same code as `BarePath`, on
    the engine's torch thread count."""

    def __init__(self, profile, run: Engine) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        weights = io.BytesIO()
        torch.save(run.model.state_dict(), weights)
        columns = run.data.train.model_input.columns
        setting = (profile, len(run.data.vocabulary), columns, weights.getvalue())
        self.process = context.Process(
            target=_serve_loop, args=(child, setting, torch.get_num_threads()), daemon=True
        )
        self.process.start()
        child.close()
        self.connection.recv()  # built and ready

    def time_block(self, batches: list[Batch]) -> tuple[float, int]:
        self.connection.send_bytes(pickle.dumps(batches))
        return self.connection.recv()

    def close(self) -> None:
        self.connection.close()
        self.process.join(timeout=30)


def _serve_loop(connection, setting, threads: int) -> None:
    """The loop process: build the model, then time each block of batches it is sent."""
    # The environment (OpenMP policy, huge pages) is the parent's, inherited; malloc's pinned
    # thresholds are per process and set again here.
    tune_process()
    torch.set_num_threads(threads)
    profile, vocabulary_size, columns, weights = setting
    model = build_model(profile.model, LAYOUT.dim, vocabulary_size)
    model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    skip_zero_columns(model, columns)
    loop = InProcessLoop(BarePath(model, profile))
    connection.send("ready")
    while True:
        try:
            batches = pickle.loads(connection.recv_bytes())
        except EOFError:
            return
        connection.send(loop.time_block(batches))


def _thread_faults() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def _huge_page_faults() -> int:
    """Transparent huge pages the kernel has faulted in, machine-wide (a 2 MB zero-fill each,
    counted once in a thread's minor faults; 0 where /proc/vmstat does not say)."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("thp_fault_alloc "):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _worker_cpu_seconds(engine: Engine) -> float:
    """CPU seconds the run's loader worker processes have used so far (0 without any)."""
    pool = getattr(engine.loader, "_pool", None)
    total = 0.0
    for pid in getattr(pool, "_processes", None) or {}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


class InterleavedEngine(StepTimedEngine):
    """The whole run, paused every `block` steps for bare loops fed by an ideal loader to take
    the same steps on the very batches the run just trained on (already in memory). Each block
    compares the same work a few seconds apart, where whole passes a minute apart drift by up to
    ±10% on a shared machine. The bare loops take turns going first, block by block.

    The run's block is timed from the end of the previous bare block to the end of its last
    step: waiting for batches, handing them over, the loop, callbacks and epoch ends are in it.
    Its first steps find the batches the worker prefetched during the bare block (at most the
    stream's prefetch, 4); measured, the worker had them ready before the bare blocks began and
    used no CPU during them (2026-12-03), so all of its cost on the step is in the run's
    blocks. Also kept a block: the minor page faults of the run's training thread and of each
    loop, the run's time in `take_step` and waiting for batches, and the worker's CPU time."""

    def __init__(self, *args, loops: dict[str, Callable[[Engine], Loop]], block: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.make_loops, self.block = loops, block
        self.loops: dict[str, Loop] = {}
        self.held: list[Batch] = []
        # Per block: seconds of "run" and of each loop, and "<name> faults" (minor page faults
        # of the run's training thread and of each loop).
        self.blocks: list[dict[str, float]] = []
        self.resumed, self.faults, self.worker_cpu, self.huge_faults = 0.0, 0, 0.0, 0

    def take_step(self, batches) -> None:
        if not self.loops:  # the engine's initial weights, before step 1
            self.loops = {name: make(self) for name, make in self.make_loops.items()}
        super().take_step(batches)
        if self.state.step == 1:  # every loop's first step (lazy allocations) is left out
            for loop in self.loops.values():
                loop.time_block(batches[:1])
            self.resumed, self.faults = time.perf_counter(), _thread_faults()
            self.worker_cpu, self.huge_faults = _worker_cpu_seconds(self), _huge_page_faults()
            return
        self.held.extend(batches)
        if len(self.held) < self.block:
            return
        times = {"run": time.perf_counter() - self.resumed, "run faults": _thread_faults()}
        times["run faults"] -= self.faults
        times["run huge page faults"] = _huge_page_faults() - self.huge_faults
        times["run steps"] = sum(self.step_seconds[-self.block :])  # take_step: step, callbacks
        times["run waiting"] = self.waited[-1] - self.waited[-self.block - 1]
        worker = _worker_cpu_seconds(self)
        times["worker busy"], self.worker_cpu = worker - self.worker_cpu, worker
        names = list(self.loops)
        for name in names if len(self.blocks) % 2 == 0 else names[::-1]:
            times[name], times[f"{name} faults"] = self.loops[name].time_block(self.held)
        worker = _worker_cpu_seconds(self)
        times["worker busy in loops"], self.worker_cpu = worker - self.worker_cpu, worker
        self.blocks.append(times)
        self.held = []
        self.resumed, self.faults = time.perf_counter(), _thread_faults()
        self.huge_faults = _huge_page_faults()

    def close_loops(self) -> None:
        for loop in self.loops.values():
            loop.close()


def interleaved_run(
    profile,
    data: PreparedData,
    steps: int,
    runs_dir: Path,
    loops: dict[str, Callable[[Engine], Loop]],
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
        loops=loops,
        block=block,
    )
    try:
        engine.run()
    finally:
        engine.close_loops()
    return engine.blocks


def summarize(blocks: list[list[dict[str, float]]], name: str, warmup: int = 2) -> dict:
    """Loop `name`'s time / the run's, summed over every block of every run (the time-weighted
    figure), the median and quartiles of the block ratios, and the standard error of their mean.

    "steady" is the same sum without each run's first `warmup` blocks. There the run's step is
    3-10% slower than the loops' on the same batches: the first epoch runs short to long, and
    the run's training thread faults in several times the pages either loop does (2026-12-03;
    benchmarks/README.md "06:00-07:00" has the figures, which explain part of the gap). The
    headline keeps these blocks; "steady" shows their share."""

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
