"""The overfit test of `signconsole doctor` (seed 001): the real model trained on a handful of
training sequences until it decodes them perfectly. A model that cannot is broken (log_softmax,
normalization, vocabulary, time collapse), not under-tuned.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from signconsole.config import Profile
from signconsole.data.dataset import SequenceDataset
from signconsole.data.prepare import PreparedData


@dataclass(frozen=True)
class OverfitResult:
    passed: bool
    steps: int
    best_error_rate: float | None
    seconds: float
    alarms: tuple[str, ...]


def overfit(
    profile: Profile, data: PreparedData, on_event: Callable[[object], None] | None = None
) -> OverfitResult:
    """Train on `health.overfit_samples` training sequences until they decode at 0% error."""
    from signconsole.engine.trainer import Engine
    from signconsole.events import AlarmRaised, EvalFinished, EventBus, Stop

    count = max(1, profile.health.overfit_samples)
    entries = sorted(data.train.entries, key=lambda e: e.id)[:count]
    subset = SequenceDataset(
        data.train.corpus,
        "train",
        data.vocabulary,
        data.train.normalization,
        data.stats,
        data.train.coordinates,
        entries=entries,
    )
    tiny = dataclasses.replace(data, train=subset, dev=subset, test=None)
    training = dataclasses.replace(
        profile.training,
        max_steps=profile.health.overfit_max_steps,
        max_epochs=0,
        max_minutes=0.0,
        eval_every=10,
        log_every=10,
        early_stopping=0,
        sample_decodes=0,
    )
    model = dataclasses.replace(profile.model, dropout=0.0)
    optimizer = dataclasses.replace(profile.optimizer, weight_decay=0.0)
    schedule = dataclasses.replace(
        profile.schedule, name="constant", warmup_steps=min(20, profile.schedule.warmup_steps)
    )
    data_config = dataclasses.replace(profile.data, batch_size=count)
    test_profile = dataclasses.replace(
        profile,
        name=f"{profile.name}-overfit",
        training=training,
        model=model,
        optimizer=optimizer,
        schedule=schedule,
        data=data_config,
    )
    bus = EventBus()
    alarms: list[str] = []
    solved: list[int] = []

    def watch(event) -> None:
        if isinstance(event, AlarmRaised):
            alarms.append(f"{event.kind}: {event.message}")
        if isinstance(event, EvalFinished) and event.error_rate == 0.0 and not solved:
            solved.append(event.step)
            bus.send(Stop(reason="overfit test solved", source="doctor"))
        if on_event is not None:
            on_event(event)

    bus.subscribe(watch)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="signconsole-doctor-") as runs:
        result = Engine(test_profile, bus, runs_dir=runs, data=tiny, wait_for_person=False).run()
    return OverfitResult(
        bool(solved),
        solved[0] if solved else result.steps,
        result.best_error_rate,
        time.monotonic() - started,
        tuple(alarms),
    )
