"""What the training benchmarks share: the demo profile and its variants, the two training paths
stepped on the same batches (a bare PyTorch loop and the real engine's per-batch body), how a
pass is timed, the whole `Engine.run()` timed step by step, and the batches the engine's sampler
draws.

Import it after `signconsole.runtime.tune_process()`: it imports torch.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from signconsole.data.dataset import Batch
from signconsole.data.loader import batch_stream
from signconsole.data.prepare import PreparedData, prepare_data
from signconsole.engine.setup import make_sampler
from signconsole.engine.trainer import Engine
from signconsole.events import Event, EventBus, StepLogged
from signconsole.profile import load_profile

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "demo-student.toml"
MODELS = {
    "student": [],  # demo-student as shipped
    "bilstm": ["model.architecture=bilstm", "model.hidden=128", "model.fusion_dim=32"],
}
# Evaluation off (never due), no wall-clock budget; the rest of the profile as shipped.
COMMON = ["training.eval_every=1000000000", "training.max_minutes=0"]


@dataclass
class ConsoleSink:
    """Stands in for the live console: keeps the latest metrics, counts what it saw."""

    events: int = 0
    last_step: StepLogged | None = None
    logged: list[tuple[int, float, float]] = field(default_factory=list)  # step, time, frames/s

    def __call__(self, event: Event) -> None:
        self.events += 1
        if isinstance(event, StepLogged):
            self.last_step = event
            self.logged.append((event.step, event.time, event.frames_per_second))


# ------------------------------------------------------------------------------------- paths
class BarePath:
    name = "bare"

    def __init__(
        self, model: torch.nn.Module, profile, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        config = profile.optimizer
        self.model = model
        self.optimizer = optimizer or torch.optim.AdamW(
            model.parameters(),
            lr=config.learning_rate,
            betas=config.betas,
            weight_decay=config.weight_decay,
        )
        model.train()

    def step(self, batch: Batch) -> None:
        output = self.model(batch.features, batch.lengths)
        log_probs = output.logits.float().log_softmax(-1)
        ctc = F.ctc_loss(
            log_probs.transpose(0, 1),
            batch.targets,
            output.lengths,
            batch.target_lengths,
            blank=0,
            reduction="none",
        )
        loss = (ctc / batch.target_lengths.clamp(min=1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class EnginePath:
    """The per-batch body of `Engine.train`, on an engine that went through `setup()`."""

    name = "engine"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        training = engine.profile.training
        self.scale = 1.0 / training.grad_accumulation
        assert training.grad_accumulation == 1, "the benchmark steps once per batch"
        # It steps on batches it is given: the loader workers setup() started are not needed.
        if engine.loader is not None:
            engine.loader.close()
        # What `Engine.run()` / `Engine.train()` do before the first batch.
        engine.set_status("running")
        engine.train_mode()
        engine.clock.resume()
        for callback in engine.callbacks:
            callback.on_train_start(engine)

    def step(self, batch: Batch) -> None:
        engine = self.engine
        if engine.boundary():
            raise RuntimeError("the engine stopped (a command or the time budget)")
        engine.state.batch_in_epoch += 1
        evaluations = engine.state.evaluations
        engine.take_step([batch])
        if engine.state.evaluations != evaluations:
            raise RuntimeError("an evaluation ran: training.eval_every should be huge")


@dataclass
class Timing:
    wall: float  # seconds
    cpu: float  # CPU seconds of this process, all threads (less hit by other jobs than wall)
    frames: int  # real (unpadded) frames trained on
    steps: int
    faults: int  # minor page faults (fresh memory touched: mostly large tensors from mmap)


def timed(path, batches: list[Batch], order: list[int], per_step: list | None = None) -> Timing:
    """One pass of `path` over `batches` in `order`; `per_step` collects (padded frames,
    seconds) of every step."""
    frames = 0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu, start = time.process_time(), time.perf_counter()
    for index in order:
        before = time.perf_counter()
        path.step(batches[index])
        if per_step is not None:
            per_step.append((padded_frames(batches[index]), time.perf_counter() - before))
        frames += batches[index].frames
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return Timing(wall, cpu, frames, len(order), faults)


def padded_frames(batch: Batch) -> int:
    """What a step's cost grows with: sequences x the batch's padded length."""
    return int(batch.features.shape[0] * batch.features.shape[1])


def step_time_model(per_step: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares seconds = a + b * padded frames over one pass's steps."""
    n = len(per_step)
    mean_x = sum(x for x, _ in per_step) / n
    mean_y = sum(y for _, y in per_step) / n
    spread = sum((x - mean_x) ** 2 for x, _ in per_step)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in per_step) / spread if spread else 0.0
    return mean_y - slope * mean_x, slope


