"""CSLR models: features [B, T, 6516] + lengths [B] -> raw CTC logits, lengths, encoder."""

from signconsole.models.base import CSLRModel, ModelOutput
from signconsole.models.bilstm import BiLSTMBaseline
from signconsole.models.registry import ARCHITECTURES, build_model
from signconsole.models.student import MobileNetStudent
from signconsole.models.teacher import I3DTeacher

__all__ = [
    "ARCHITECTURES",
    "BiLSTMBaseline",
    "CSLRModel",
    "I3DTeacher",
    "MobileNetStudent",
    "ModelOutput",
    "build_model",
]
