"""Run files are readable by the group as the umask allows (a teammate's `eval` and `show` work),
and writable only by the owner (commands reach a run through run.db, as its owner)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from signconsole.engine.checkpoint import load_checkpoint, save_checkpoint
from signconsole.store.lock import LOCK_NAME, RunLock
from signconsole.store.run import new_run_dir


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_checkpoint_honours_the_umask_not_0600(tmp_path: Path) -> None:
    for mask, expected in ((0o022, 0o644), (0o027, 0o640), (0o077, 0o600)):
        path = tmp_path / f"{mask:o}" / "last.pt"
        with umask(mask):
            save_checkpoint(path, {"step": torch.tensor(3)})
        assert mode(path) == expected, f"umask {mask:o}: {mode(path):o}"
        assert load_checkpoint(path)["step"] == 3
        assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left


def test_run_directory_owner_writes_group_reads_as_umask_allows(tmp_path: Path) -> None:
    for mask, expected in ((0o002, 0o755), (0o027, 0o750)):
        with umask(mask):
            run = new_run_dir(tmp_path / f"{mask:o}", "x")
            lock = RunLock.acquire(run)
        try:
            assert mode(run) == expected and mode(run / "checkpoints") == expected
            assert mode(run / LOCK_NAME) == 0o644 & ~mask
        finally:
            lock.release()


def test_every_file_of_a_real_run_is_group_readable(small_profile, train) -> None:
    with umask(0o027):
        trained = train(small_profile("training.max_steps=2", "training.eval_every=2"))
    run = trained.result.run_dir
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.db", "log.txt", "profile.toml", "last.pt", "best.pt"}
    for path in [run, *files]:
        assert mode(path) & stat.S_IRGRP, f"{path.relative_to(run)}: {mode(path):o}"
        assert not mode(path) & (stat.S_IWGRP | stat.S_IROTH), f"{path}: {mode(path):o}"
