"""The real engine on real poses (small): event order, commands between steps, exact resume,
non-finite steps. Every run is a 0.16M-parameter BiLSTM (or a 0.25x student) on 24 sequences."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import torch

from signconsole.engine.checkpoint import load_checkpoint
from signconsole.engine.schedule import schedule_factor
from signconsole.events import (
    AlarmRaised,
    CheckpointSaved,
    CommandApplied,
    EvalFinished,
    EvaluateNow,
    Freeze,
    Pause,
    Resume,
    RunFinished,
    RunStarted,
    SetLearningRate,
    StageChanged,
    StateChanged,
    StepLogged,
    Stop,
)

STUDENT = (
    "model.architecture=mobilenet_student",
    "model.width_multiplier=0.25",
    "model.hidden=64",
    "model.fusion_dim=16",
)


def send_at(step: int, command):
    """A sink that sends `command` when step `step` is logged (applied before the next step)."""

    def sink(event, engine) -> None:
        if isinstance(event, StepLogged) and event.step == step:
            engine.bus.send(command)

    return sink


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------- event order


def test_event_order_on_a_short_run(small_profile, train) -> None:
    trained = train(small_profile())  # max_steps 12, eval_every 6, log_every 1
    events = [
        e for e in trained.events if not isinstance(e, AlarmRaised)
    ]  # alarms may come any time

    assert isinstance(events[0], RunStarted)
    assert events[0].step == 0 and events[0].total_steps == 12
    assert isinstance(events[1], StateChanged) and events[1].state == "running"
    assert isinstance(events[-2], StateChanged) and events[-2].state == "finished"
    assert isinstance(events[-1], RunFinished)
    assert events[-1].status == "finished" and events[-1].step == 12
    assert [e.state for e in trained.of(StateChanged)] == ["running", "finished"]
    assert len(trained.of(RunStarted)) == len(trained.of(RunFinished)) == 1

    assert [e.step for e in trained.of(StepLogged)] == list(range(1, 13))
    assert all(a.step <= b.step for a, b in zip(trained.events, trained.events[1:], strict=False))

    dev = trained.of(EvalFinished, split="dev")
    assert [e.step for e in dev] == [6, 12]
    for evaluation in dev:
        at = events.index(evaluation)
        assert [e.step for e in events[:at] if isinstance(e, StepLogged)][-1] == evaluation.step
        # Up to the next logged step: the evaluation's checkpoints, on disk.
        following = events[at + 1 :]
        end = next((i for i, e in enumerate(following) if isinstance(e, StepLogged)), None)
        saved = [e for e in following[:end] if isinstance(e, CheckpointSaved)]
        assert ("last", evaluation.step) in [(c.which, c.step) for c in saved]
        # best.pt is on disk before the evaluation names it the best (never a mislabelled best).
        since_step = events[
            [i for i, e in enumerate(events[:at]) if isinstance(e, StepLogged)][-1] : at
        ]
        best = [e for e in since_step if isinstance(e, CheckpointSaved) and e.which == "best"]
        assert (best != []) == evaluation.is_best
        assert not any(
            isinstance(e, CheckpointSaved) and e.which == "best" for e in following[:end]
        )
    assert dev[0].is_best  # the first evaluation is always the best so far
    assert all(Path(e.path).is_file() for e in trained.of(CheckpointSaved))
    assert trained.result.steps == 12
    assert load_checkpoint(trained.result.run_dir / "checkpoints" / "last.pt")["step"] == 12


# ---------------------------------------------------------------------------------- commands


def test_pause_holds_the_run_until_resume(small_profile, train) -> None:
    paused = threading.Event()
    engines: list = []
    held: list[tuple[int, int]] = []  # (engine.step, StepLogged seen), sampled while paused
    logged: list[int] = []

    def sink(event, engine) -> None:
        if not engines:
            engines.append(engine)
        if isinstance(event, StepLogged):
            logged.append(event.step)
            if event.step == 3:
                engine.bus.send(Pause())
        if isinstance(event, StateChanged) and event.state == "paused":
            paused.set()

    def resume_later() -> None:
        try:
            if paused.wait(timeout=300):
                deadline = time.monotonic() + 0.6
                while time.monotonic() < deadline:
                    held.append((engines[0].step, len(logged)))
                    time.sleep(0.05)
        finally:  # never leave the engine paused forever, even when the test fails
            while not engines:
                time.sleep(0.01)
            engines[0].bus.send(Resume())

    helper = threading.Thread(target=resume_later, daemon=True)
    helper.start()
    trained = train(small_profile(), sink)
    helper.join(timeout=30)

    assert paused.is_set()
    assert len(held) >= 5 and set(held) == {(3, 3)}  # no step ran while paused
    states = trained.of(StateChanged)
    assert [(e.state, e.reason) for e in states] == [
        ("running", ""),
        ("paused", "paused by user"),
        ("running", "resumed by user"),
        ("finished", ""),
    ]
    start, end = trained.events.index(states[1]), trained.events.index(states[2])
    assert not any(isinstance(e, StepLogged) for e in trained.events[start:end])
    assert states[2].time - states[1].time >= 0.5
    assert [(e.command, e.step) for e in trained.of(CommandApplied)] == [
        ("Pause", 3),
        ("Resume", 3),
    ]
    assert [e.step for e in trained.of(StepLogged)] == list(range(1, 13))  # none lost


@pytest.mark.parametrize(
    ("overrides", "stage"),
    [((), "lstm"), (STUDENT, "blocks_1")],  # blocks_1 holds BatchNorm: its statistics must stay
    ids=["bilstm", "student-batchnorm"],
)
def test_freeze_stops_one_stage_and_only_that_one(small_profile, train, overrides, stage) -> None:
    frozen_at: dict[str, dict] = {}

    def sink(event, engine) -> None:
        if isinstance(event, StageChanged) and event.stage == stage and not event.trainable:
            frozen_at.update({name: snapshot(m) for name, m in engine.stages.items()})

    trained = train(small_profile(*overrides), send_at(3, Freeze(stage=stage)), sink)
    engine = trained.engine

    changes = trained.of(StageChanged)
    assert [(e.stage, e.trainable, e.reason, e.step) for e in changes] == [
        (stage, False, "command", 3)
    ]
    assert ("Freeze stage=" + stage, 3) in [(e.command, e.step) for e in trained.of(CommandApplied)]
    assert frozen_at, "no StageChanged for the frozen stage"
    assert same(snapshot(engine.stages[stage]), frozen_at[stage])  # parameters and buffers
    for name, module in engine.stages.items():
        if name != stage:
            assert not same(snapshot(module), frozen_at[name]), f"{name} stopped training"
    assert engine.control.trainable[stage] is False
    assert not any(p.requires_grad for p in engine.stages[stage].parameters())
    for event in trained.of(StepLogged):
        assert (stage in event.stage_grad_norms) == (event.step <= 3), event.step
    assert trained.result.steps == 12


@pytest.mark.parametrize(
    "schedule",
    [("schedule.name=constant",), ("schedule.name=cosine", "schedule.warmup_steps=6")],
    ids=["constant", "cosine-in-warmup"],
)
def test_set_learning_rate_takes_effect_at_the_next_step(small_profile, train, schedule) -> None:
    seen: dict[int, list[float]] = {}

    def sink(event, engine) -> None:
        if isinstance(event, StepLogged):
            seen[event.step] = [g["lr"] for g in engine.optimizer.param_groups]

    trained = train(small_profile(*schedule), send_at(3, SetLearningRate(value=1e-4)), sink)

    # Step 4 is the first after the command: every group (multiplier 1) ran at exactly 1e-4.
    # (approx only absorbs the float rounding of value / scheduled * scheduled.)
    assert seen[4] == pytest.approx([1e-4] * len(seen[4]), rel=1e-12)
    logged = {e.step: e.lr for e in trained.of(StepLogged)}
    assert logged[4] == pytest.approx(1e-4, rel=1e-12)
    assert all(seen[s][0] != pytest.approx(1e-4, rel=1e-3) for s in (1, 2, 3))
    if schedule[0].endswith("constant"):
        assert [logged[s] for s in (1, 2, 3)] == [2e-3] * 3
        assert [logged[s] for s in range(4, 13)] == pytest.approx([1e-4] * 9, rel=1e-12)
    else:  # the schedule goes on from the new value: lr(i) = 1e-4 * f(i) / f(3)
        engine = trained.engine
        f = [schedule_factor(i, engine.profile.schedule, engine.total_steps) for i in range(12)]
        expected = [1e-4 * f[i] / f[3] for i in range(3, 12)]  # step s ran at index s - 1
        assert [logged[s] for s in range(4, 13)] == pytest.approx(expected, rel=1e-9)
    applied = [e for e in trained.of(CommandApplied) if e.command.startswith("SetLearningRate")]
    assert [(e.command, e.step) for e in applied] == [("SetLearningRate value=0.0001", 3)]


def test_stop_ends_early_with_a_last_checkpoint(small_profile, train) -> None:
    trained = train(small_profile(), send_at(4, Stop(reason="enough")))

    assert trained.result.steps == 4 < trained.of(RunStarted)[0].total_steps
    assert max(e.step for e in trained.of(StepLogged)) == 4
    assert ("stopping", "enough") in [(e.state, e.reason) for e in trained.of(StateChanged)]
    assert [e.command for e in trained.of(CommandApplied)] == ["Stop reason=enough"]
    assert trained.of(RunFinished)[0].step == 4
    assert ("last", 4) in [(e.which, e.step) for e in trained.of(CheckpointSaved)]
    last = load_checkpoint(trained.result.run_dir / "checkpoints" / "last.pt")
    assert last["step"] == 4


def test_evaluate_now_adds_an_evaluation(small_profile, train) -> None:
    trained = train(small_profile(), send_at(2, EvaluateNow()))

    assert [e.step for e in trained.of(EvalFinished, split="dev")] == [2, 6, 12]
    assert [(e.command, e.step) for e in trained.of(CommandApplied)] == [("EvaluateNow", 2)]
    assert ("last", 2) in [(e.which, e.step) for e in trained.of(CheckpointSaved)]
    assert [e.step for e in trained.of(StepLogged)] == list(range(1, 13))  # training went on


def test_a_run_that_ends_before_its_first_evaluation_is_evaluated_at_the_end(
    small_profile, train
) -> None:
    trained = train(small_profile("training.max_steps=4", "training.eval_every=6"))

    [dev] = trained.of(EvalFinished, split="dev")
    assert dev.step == 4 and dev.is_best
    assert (trained.result.run_dir / "checkpoints" / "best.pt").is_file()
    assert trained.of(EvalFinished, split="test")  # scored with that best checkpoint
    assert trained.result.best_step == 4


def test_checkpoint_every_writes_last_between_evaluations(small_profile, train) -> None:
    trained = train(small_profile("training.checkpoint_every=4", "training.eval_every=12"))
    last = [e.step for e in trained.of(CheckpointSaved, which="last")]
    assert {4, 8} <= set(last), last


# ------------------------------------------------------------------------------------ resume


@pytest.mark.parametrize("dropout", ["0.0", "0.1"], ids=["no-dropout", "dropout"])
def test_resume_reproduces_the_losses(small_profile, train, dropout) -> None:
    # N = 5 ends mid-epoch (2 batches per epoch), so resume must restore the position in the
    # epoch as well as weights, optimizer moments and RNG. On one CPU process with deterministic
    # algorithms the same sequence of operations gives the same bits; 1e-5 is float32 slack only.
    n = 5
    common = (
        "training.deterministic=true",
        "training.eval_every=5",
        f"model.dropout={dropout}",
    )
    straight = train(small_profile(*common, f"training.max_steps={2 * n}"))
    first = train(small_profile(*common, f"training.max_steps={n}"))
    resumed = train(
        small_profile(*common, f"training.max_steps={2 * n}"),
        resume=first.result.run_dir,
        allow_changes=True,  # max_steps grows: train on
    )

    started = resumed.of(RunStarted)[0]
    assert started.step == n and started.resumed_from == str(first.result.run_dir)
    assert resumed.result.run_dir == first.result.run_dir and resumed.result.steps == 2 * n
    want = {e.step: e.loss for e in straight.of(StepLogged) if e.step > n}
    got = {e.step: e.loss for e in resumed.of(StepLogged)}
    assert sorted(got) == list(range(n + 1, 2 * n + 1))
    for step in got:
        assert abs(got[step] - want[step]) <= 1e-5, (step, got[step], want[step])


# -------------------------------------------------------------------------------- non-finite


def poison_classifier(when):
    """A sink that makes the classifier's output NaN while `when(step logged last)` holds; the
    bad step is the one after that StepLogged (its forward and the engine's diagnostic replay)."""
    state = {"on": False}
    snapshots: dict[int, dict] = {}

    def hook(module, inputs, output):
        return output * math.nan if state["on"] else None

    def sink(event, engine) -> None:
        if isinstance(event, RunStarted):
            engine.stages["classifier"].register_forward_hook(hook)
        if isinstance(event, StepLogged):
            snapshots[event.step] = snapshot(engine.model)
            state["on"] = when(event.step)

    return sink, snapshots


def test_a_nonfinite_step_is_skipped_and_named(small_profile, train, small_data) -> None:
    sink, snapshots = poison_classifier(lambda step: step == 2)  # step 3 goes NaN
    trained = train(small_profile(), sink)

    alarms = trained.of(AlarmRaised, kind="nonfinite")
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm.step == 2 and alarm.severity == "error"  # step index before the increment
    assert alarm.stage == "classifier" and "forward" in alarm.message
    train_ids = {entry.id for entry in small_data.train.entries}
    assert alarm.batch_ids and set(alarm.batch_ids) <= train_ids
    logged = {e.step: e for e in trained.of(StepLogged)}
    assert math.isnan(logged[3].loss) and logged[3].skipped_steps == 1
    assert all(e.skipped_steps == 0 for s, e in logged.items() if s != 3)
    assert same(snapshots[3], snapshots[2])  # the bad step changed nothing
    assert not same(snapshots[4], snapshots[3])  # and training went on
    assert all(bool(torch.isfinite(p).all()) for p in trained.engine.model.parameters())
    assert "paused" not in [e.state for e in trained.of(StateChanged)]
    assert trained.result.steps == 12

    db = sqlite3.connect(f"file:{trained.result.run_dir / 'run.db'}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT value, nonfinite FROM metrics WHERE name = 'train/loss' AND step = 3"
        ).fetchone()
    finally:
        db.close()
    assert row == (None, "nan")


def test_repeated_nonfinite_steps_pause_the_run(small_profile, train) -> None:
    sink, snapshots = poison_classifier(lambda step: step >= 2)  # from step 3 on, every step

    def stop_when_paused(event, engine) -> None:
        if isinstance(event, StateChanged) and event.state == "paused":
            engine.bus.send(Stop(reason="test"))

    trained = train(small_profile("health.nonfinite_pause_after=2"), sink, stop_when_paused)

    assert [a.step for a in trained.of(AlarmRaised, kind="nonfinite")] == [2, 3]
    paused = trained.of(StateChanged, state="paused")
    assert len(paused) == 1 and paused[0].reason == "2 non-finite steps in a row"
    assert trained.result.steps == 4
    assert same(snapshot(trained.engine.model), snapshots[2])  # no NaN ever reached a weight


def test_frames_per_second_leaves_a_pause_out(small_profile, train) -> None:
    """A window of steps that spans a pause reports the speed of its steps, not of the wait:
    after a resume the status line shows the rate training runs at."""

    def pause_for_a_second(event, engine) -> None:
        if isinstance(event, StepLogged) and event.step == 3:
            engine.clock.pause()  # what the inbox does on Pause, and on Resume below
            time.sleep(1.0)
            engine.clock.resume()

    profile = small_profile("training.max_steps=6", "training.log_every=1")
    rates = {e.step: e.frames_per_second for e in train(profile, pause_for_a_second).of(StepLogged)}
    others = sorted(rate for step, rate in rates.items() if step not in (1, 4))
    assert rates[4] > others[len(others) // 2] / 3, rates
