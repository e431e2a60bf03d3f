"""Checkpoints: written atomically (temp file + fsync + rename), read with weights_only=True.

A checkpoint holds everything a resume needs: model, optimizer, learning-rate control, RNG,
step/epoch/position in the epoch, trainable stages, vocabulary, normalization statistics and the
resolved profile with its hash. Only tensors and plain containers go in, so the safe loader can
read it back without unpickling arbitrary objects.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Any

import torch

from signconsole.errors import UserError


class CheckpointError(UserError):
    pass


def profile_hash(profile_toml: str) -> str:
    return hashlib.sha256(profile_toml.encode()).hexdigest()[:16]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 files keep a teammate's `signconsole eval` out. Mode 0666 through
    # os.open lets the kernel apply the umask (no os.umask() round trip, which is not
    # thread-safe and the engine runs in the console's worker thread).
    temporary = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    state = read_torch_file(path, map_location)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a checkpoint")
    return state


def read_torch_file(
    path: Path, map_location: str | torch.device = "cpu", error: type[UserError] = CheckpointError
) -> Any:
    """`torch.load(path, weights_only=True)`, the one way signconsole reads a .pt file (runs,
    pretrained weights, teachers, eval and decode). A file that is not one is one line that
    says so, never torch's advice to load it with weights_only=False (which runs any code a
    pickle holds)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as failure:
        if failure.errno in (errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOENT):
            raise error(f"{path}: cannot read it ({failure.strerror}); check the path") from None
        # Anything else (torch reports a truncated archive as EINVAL) is the file's content.
        raise error(f"{path}: {_unreadable(path, failure)}") from None
    except Exception as failure:  # noqa: BLE001 - whatever torch raises, the file is unusable
        raise error(f"{path}: {_unreadable(path, failure)}") from None


def _unreadable(path: Path, failure: Exception) -> str:
    """Why torch could not read `path`, in words: a file of pickled Python objects other than
    tensors (safe loading refuses them), or not a checkpoint at all (empty, truncated, another
    format: torch says "invalid load key", "central directory", or nothing)."""
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(failure))
    if unsafe:
        return (
            f"holds a Python object ({unsafe.group(1)}) besides tensors, which signconsole does "
            "not unpickle (torch.load weights_only=True); save a state dict of tensors instead"
        )
    size = path.stat().st_size
    if not size:
        return "not a PyTorch checkpoint (the file is empty: 0 bytes)"
    return f"not a PyTorch checkpoint (corrupt or truncated: {size:,} bytes)"


def rng_state() -> dict[str, Any]:
    import random

    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import random

    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
