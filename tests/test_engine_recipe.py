"""The engine's switches do what they say: time budgets, devices, precision, checkpoint contents,
and commands that land between optimizer steps (never between micro-batches)."""

from __future__ import annotations

import pytest
import torch

from signconsole.engine import callbacks as cb
from signconsole.engine.checkpoint import load_checkpoint
from signconsole.errors import UserError
from signconsole.events import CommandApplied, EvalFinished, Pause, Resume, RunFinished, StepLogged


def test_a_profile_with_only_a_time_budget_trains_until_it_runs_out(small_profile, train) -> None:
    profile = small_profile(
        "training.max_epochs=0", "training.max_steps=0", "training.max_minutes=0.02"
    )
    trained = train(profile)
    assert trained.result.steps > 0
    [budget] = trained.of(CommandApplied, command="TimeBudget")
    assert budget.detail == "training.max_minutes reached"
    assert trained.of(RunFinished)[-1].status == "stopped"  # by its budget, resumable
    # No known end: the cosine schedule must not decay to its floor right after warmup.
    lrs = [e.lr for e in trained.of(StepLogged)]
    assert lrs[-1] == pytest.approx(profile.optimizer.learning_rate)


def test_time_spent_paused_is_not_training_time(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr(cb.time, "monotonic", lambda: now[0])
    clock = cb.ActiveClock()
    now[0] += 30  # training
    clock.pause()
    now[0] += 3600  # an hour paused over lunch
    clock.resume()
    now[0] += 10
    assert clock.seconds() == pytest.approx(40)
    budget = cb.TimeBudget(minutes=1, clock=clock)
    assert budget.state_dict() == {"used_seconds": pytest.approx(40)}
    restored = cb.TimeBudget(minutes=1, clock=cb.ActiveClock())
    restored.load_state_dict(budget.state_dict())
    assert restored.clock.seconds() == pytest.approx(40)  # a resumed run keeps what it used


@pytest.mark.parametrize(
    "overrides,message",
    [
        (('training.device="cuda:1"',), "no CUDA GPU is visible"),
        (('training.device="mps"',), "MPS is not available"),
        # device "auto" passes the profile check; the engine finds no CUDA at start
        (('training.device="auto"', 'training.precision="fp16"'), '"fp16" needs a CUDA device'),
    ],
)
def test_a_device_or_precision_this_machine_lacks_is_refused(
    small_profile, train, overrides, message
) -> None:
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has the device the test expects to be missing")
    with pytest.raises(UserError, match=message):
        train(small_profile(*overrides))


def test_checkpoints_hold_state_callbacks_scaler_and_model_source(small_profile, train) -> None:
    trained = train(small_profile("training.early_stopping=5"))
    state = load_checkpoint(trained.result.run_dir / "checkpoints" / "last.pt")
    assert state["step"] == 12 and state["format"] == 2
    assert "scaler" in state and state["input_dim"] == 6516
    assert state["callbacks"]["early_stopping"] == {"evals_without_improvement": 1}
    assert state["callbacks"]["time_budget"]["used_seconds"] > 0
    assert state["model_source"] == {"architecture": "bilstm", "kind": "builtin"}


def test_commands_land_between_optimizer_steps_not_micro_batches(small_profile, train) -> None:
    """With 2 batches per optimizer step, a pause sent after every batch is applied only
    where a whole step has been taken."""
    positions: list[int] = []

    def pause_after_each_batch(event, engine) -> None:
        if isinstance(event, StepLogged) and event.step < 4:
            engine.bus.send(Pause(source="test"))
        if isinstance(event, CommandApplied) and event.command == "Pause":
            positions.append(engine.state.batch_in_epoch)
            engine.bus.send(Resume(source="test"))

    trained = train(
        small_profile(
            "training.grad_accumulation=2", "training.max_steps=4", "training.eval_every=2"
        ),
        pause_after_each_batch,
    )
    assert positions and all(p % 2 == 0 for p in positions)
    assert trained.of(EvalFinished)  # and the run still completes its evaluations


def test_each_logged_step_stores_the_share_of_time_spent_waiting_for_data(
    small_profile, train
) -> None:
    """`data_wait_share`: what a person reads to see a starved GPU (0..1 of each interval)."""
    from signconsole.events import StepLogged

    trained = train(small_profile("training.max_steps=6"))
    shares = [event.data_wait_share for event in trained.of(StepLogged)]
    assert len(shares) == 6 and all(0.0 <= share < 1.0 for share in shares), shares
    assert trained.engine.data_wait > 0.0  # batches are prepared while the loop waits