# -------------------------------------------------------------------------------- whole run
class StepTimedEngine(Engine):
    """The engine as it is, plus the time each `take_step` took (forward, backward, optimizer
    step, callbacks): what is left of the run's time is the data path and the loop around it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.step_seconds: list[float] = []
        self.waited: list[float] = []  # `data_wait` (seconds waiting for batches) after each step

    def take_step(self, batches) -> None:
        started = time.perf_counter()
        super().take_step(batches)
        self.step_seconds.append(time.perf_counter() - started)
        self.waited.append(self.data_wait)


def full_run(profile, data: PreparedData, steps: int, runs_dir: Path) -> dict[str, float]:
    """The whole `Engine.run()` for `steps` steps: DataLoader and collate included."""
    profile = dataclasses.replace(
        profile, training=dataclasses.replace(profile.training, max_steps=steps)
    )
    bus = EventBus()
    sink = ConsoleSink()
    bus.subscribe(sink)
    start = time.perf_counter()
    # freeze_gc as `signconsole run` and the console set it: the objects setup made are not
    # rescanned by every full collection (one took 238 ms in this process).
    engine = StepTimedEngine(profile, bus, runs_dir=runs_dir, data=data, freeze_gc=True)
    result = engine.run()
    wall = time.perf_counter() - start
    # Steady state: between the first and the last StepLogged (setup and the final checkpoint
    # left out), from the events' own timestamps.
    (first_step, first_time, _), (last_step, last_time, _) = sink.logged[0], sink.logged[-1]
    steady = (last_step - first_step) / max(last_time - first_time, 1e-9)
    # Frames/s over the same span, from the engine's own per-window frames/s (each window ends at
    # its StepLogged): frames trained between the first and the last StepLogged / that time.
    frames = sum(
        fps * (time_ - previous)
        for (_, previous, _), (_, time_, fps) in zip(sink.logged, sink.logged[1:], strict=False)
    )
    steady_fps = frames / max(last_time - first_time, 1e-9)
    return {
        "window": (first_step, last_step, last_time - first_time),
        # Each step's own time (steps first+1..last: a StepLogged closes its step), and what
        # the loop spent waiting for batches over the same steps (`Engine.data_wait`).
        "step_seconds": engine.step_seconds[first_step:last_step],
        "data_wait": engine.waited[last_step - 1] - engine.waited[first_step - 1],
        "steps": result.steps,
        "wall": wall,
        "overall": result.steps / wall,
        "steady": steady,
        "steady_fps": steady_fps,
        "events": sink.events,
        "sink_errors": len(bus.sink_errors),
    }


# ------------------------------------------------------------------------------------ setup
def load(model: str, extra: list[str]):
    profile = load_profile(PROFILE, [*MODELS[model], *COMMON, *extra])
    data = prepare_data(profile)
    return profile, data


def engine_batches(
    profile, data: PreparedData, count: int, first_epoch: int = 0
) -> list[list[int]]:
    """The first `count` batches (sample indices) the engine's sampler draws from `first_epoch`
    on: epoch 0 sorted short to long, then shuffled epochs. The same in every run (seeded)."""
    sampler = make_sampler(profile, data.train)  # the engine's own
    indices: list[list[int]] = []
    epoch = first_epoch
    while len(indices) < count:
        sampler.set_epoch(epoch)
        indices.extend(sampler.batches())
        epoch += 1
    return indices[:count]


def collate_batches(
    profile, data: PreparedData, count: int, compact: bool
) -> tuple[list[Batch], list]:
    """`count` shuffled-epoch batches, collated once: both paths step on exactly these tensors.
    Also their sample indices. `compact`: as the engine ships them (`Engine.compact_batches`)."""
    indices = engine_batches(profile, data, count, 1)
    # The engine's own loader path, in this thread (workers=0), so both paths see its tensors.
    stream = batch_stream(data.train, indices, "cpu", epoch=1, workers=0, compact=compact)
    return list(stream), indices


def run_batches(profile, data: PreparedData, steps: int, compact: bool) -> list[Batch]:
    """The batches `Engine.run()` trains on in its first `steps` steps, in its order: the same
    sampler epochs (the first sorted short to long) and the same sequences, spelled for their
    epoch, prepared once here. The bare loop steps on exactly these, so a whole-run pair compares
    the same work and differs only in who prepares the batches, and when."""
    sampler = make_sampler(profile, data.train)  # the engine's own
    prepared: list[Batch] = []
    epoch = 0
    while len(prepared) < steps:
        sampler.set_epoch(epoch)
        epoch_batches = sampler.batches()[: steps - len(prepared)]
        prepared.extend(
            batch_stream(data.train, epoch_batches, "cpu", epoch=epoch, workers=0, compact=compact)
        )
        epoch += 1
    return prepared


def data_loading_seconds(data: PreparedData, indices: list[list[int]], compact: bool) -> float:
    """Seconds per batch to build the pool's batches again from the dataset in this thread
    (what `data.num_workers = 0` does): sequences read or spelled, features derived,
    normalized, padded."""
    start = time.perf_counter()
    for _ in batch_stream(data.train, indices, "cpu", epoch=1, workers=0, compact=compact):
        pass
    return (time.perf_counter() - start) / len(indices)
