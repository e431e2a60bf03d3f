"""What a run's checkpoints hold, and how a resume puts it back.

Everything is tensors and plain containers, so `torch.load(weights_only=True)` reads it: model,
optimizer, LR control, GradScaler, RNG, the TrainState, each stateful callback, trainable stages,
vocabulary, resolved profile, feature statistics and the model's source record.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from signconsole.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    profile_hash,
    restore_rng,
    rng_state,
)
from signconsole.errors import UserError
from signconsole.profile import profile_to_dict, with_absolute_paths

if TYPE_CHECKING:
    import torch

    from signconsole.engine.trainer import Engine

FORMAT = 2


def checkpoint_state(engine: Engine) -> dict[str, Any]:
    state: dict[str, Any] = {
        "format": FORMAT,
        "model": engine.model.state_dict(),
        "optimizer": engine.optimizer.state_dict(),
        "lr_control": engine.lr_control.state_dict(),
        "scaler": engine.scaler.state_dict(),
        "rng": rng_state(),
        **engine.state.state_dict(),
        "callbacks": {c.key: c.state_dict() for c in engine.callbacks if c.key},
        "trainable": dict(engine.control.trainable),
        "vocabulary": list(engine.vocabulary.tokens),
        "profile": profile_to_dict(with_absolute_paths(engine.profile)),
        "profile_hash": profile_hash(engine.profile_toml),
        "unit": engine.data.unit,
        "input_dim": engine.input_dim,
        "model_source": engine.model_record,
    }
    if engine.data.stats is not None:
        state["stats"] = {"mean": engine.data.stats.mean, "scale": engine.data.stats.scale}
    return state


def restore(engine: Engine, path: Path) -> dict[str, Any]:
    """Load `path` into a set-up engine; returns the checkpoint for anything else it holds."""
    state = load_resumable(path, map_location=engine.device)
    if list(engine.vocabulary.tokens) != state["vocabulary"]:
        raise UserError(
            f"{path}: the run's vocabulary differs from the corpus now; resume "
            "with the corpus the run was trained on"
        )
    engine.model.load_state_dict(state["model"])
    for name, trainable in state["trainable"].items():
        engine.control.set_trainable(name, trainable)
    engine.optimizer.load_state_dict(state["optimizer"])
    reapply_hyperparameters(engine)  # --allow-changes: the profile's values, not the saved ones
    engine.lr_control.load_state_dict(state["lr_control"])
    if state.get("scaler") and engine.scaler.is_enabled():
        engine.scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"])
    engine.state.load_state_dict(state)
    saved = state.get("callbacks", {})
    if "early_stopping" not in saved:  # format 1 kept this counter at the top level
        saved = {**saved, "early_stopping": state}
    for callback in engine.callbacks:
        if callback.key in saved:
            callback.load_state_dict(saved[callback.key])
    return state


def recorded_source(path: Path) -> dict[str, Any] | None:
    """The model source record a checkpoint holds (None for built-ins and older checkpoints)."""
    if not path.exists():
        return None
    return load_resumable(path).get("model_source")


def load_resumable(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A run's checkpoint; when its last.pt cannot be read, the error says whether the run's
    best.pt could take its place."""
    try:
        return load_checkpoint(path, map_location=map_location)
    except CheckpointError as error:
        best = path.with_name("best.pt")
        if path.name != "last.pt":
            raise
        try:
            step = load_checkpoint(best).get("step") if best.exists() else None
        except CheckpointError:
            step = None
        advice = (
            f"; {best} (step {step}) is readable: copy it over last.pt to resume from there"
            if step is not None
            else f"; {best.name} is {'unreadable too' if best.exists() else 'missing'}, so "
            "nothing of this run can be resumed: start a new run"
        )
        raise CheckpointError(f"{error}{advice}") from None


def reapply_hyperparameters(engine: Engine) -> None:
    """`optimizer.load_state_dict` brings back the saved groups' settings; the profile's values
    (possibly changed on resume with --allow-changes) are the ones to train with."""
    config = engine.profile.optimizer
    for group in engine.optimizer.param_groups:
        group["lr_multiplier"] = config.stage_lr.get(group["stage"], 1.0)
        group["weight_decay"] = config.weight_decay
        if "betas" in group:
            group["betas"] = tuple(config.betas)
        if "momentum" in group:
            group["momentum"] = config.momentum
