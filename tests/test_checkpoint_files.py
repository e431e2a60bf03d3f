"""Unreadable checkpoint files: one line that says what the file is, for every reader (a run's
own checkpoints, --resume, pretrained weights, teachers, eval and decode)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from signconsole.engine.checkpoint import CheckpointError, read_torch_file
from signconsole.errors import UserError
from signconsole.models.pretrained import PretrainedError, read_state


class NotATensor:
    pass


def broken_files(folder: Path) -> dict[str, Path]:
    torch.save({"w": torch.zeros(64)}, folder / "good.pt")
    whole = (folder / "good.pt").read_bytes()
    files = {
        "empty": b"",
        "random": os.urandom(500),
        "truncated": whole[: len(whole) // 2],
    }
    for name, data in files.items():
        (folder / f"{name}.pt").write_bytes(data)
    torch.save({"w": NotATensor()}, folder / "unsafe.pt")
    return {name: folder / f"{name}.pt" for name in (*files, "unsafe")}


def test_a_file_that_is_no_checkpoint_is_one_line_that_says_so(tmp_path: Path) -> None:
    files = broken_files(tmp_path)
    expected = {
        "empty": "not a PyTorch checkpoint (the file is empty: 0 bytes)",
        "random": "not a PyTorch checkpoint (corrupt or truncated: 500 bytes)",
        "truncated": "not a PyTorch checkpoint (corrupt or truncated: ",
        "unsafe": "holds a Python object (test_checkpoint_files.NotATensor) besides tensors",
    }
    for name, path in files.items():
        for reader, error in ((read_torch_file, CheckpointError), (read_state, PretrainedError)):
            with pytest.raises(error) as caught:
                reader(path)
            message = str(caught.value)
            assert message.startswith(f"{path}: {expected[name]}"), message
            assert "\n" not in message and "weights_only=False" not in message


def test_resume_from_an_unreadable_last_checkpoint_points_at_best(
    small_profile, train, runs_dir
) -> None:
    run_dir = train(small_profile("training.max_steps=6", "training.eval_every=3")).result.run_dir
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(UserError) as caught:
        train(small_profile("training.max_steps=6", "training.eval_every=3"), resume=run_dir)
    best = run_dir / "checkpoints" / "best.pt"
    assert re.fullmatch(
        re.escape(f"{last}: not a PyTorch checkpoint (corrupt or truncated: 100 bytes); {best}")
        + r" \(step [36]\) is readable: copy it over last.pt to resume from there",
        str(caught.value),
    )
    best.write_bytes(b"")
    with pytest.raises(UserError, match="best.pt is unreadable too, so nothing of this run can"):
        train(small_profile("training.max_steps=6", "training.eval_every=3"), resume=run_dir)
