"""Freeze stages: schedules unfreeze the right stages at the right epochs, frozen stages do not
move (parameters or BatchNorm statistics), and Adam's state survives a freeze/unfreeze."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from signconsole.config import FreezeConfig, StageUnfreeze
from signconsole.engine.freeze import StageControl, StageError
from signconsole.events import Freeze, StageChanged, StepLogged, Unfreeze

TEACHER_STAGES = ("fusion", "stem", "mixed_3", "mixed_4", "mixed_5", "lstm", "classifier")


def control(config: FreezeConfig, max_epochs: int = 50) -> StageControl:
    stages = {name: nn.Linear(2, 2) for name in TEACHER_STAGES}
    return StageControl(stages, config, max_epochs)


def test_generated_schedule_follows_seed_004() -> None:
    # Seed 004: 4 stages over 50 epochs; classifier and LSTM first, then mixed_5 (13),
    # mixed_4 (26 in the seed's table: 50/4 = 12.5 epochs a phase, rounded up here), and
    # mixed_3 with the stem last.
    frozen = ("stem", "mixed_3", "mixed_4", "mixed_5")
    schedule = control(FreezeConfig(frozen=frozen, stages=4)).schedule_text()
    assert schedule == [(13, ["mixed_5"]), (25, ["mixed_4"]), (38, ["mixed_3", "stem"])]


def test_generated_schedule_unfreezes_everything_frozen_top_first() -> None:
    stages = control(FreezeConfig(freeze_until="mixed_5", stages=3), max_epochs=12)
    assert stages.initially_frozen == ["fusion", "stem", "mixed_3", "mixed_4", "mixed_5"]
    schedule = stages.schedule_text()
    assert schedule == [(4, ["mixed_5", "mixed_4"]), (8, ["mixed_3", "stem", "fusion"])]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (FreezeConfig(frozen=("mixed_9",)), "freeze.frozen: unknown stage 'mixed_9'"),
        (FreezeConfig(freeze_until="conv"), "freeze.freeze_until: unknown stage 'conv'"),
        (FreezeConfig(freeze_until="stem", stages=1), "give 2 or more phases"),
        (FreezeConfig(stages=3), "none is frozen at the start"),
    ],
)
def test_bad_freeze_config_is_a_clear_error(config: FreezeConfig, message: str) -> None:
    with pytest.raises(StageError) as error:
        control(config)
    assert message in str(error.value)
    if "unknown stage" in message:
        assert "fusion, stem, mixed_3, mixed_4, mixed_5, lstm, classifier" in str(error.value)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        (FreezeConfig(frozen=TEACHER_STAGES), "freeze.frozen"),
        (FreezeConfig(freeze_until="classifier"), "freeze.freeze_until"),
        (FreezeConfig(freeze_until="classifier", stages=3), "freeze.freeze_until"),
    ],
)
def test_freezing_every_stage_is_refused(config: FreezeConfig, key: str) -> None:
    with pytest.raises(StageError) as error:
        control(config)
    assert str(error.value).startswith(f"{key}: every stage is frozen (fusion, stem,")
    assert "leave at least one training" in str(error.value)


def test_every_stage_frozen_but_one_unfrozen_at_epoch_0_or_parameterless_trains() -> None:
    at_zero = FreezeConfig(
        freeze_until="classifier", schedule=(StageUnfreeze(epoch=0, unfreeze=("lstm",)),)
    )
    assert control(at_zero).initially_frozen == list(TEACHER_STAGES)
    stages = {"pool": nn.Identity(), "head": nn.Linear(2, 2)}
    with pytest.raises(StageError, match="every stage is frozen"):
        StageControl(stages, FreezeConfig(frozen=("head",)), 5)  # the pool learns nothing


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(
        not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point()
    )


def test_explicit_schedule_parameters_move_only_while_trainable(small_profile, train) -> None:
    # 24 sequences in batches of 16: 2 steps an epoch, 12 steps = epochs 0..5.
    profile = small_profile(
        'freeze.frozen=["fusion", "lstm"]',
        'freeze.schedule=[{epoch = 2, unfreeze = ["lstm"]}, {epoch = 4, unfreeze = ["fusion"]}]',
    )
    history: list[tuple[int, int, dict[str, dict[str, torch.Tensor]]]] = []

    def record(event, engine) -> None:
        if isinstance(event, StepLogged):
            states = {name: snapshot(m) for name, m in engine.stages.items()}
            history.append((event.step, event.epoch, states))

    trained = train(profile, record)
    engine = trained.engine
    per_epoch = engine.steps_per_epoch
    assert per_epoch == 2
    unfrozen = [(e.stage, e.step) for e in trained.of(StageChanged, reason="schedule")]
    assert unfrozen == [("lstm", 2 * per_epoch), ("fusion", 4 * per_epoch)]
    trainable_from = {"fusion": 4, "lstm": 2, "subsample": 0, "classifier": 0}
    previous = None
    for step, epoch, states in history:
        if previous is not None:
            for name, state in states.items():
                if not any(v.is_floating_point() for v in state.values()):
                    continue
                moved = changed(previous[name], state)
                assert moved == (epoch >= trainable_from[name]), (name, step, epoch)
        previous = states


def test_frozen_stage_keeps_batchnorm_statistics(small_profile, train) -> None:
    profile = small_profile(
        "model.architecture=mobilenet_student",
        "model.width_multiplier=0.25",
        'freeze.frozen=["blocks_1"]',
        "training.max_steps=4",
    )
    before: dict[str, dict[str, torch.Tensor]] = {}

    def record(event, engine) -> None:
        if not before and isinstance(event, StageChanged):
            before.update({n: snapshot(m) for n, m in engine.stages.items()})

    trained = train(profile, record)
    stages = trained.engine.stages

    def statistics(name: str) -> dict[str, torch.Tensor]:
        return {k: v for k, v in stages[name].state_dict().items() if "running_" in k}

    frozen_stats = statistics("blocks_1")
    assert frozen_stats, "blocks_1 has BatchNorm layers"
    for key, value in frozen_stats.items():
        assert torch.equal(value, before["blocks_1"][key]), key
    moved = [
        k for k, v in statistics("blocks_2").items() if not torch.equal(v, before["blocks_2"][k])
    ]
    assert moved, "a trainable stage's BatchNorm statistics should move"


def test_optimizer_state_survives_freeze_and_unfreeze(small_profile, train) -> None:
    commands = {3: Freeze(stage="lstm"), 6: Unfreeze(stage="lstm")}
    exp_avg: dict[int, torch.Tensor] = {}

    def control_and_watch(event, engine) -> None:
        if isinstance(event, StepLogged):
            parameter = next(engine.stages["lstm"].parameters())
            state = engine.optimizer.state.get(parameter, {})
            if "exp_avg" in state:
                exp_avg[event.step] = state["exp_avg"].clone()
            if event.step in commands:
                engine.bus.send(commands[event.step])

    trained = train(small_profile(), control_and_watch)
    parameter = next(trained.engine.stages["lstm"].parameters())
    state = trained.engine.optimizer.state[parameter]
    # Trained at steps 1-3 and 7-12 (the Freeze lands after step 3, Unfreeze after step 6):
    # Adam counted 9 steps; a reset on unfreeze would have counted 6.
    assert int(state["step"]) == 9
    assert torch.equal(exp_avg[3], exp_avg[6]), "frozen: moments untouched"
    assert not torch.equal(exp_avg[6], exp_avg[7])
