"""Shared fixtures: a small real-data profile (the fingerspelling corpus, a tiny BiLSTM), the
prepared data for it (built once per session, cached under $SIGNCONSOLE_CACHE), a runs directory
and `train`, which runs the real engine in the calling thread and records every event."""

from __future__ import annotations

import os

# Before torch is imported, as `signconsole.cli.main` does: with the default (spinning) OpenMP
# wait policy, a test process next to another training job ran 50x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist (`-n auto`, the README's test command) every core runs its own test: one
# thread each, or the workers and the processes their tests start fight over the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from signconsole.config import Profile
from signconsole.data.prepare import PreparedData, prepare_data
from signconsole.engine.trainer import Engine, RunResult
from signconsole.events import Event, EventBus
from signconsole.profile import load_profile

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "profiles" / "demo-student.toml"

# 24/8/8 sequences, 2 batches per epoch; a 0.16M-parameter BiLSTM: ~0.1 s per step on a 2-core CPU.
SMALL = (
    "data.fingerspell.train=24",
    "data.fingerspell.dev=8",
    "data.fingerspell.test=8",
    # The stored 24 sequences, not new ones every epoch: engine tests need a corpus this small
    # model learns in ~150 steps and batches they can poison by id. tests/test_synthesis.py and
    # tests/test_loader.py train on spelled sequences (`spelled_data`).
    "data.synthesis.enabled=false",
    "model.architecture=bilstm",
    "model.hidden=64",
    "model.fusion_dim=16",
    "schedule.name=constant",
    "schedule.warmup_steps=0",
    "training.device=cpu",
    "training.max_minutes=0",
    "training.max_epochs=40",  # the demo's own is 10: tests end on their max_steps
    "training.max_steps=12",
    "training.eval_every=6",
    "training.log_every=1",
    "training.sample_decodes=2",
    "training.beam_width=2",
)

EngineSink = Callable[[Event, Engine], None]


@dataclass
class Trained:
    engine: Engine
    bus: EventBus
    result: RunResult | None = None
    events: list[Event] = field(default_factory=list)

    def of(self, cls: type, **fields: object) -> list:
        return [
            e
            for e in self.events
            if isinstance(e, cls) and all(getattr(e, k) == v for k, v in fields.items())
        ]


@pytest.fixture
def small_profile() -> Callable[..., Profile]:
    """`small_profile("training.max_steps=4", ...)`: the small profile plus overrides."""

    def make(*overrides: str) -> Profile:
        return load_profile(PROFILE, [*SMALL, *overrides])

    return make


@pytest.fixture(scope="session")
def small_args() -> list[str]:
    """The small profile as `signconsole run` arguments."""
    return [str(PROFILE), *(arg for key in SMALL for arg in ("--set", key))]


@pytest.fixture(scope="session")
def small_data() -> PreparedData:
    """Prepared once per session; shared by every profile that keeps SMALL's data keys."""
    return prepare_data(load_profile(PROFILE, list(SMALL)))


@pytest.fixture(scope="session")
def spelled_data() -> PreparedData:
    """SMALL's data with the demo's synthesis on: training sequences spelled anew each epoch."""
    return prepare_data(load_profile(PROFILE, [*SMALL, "data.synthesis.enabled=true"]))


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture(autouse=True)
def _torch_globals():
    """The engine sets process-wide torch state (deterministic algorithms); put it back."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.set_num_threads(threads)


@pytest.fixture
def train(small_data: PreparedData, runs_dir: Path) -> Callable[..., Trained]:
    """`train(profile, *sinks, resume=None, **engine_options)`: run the engine in this thread
    and return what
    happened. Sinks get (event, engine); a sink that raises would be detached silently by the
    bus, so sink errors fail the test here."""

    def run(
        profile: Profile, *sinks: EngineSink, resume: Path | None = None, **options: bool
    ) -> Trained:
        bus = EventBus()
        engine = Engine(profile, bus, runs_dir=runs_dir, resume=resume, data=small_data, **options)
        trained = Trained(engine, bus)
        bus.subscribe(trained.events.append)
        for sink in sinks:
            bus.subscribe(lambda event, sink=sink: sink(event, engine))
        trained.result = engine.run()
        assert not bus.sink_errors, bus.sink_errors
        return trained

    return run
