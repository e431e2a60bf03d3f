"""Runs a person can trust: commands from anywhere are validated and never kill a run, a skipped
non-finite step leaves no trace, headless runs never wait for nobody, statuses say how a run
ended, and a resume with a different profile is refused unless asked for."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
import torch

from signconsole.engine.checkpoint import load_checkpoint
from signconsole.errors import UserError
from signconsole.events import (
    AlarmRaised,
    CheckpointSaved,
    CommandApplied,
    EvalFinished,
    RunFinished,
    RunStarted,
    StateChanged,
    StepLogged,
    Stop,
)

BAD_ROWS = [
    "{not json",
    None,
    '"Pause"',
    "[]",
    '{"type": "Launch"}',
    '{"type": "SetLearningRate", "value": "abc"}',
    '{"type": "SetLearningRate", "value": 1e400}',
    '{"type": "SetLearningRate", "value": 1e308}',
    '{"type": "SetLearningRate", "factor": -2}',
    '{"type": "SetLearningRate"}',
    '{"type": "Freeze", "stage": ["lstm"]}',
    '{"type": "Freeze", "stage": "nope"}',
    '{"type": "Pause", "when": "now"}',
]


def queue(path, payload) -> None:
    connection = sqlite3.connect(path, timeout=30)  # another process's connection, as attach's
    with connection:
        connection.execute(
            "INSERT INTO commands (time, source, payload) VALUES (?, ?, ?)",
            (time.time(), "test", payload),
        )
    connection.close()


def test_malformed_command_rows_are_rejected_and_the_run_goes_on(small_profile, train) -> None:
    first = train(small_profile("training.max_steps=4"))
    run_dir = first.result.run_dir
    for payload in BAD_ROWS:
        queue(run_dir / "run.db", payload)
    # Freezing every stage is refused too: all but one frozen is fine, the last one is not.
    stages = first.of(RunStarted)[0].stages
    for stage in stages:
        queue(run_dir / "run.db", json.dumps({"type": "Freeze", "stage": stage}))

    resumed = train(small_profile("training.max_steps=8"), resume=run_dir, allow_changes=True)
    assert resumed.result.status == "finished" and resumed.result.steps == 8
    rejected = [e for e in resumed.of(CommandApplied) if e.detail.startswith("rejected: ")]
    assert len(rejected) == len(BAD_ROWS) + 1
    assert "would leave no stage training" in rejected[-1].detail
    applied = [e for e in resumed.of(CommandApplied) if not e.detail.startswith("rejected")]
    assert len([e for e in applied if e.command.startswith("Freeze")]) == len(stages) - 1
    connection = sqlite3.connect(run_dir / "run.db")
    assert (
        connection.execute("SELECT COUNT(*) FROM commands WHERE applied_step IS NULL").fetchone()[0]
        == 0
    )  # answered once: no later --resume meets them again
    connection.close()


def poison_every_step(event, engine) -> None:
    """From the first logged step on, the model's input is NaN: every step is non-finite."""
    if isinstance(event, StepLogged) and not getattr(engine, "_poisoned", False):
        engine._poisoned = True
        engine.model.register_forward_pre_hook(
            lambda module, args: (torch.full_like(args[0], float("nan")), *args[1:])
        )


def test_headless_runs_end_instead_of_waiting_after_repeated_nonfinite_steps(
    small_profile, train
) -> None:
    trained = train(
        small_profile("training.max_steps=200", "health.nonfinite_pause_after=3"),
        poison_every_step,
        wait_for_person=False,
    )
    assert trained.result.status == "failed"
    assert [e.state for e in trained.of(StateChanged)][-1] == "failed"
    assert len(trained.of(AlarmRaised, kind="nonfinite")) == 3
    state = load_checkpoint(trained.result.run_dir / "checkpoints" / "last.pt")
    # The last good state: no NaN in any weight or BatchNorm buffer.
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert state["step"] == trained.result.steps


def test_a_skipped_step_leaves_batchnorm_statistics_untouched(small_profile, train) -> None:
    buffers: dict[int, dict[str, torch.Tensor]] = {}

    def watch(event, engine) -> None:
        if isinstance(event, StepLogged):
            buffers[event.step] = {k: v.clone() for k, v in engine.model.named_buffers()}
        poison_every_step(event, engine)

    trained = train(
        small_profile(
            'model.architecture="mobilenet_student"',  # the built-in with BatchNorm layers
            "model.width_multiplier=0.25",
            "training.max_steps=4",
            "health.nonfinite_pause_after=0",
        ),
        watch,
    )
    assert any(".running_mean" in name for name in buffers[1])  # the model has BatchNorm
    for step in (2, 3, 4):  # every step after the first was skipped
        for name, value in buffers[step].items():
            assert torch.equal(value, buffers[1][name]), (step, name)
    assert trained.result.status == "finished"


def test_a_stop_by_a_person_or_a_budget_is_stopped_not_finished(small_profile, train) -> None:
    def stop_after_the_first_evaluation(event, engine) -> None:
        if isinstance(event, StepLogged) and event.step == 7:
            engine.bus.send(Stop(reason="enough", source="test"))

    stopped = train(small_profile(), stop_after_the_first_evaluation)
    assert stopped.result.status == "stopped"
    assert stopped.of(RunFinished)[-1].status == "stopped"
    assert stopped.of(StateChanged)[-1].state == "stopped"
    assert stopped.of(RunFinished)[-1].best_checkpoint  # still names the best checkpoint

    budget = train(small_profile("training.max_steps=0", "training.max_minutes=0.01"))
    assert budget.result.status == "stopped"


