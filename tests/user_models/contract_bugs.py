"""Contract breaks the seeds do not describe, written into an otherwise healthy user model."""

from gru_ctc import GruCtc  # beside this file, as a user's own modules are


class OutputLengthsNotATensor(GruCtc):
    """An output_lengths() method that returns something else than the lengths."""

    def output_lengths(self, lengths):
        return "nope"

    def forward(self, features, lengths):
        x = self.subsample(self.proj(features).transpose(1, 2)).relu().transpose(1, 2)
        x, _ = self.rnn(x)
        return self.head(x), GruCtc.output_lengths(self, lengths)  # the right lengths here


class RaisesWhileTraining(GruCtc):
    """Passes the contract check (eval mode), then fails on the third training step."""

    def forward(self, features, lengths):
        if self.training:
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls > 2:
                raise RuntimeError("boom in training")
        return super().forward(features, lengths)


class StagesNotModules(GruCtc):
    """stages() naming something that is not a module."""

    def stages(self):
        return {"proj": self.proj, "head": "self.head"}
