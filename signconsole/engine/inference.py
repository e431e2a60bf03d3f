"""A trained model ready to use: checkpoint, its profile, vocabulary and normalization statistics.

Everything needed to run a checkpoint travels inside it (signconsole checkpoints hold the resolved
profile, the vocabulary and the feature statistics), so `eval` and `decode` need nothing else and
prepare features exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from signconsole.config import Profile
from signconsole.data.layout import LAYOUT
from signconsole.data.model_input import ModelInput
from signconsole.data.normalize import FeatureStats
from signconsole.data.readers import read_sequence
from signconsole.data.vocabulary import Vocabulary
from signconsole.errors import UserError
from signconsole.models.fusion import skip_zero_columns
from signconsole.models.pretrained import read_state, resolve_checkpoint
from signconsole.models.provenance import source_for_run
from signconsole.models.registry import build_from_source
from signconsole.profile import ProfileError, profile_from_dict


@dataclass
class TrainedModel:
    model: nn.Module
    profile: Profile
    vocabulary: Vocabulary
    stats: FeatureStats | None
    checkpoint: Path
    run_dir: Path | None  # when the checkpoint sits in a run directory
    step: int
    device: torch.device
    note: str = ""  # how the model's code was found when it is not the original (user models)
    user_code: bool = False  # the model is a user's, not a built-in architecture

    def features(self, path: str | Path) -> tuple[torch.Tensor, float | None]:
        """A feature file (.pose, landmark .npz/.npy, feature .npy) prepared as in training:
        [T, 6516] normalized features, and the file's fps when it says."""
        sequence = read_sequence(path)
        data = self.profile.data
        model_input = ModelInput(data.coordinates, data.normalization, self.stats)
        if sequence.landmarks is not None:
            landmarks = torch.from_numpy(sequence.landmarks.astype("float16"))
            features = model_input.full(landmarks, torch.from_numpy(sequence.mask))
        else:
            features = model_input.stored(torch.from_numpy(sequence.features))
        return features, sequence.fps


def load_trained(
    run_or_checkpoint: str, device: torch.device, key: str = "RUN_OR_CHECKPOINT"
) -> TrainedModel:
    """A run directory (best.pt, else last.pt), a glob of run directories (the newest) or a
    signconsole checkpoint file; `key` names the argument or profile key in messages."""
    checkpoint = resolve_checkpoint(run_or_checkpoint, key)
    state = read_state(checkpoint)
    missing = [name for name in ("model", "profile", "vocabulary") if name not in state]
    if missing:
        raise UserError(
            f"{key}: {checkpoint} is not a signconsole checkpoint (no {', '.join(missing)} in "
            "it); it must come from a signconsole run, which stores its profile and vocabulary "
            "with the weights"
        )
    try:
        profile = profile_from_dict(state["profile"], source=str(checkpoint))
    except ProfileError as error:
        raise UserError(f"{key}: {checkpoint}: its profile does not load: {error}") from None
    vocabulary = Vocabulary(tuple(state["vocabulary"]))
    stats = None
    if "stats" in state:
        stats = FeatureStats(state["stats"]["mean"].float(), state["stats"]["scale"].float())
    elif profile.data.normalization == "corpus_stats":
        raise UserError(
            f"{checkpoint}: trained with corpus_stats normalization but holds no statistics"
        )
    run_dir = checkpoint.parent.parent
    rebuilt = source_for_run(
        profile.model.architecture, state.get("model_source"), run_dir if run_dir.is_dir() else None
    )
    input_dim = int(state.get("input_dim", LAYOUT.dim))  # format-1 checkpoints: built-ins only
    model = build_from_source(rebuilt.source, profile.model, input_dim, len(vocabulary))
    model.load_state_dict(state["model"])
    data = profile.data
    skip_zero_columns(model, ModelInput(data.coordinates, data.normalization, stats).columns)
    model.to(device).eval()
    return TrainedModel(
        model,
        profile,
        vocabulary,
        stats,
        checkpoint,
        run_dir if (run_dir / "run.db").exists() else None,
        int(state.get("step", 0)),
        device,
        rebuilt.note,
        rebuilt.source.is_user_code,
    )
