"""Architecture name (`model.architecture` in a profile) -> model class."""

from __future__ import annotations

from signconsole.config import ModelConfig
from signconsole.models.base import CSLRModel
from signconsole.models.bilstm import BiLSTMBaseline
from signconsole.models.student import MobileNetStudent
from signconsole.models.teacher import I3DTeacher

ARCHITECTURES: dict[str, type[CSLRModel]] = {
    "i3d_teacher": I3DTeacher,
    "mobilenet_student": MobileNetStudent,
    "bilstm": BiLSTMBaseline,
}


def build_model(config: ModelConfig, vocab_size: int) -> CSLRModel:
    """Build the model a profile's model section describes; `vocab_size` counts the blank (0)."""
    try:
        architecture = ARCHITECTURES[config.architecture]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise ValueError(
            f"unknown model.architecture {config.architecture!r}; known: {known}"
        ) from None
    return architecture(config, vocab_size)  # type: ignore[call-arg]