def test_early_stopping_is_a_natural_finish(small_profile, train) -> None:
    trained = train(small_profile("training.max_steps=60", "training.early_stopping=1"))
    assert trained.result.status == "finished"
    assert trained.result.steps < 60


def test_resume_with_a_changed_profile_is_refused_unless_allowed(small_profile, train) -> None:
    first = train(small_profile("training.max_steps=4"))
    run_dir = first.result.run_dir
    with pytest.raises(UserError, match=r"training.max_steps: 4 -> 6.*--allow-changes"):
        train(small_profile("training.max_steps=6"), resume=run_dir)
    again = train(small_profile("training.max_steps=6"), resume=run_dir, allow_changes=True)
    assert again.result.steps == 6
    assert "training.max_steps: 4 -> 6" in (run_dir / "profile-changes.txt").read_text()
    [changed] = again.of(CommandApplied, command="ProfileChanged")
    assert "max_steps" in changed.detail


def test_resuming_a_finished_run_trains_no_extra_step(small_profile, train) -> None:
    first = train(small_profile("training.max_steps=4"))
    again = train(small_profile("training.max_steps=4"), resume=first.result.run_dir)
    assert again.result.steps == 4
    assert not again.of(StepLogged)


def test_an_empty_dev_split_is_said_not_scored_as_zero(small_profile, small_data, runs_dir):
    import dataclasses

    from signconsole.engine.trainer import Engine
    from signconsole.events import EventBus

    empty_dev = dataclasses.replace(
        small_data, dev=type(small_data.dev).__new__(type(small_data.dev))
    )
    empty_dev.dev.__dict__.update(small_data.dev.__dict__)
    empty_dev.dev.entries, empty_dev.dev.targets, empty_dev.dev.paths = [], [], []
    bus, events = EventBus(), []
    bus.subscribe(events.append)
    result = Engine(small_profile(), bus, runs_dir=runs_dir, data=empty_dev).run()
    assert result.best_error_rate is None
    assert not [e for e in events if isinstance(e, EvalFinished) and e.split == "dev"]
    assert [e for e in events if isinstance(e, AlarmRaised) and e.kind == "no_dev_split"]


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_sequences_of_one_to_three_frames_make_features(frames) -> None:
    """Velocity needs 2 frames and acceleration 3: shorter sequences have them undefined (masked),
    not a crash in doctor or in the run."""
    from signconsole.data.layout import LAYOUT

    landmarks = torch.randn(frames, 543, 3).half()
    features, valid = LAYOUT.features_with_validity(
        landmarks, torch.ones(frames, 543, dtype=torch.bool), "raw"
    )
    assert features.shape == valid.shape == (frames, LAYOUT.dim)
    assert torch.isfinite(features).all()
    assert not valid[0].all()  # the first frame has no velocity or acceleration


def test_a_run_that_is_training_cannot_be_resumed_twice(small_profile, train) -> None:
    from signconsole.store.lock import RunLock, RunLocked

    first = train(small_profile("training.max_steps=4"))
    run_dir = first.result.run_dir
    assert not (run_dir / "run.lock").exists()  # released at the end of the run
    with RunLock(run_dir), pytest.raises(RunLocked, match="signconsole show"):
        train(small_profile("training.max_steps=4"), resume=run_dir)  # another live holder
    again = train(small_profile("training.max_steps=4"), resume=run_dir)  # free again
    assert again.result.steps == 4


def test_checkpoint_minutes_refreshes_last_between_evaluations(small_profile, train) -> None:
    """`training.checkpoint_minutes`: last.pt is refreshed by training time, not only at
    evaluations, so a crash loses at most that much."""

    def saves(*overrides: str) -> list[int]:
        profile = small_profile("training.max_steps=8", "training.eval_every=100", *overrides)
        trained = train(profile)
        return [e.step for e in trained.of(CheckpointSaved, which="last")]

    assert saves("training.checkpoint_minutes=0") == [8]  # off: only the end of the run
    # 6 ms of training, shorter than any step: every step refreshes it (and the final
    # evaluation of step 8, the run's end, once more: best and its error changed)
    assert saves("training.checkpoint_minutes=0.0001") == [*range(1, 9), 8]


def test_a_full_disk_while_writing_best_never_names_a_best_that_is_not_on_disk(
    small_profile, train, runs_dir, monkeypatch
) -> None:
    """best.pt cannot be written (ENOSPC) at the first evaluation: the run fails, and neither
    its summary nor the run store names a best checkpoint that is not on disk."""
    import errno

    from signconsole.engine import trainer as trainer_module
    from signconsole.store.catalog import summarize

    real_save = trainer_module.save_checkpoint

    def save(path, state):
        if path.name == "best.pt":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(path, state)

    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    ended: list[RunFinished] = []

    def keep_end(event, engine) -> None:
        if isinstance(event, RunFinished):
            ended.append(event)

    with pytest.raises(OSError, match="No space left"):
        train(small_profile("training.max_steps=12", "training.eval_every=2"), keep_end)
    [end] = ended  # what the printed summary and the console's last line say
    assert end.status == "failed" and end.best_step is None and end.best_error_rate is None
    [run_dir] = list(runs_dir.iterdir())
    assert not (run_dir / "checkpoints" / "best.pt").exists()
    summary = summarize(run_dir)
    assert summary.status == "failed"
    assert summary.best_step is None and summary.best_error_rate is None
