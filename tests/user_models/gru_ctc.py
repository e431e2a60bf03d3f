"""A small GRU-CTC model written the way a user writes one: it knows nothing of signconsole."""

import torch
from torch import nn


class GruCtc(nn.Module):
    def __init__(self, input_dim: int, num_classes: int, hidden: int = 64, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.proj = nn.Sequential(nn.Linear(input_dim, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.subsample = nn.Conv1d(hidden, hidden, kernel_size=3, stride=stride, padding=1)
        self.rnn = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(hidden, num_classes)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + 2 - 3, self.stride, rounding_mode="floor") + 1

    def encode(self, features: torch.Tensor, lengths: torch.Tensor):
        x = self.proj(features)
        x = self.subsample(x.transpose(1, 2)).relu().transpose(1, 2)
        x, _ = self.rnn(x)
        return x, self.output_lengths(lengths)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        x, out_lengths = self.encode(features, lengths)
        return self.head(x), out_lengths
