"""The model bugs of ../shared/seeds, each written into an otherwise healthy user model."""

import torch
from gru_ctc import GruCtc  # beside this file, as a user's own modules are
from torch import nn


class LogSoftmaxInForward(GruCtc):
    """Seeds 000/001: log_softmax in the model, and the loss applies it again."""

    def forward(self, features, lengths):
        logits, out_lengths = super().forward(features, lengths)
        return logits.log_softmax(-1), out_lengths


class PooledTime(GruCtc):
    """Seed 003: AdaptiveAvgPool1d(1) over time, then repeated to T frames."""

    def __init__(self, input_dim, num_classes, hidden=64):
        super().__init__(input_dim, num_classes, hidden)
        self.pool = nn.AdaptiveAvgPool1d(1)

    def forward(self, features, lengths):
        x, out_lengths = self.encode(features, lengths)
        pooled = self.pool(x.transpose(1, 2)).transpose(1, 2)  # [B, 1, H]
        return self.head(pooled.expand_as(x)), out_lengths


class TinyFinalLayer(GruCtc):
    """Seed 000: the classifier initialised with std 0.0001 (output signal death)."""

    def __init__(self, input_dim, num_classes, hidden=64):
        super().__init__(input_dim, num_classes, hidden)
        nn.init.normal_(self.head.weight, std=1e-4)
        nn.init.zeros_(self.head.bias)


class LengthsNotReduced(GruCtc):
    """Time is strided by 2 but the input lengths are returned as the output lengths."""

    def forward(self, features, lengths):
        logits, _ = super().forward(features, lengths)
        return logits, lengths


class IgnoresInput(nn.Module):
    """Scores that depend only on the lengths: the features never reach the output."""

    def __init__(self, input_dim, num_classes):
        super().__init__()
        self.scores = nn.Parameter(torch.randn(num_classes))

    def forward(self, features, lengths):
        frames = features.shape[1]
        return self.scores.expand(features.shape[0], frames, -1), lengths


class ZeroInitHead(GruCtc):
    """Healthy: a zero-initialised classifier (a common CTC choice) is not an ignored input."""

    def __init__(self, input_dim, num_classes, hidden=64):
        super().__init__(input_dim, num_classes, hidden)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)


class WithPositionScale(GruCtc):
    """Healthy: a parameter on the model itself (outside every child) must train too."""

    def __init__(self, input_dim, num_classes, hidden=64):
        super().__init__(input_dim, num_classes, hidden)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, features, lengths):
        return super().forward(features * self.scale, lengths)


class NamedStages(GruCtc):
    """stages() as an nn.ModuleDict: two stages, input side and output side."""

    def stages(self):
        return nn.ModuleDict(
            {"encoder": nn.ModuleList([self.proj, self.subsample, self.rnn]), "head": self.head}
        )


class ForwardRaises(GruCtc):
    """A shape bug in the user's forward."""

    def forward(self, features, lengths):
        return self.head(features), lengths


class SoftmaxInForward(GruCtc):
    """Seeds 000/001 again: softmax (probabilities) instead of log_softmax in the model."""

    def forward(self, features, lengths):
        logits, out_lengths = super().forward(features, lengths)
        return logits.softmax(-1), out_lengths


class MeanOverTimeAfterHead(GruCtc):
    """Seed 003 after the classifier: the logits averaged over time and repeated T' times."""

    def forward(self, features, lengths):
        logits, out_lengths = super().forward(features, lengths)
        return logits.mean(1, keepdim=True).expand_as(logits), out_lengths


class PoolsTimeWhileTraining(MeanOverTimeAfterHead):
    """The same, in training mode only: what the contract check (eval mode) cannot see."""

    def forward(self, features, lengths):
        if self.training:
            return super().forward(features, lengths)
        return GruCtc.forward(self, features, lengths)
