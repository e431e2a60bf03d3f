"""The training state a step changes, in one small object that checkpoints save whole."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken
    epoch: int = 0  # passes over the training split completed
    batch_in_epoch: int = 0  # batches of the current epoch already trained (resume skips them)
    status: str = "starting"  # starting, running, paused, stopping, finished, failed
    stop_reason: str = ""  # set by whoever ends the run (a person, a budget, early stopping)
    outcome: str = "finished"  # the status the run ends with: finished, stopped or failed
    best_error_rate: float | None = None  # best dev error rate so far
    best_step: int | None = None  # the step of best.pt
    evaluations: int = 0  # dev evaluations so far
    evaluated_step: int = -1  # the step of the latest dev evaluation (-1: none yet)

    def state_dict(self) -> dict[str, Any]:
        state = asdict(self)
        for transient in ("status", "stop_reason", "outcome"):
            state.pop(transient)  # a resumed run starts running, whatever it was when saved
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for f in fields(self):
            if f.name in state:
                setattr(self, f.name, state[f.name])

    def stop(self, reason: str, outcome: str = "stopped") -> None:
        """Ask the loop to end after this step (the loop checks `stop_reason` between steps).

        `outcome`: "finished" when the run reached its natural end (early stopping), "stopped"
        when a person or a budget ended it early, "failed" when it cannot go on."""
        if not self.stop_reason:
            self.stop_reason, self.outcome = reason, outcome
