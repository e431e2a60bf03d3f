"""A user's model built on signconsole's own fusion that also reads a block of the 6516-vector
itself, as the layout allows a model to."""

import torch
from torch import nn

from signconsole.data.layout import LAYOUT
from signconsole.models.fusion import Fusion


class OnFusion(nn.Module):
    def __init__(self, input_dim: int, num_classes: int, hidden: int = 64):
        super().__init__()
        self.fusion = Fusion(16, hidden, 0.0)
        self.relative = nn.Linear(LAYOUT.relative.stop - LAYOUT.relative.start, hidden)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        x = self.fusion(features, lengths) + self.relative(features[..., LAYOUT.relative])
        return self.head(x), lengths
