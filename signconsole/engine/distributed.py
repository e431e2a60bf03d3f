"""Several processes, one run: PyTorch's own torch.distributed + DistributedDataParallel,
launched by torchrun (which also does multi-node rendezvous).

What each rank does and who decides:
- every rank trains on its own share of the length-bucketed batches (`shard`): the same number
  of batches on every rank, no batch twice in an epoch;
- rank 0 alone owns the run: directory, run.db, lock, checkpoints, evaluations, the console and
  the store's commands. Everything that changes training is decided there and sent to every
  rank at the same optimizer-step boundary (`Packet`): commands, stop, pause, the LR control.
  Ranks never decide alone, so they cannot diverge or wait on each other forever;
- a paused rank 0 keeps sending packets (heartbeats), so a long pause never reaches the
  collective timeout;
- freezing and unfreezing rebuild the DDP wrapper on every rank at that step: DDP decides which
  parameters it synchronizes when it wraps the model, so a stage unfrozen after wrapping would
  otherwise never be synchronized (Lightning #20340: weights diverge from the unfreeze on);
- `checksum` compares the weights of all ranks every few hundred steps and after each stage
  change; a difference is an alarm.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

# Long enough for rank 0 to evaluate a Phoenix-sized dev split while the others wait.
COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass
class Packet:
    """What rank 0 sends every rank at a step boundary."""

    commands: list[Any] = field(default_factory=list)  # Command objects, in the order to apply
    stop: tuple[str, str] | None = None  # (reason, outcome) when the run ends here
    paused: bool = False  # rank 0 is paused: wait for the next packet
    lr_state: dict[str, float] = field(default_factory=dict)  # LearningRateControl.state_dict()


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        """torchrun's variables; one process when they are absent."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            world=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device_setting: str) -> torch.device | None:
        """Join the process group (NCCL on GPUs, gloo on CPU); the device of this rank."""
        if not self.enabled or dist.is_initialized():
            return None
        cuda = device_setting.startswith("cuda") or (
            device_setting == "auto" and torch.cuda.is_available()
        )
        if cuda:
            torch.cuda.set_device(self.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
        return torch.device("cuda", self.local_rank) if cuda else torch.device("cpu")

    def close(self, finished_together: bool) -> None:
        """Leave the process group. After a normal end every rank first waits for the others
        (rank 0 still scores the test split when the others are done): a rank that tears gloo
        down while its peers still talk to it is aborted by C++ ("terminate called without an
        active exception"). After an error no barrier: the others may be inside a collective
        that would never match it."""
        if not (self.enabled and dist.is_initialized()):
            return
        if finished_together:
            with contextlib.suppress(RuntimeError):  # a peer is gone: nothing to wait for
                dist.barrier()
        dist.destroy_process_group()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def shard(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's batches: every `world`-th, cut to the same count on every rank (a
        remainder of fewer than `world` batches is left out of the epoch)."""
        if not self.enabled:
            return batches
        per_rank = len(batches) // self.world
        return batches[self.rank :: self.world][:per_rank]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of `value` over ranks (logged losses: one number for the whole step)."""
        if not self.enabled:
            return value
        total = value.detach().float().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total / self.world

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """A new DDP wrapper over the parameters that train now (call again after a stage
        change, on every rank at the same step)."""
        if not self.enabled:
            return model
        if not any(p.requires_grad for p in model.parameters()):
            return model
        return nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def checksums(self, model: nn.Module) -> list[float]:
        """Every rank's weight checksum (a float64 sum of each parameter times its position, so
        swapped or offset values still differ)."""
        with torch.no_grad():
            local = torch.zeros((), dtype=torch.float64, device="cpu")
            for index, parameter in enumerate(model.parameters(), start=1):
                local += index * parameter.detach().double().sum().cpu()
        if not self.enabled:
            return [float(local)]
        gathered = [torch.zeros_like(local) for _ in range(self.world)]
        dist.all_gather(gathered, local) if dist.get_backend() == "gloo" else _all_gather_cuda(
            gathered, local
        )
        return [float(v) for v in gathered]


def _all_gather_cuda(gathered: list[torch.Tensor], local: torch.Tensor) -> None:
    """NCCL gathers device tensors only."""
    device = torch.device("cuda", torch.cuda.current_device())
    on_device = [g.to(device) for g in gathered]
    dist.all_gather(on_device, local.to(device))
    for target, source in zip(gathered, on_device, strict=True):
        target.copy_(source.cpu())
