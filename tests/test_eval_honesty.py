"""`eval` and `decode` say which checkpoint they used and refuse one that was never trained."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from signconsole.cli import main
from signconsole.commands.evaluate import EvalReport, print_report


def untrained_copy(run_dir: Path, runs_dir: Path) -> Path:
    """The same run as a newer run of the same name whose checkpoint is at step 0."""
    copy = runs_dir / "29990101-000000-demo-student"
    shutil.copytree(run_dir, copy)
    for checkpoint in (copy / "checkpoints").glob("*.pt"):
        state = torch.load(checkpoint, weights_only=True)
        state["step"] = 0
        torch.save(state, checkpoint)
    return copy


def test_decode_refuses_an_untrained_run_and_names_the_trained_one(
    small_profile, train, runs_dir, tmp_path, capsys
) -> None:
    trained = train(small_profile("training.max_steps=2")).result.run_dir
    untrained_copy(trained, runs_dir)
    sample = tmp_path / "x.npy"
    sample.write_bytes(b"")
    assert main(["decode", "demo-student", str(sample), "--dir", str(runs_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "step 0, the model was never trained" in err[0]
    assert str(trained) in err[0] and "--allow-untrained" in err[0]

    assert main(["decode", str(trained), str(sample), "--dir", str(runs_dir)]) == 1  # bad file
    out = capsys.readouterr().out
    assert f"(run {trained.name}, step 2)" in out.splitlines()[0]


def test_an_error_rate_above_100_percent_is_explained(capsys) -> None:
    report = EvalReport(
        checkpoint="runs/x/checkpoints/best.pt",
        step=0,
        data="corpus",
        split="test",
        decoder="greedy",
        unit="letter",
        sequences=3,
        error_rate=1.5973,
        substitutions=10,
        deletions=0,
        insertions=30,
        reference_words=25,
        loss=9.0,
        unknown_glosses={},
        confusions=[],
        by_length=[],
        sequences_per_second=10.0,
        real_time_factor=None,
        fps=None,
    )
    print_report(report)
    out = " ".join(capsys.readouterr().out.split())
    assert "LER 159.73%" in out and "LER above 100%" in out and "30 insertions" in out
