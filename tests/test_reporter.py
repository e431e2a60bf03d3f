"""Headless output read through a pipe: whole paths, an ETA on plain lines, honest progress."""

from __future__ import annotations

from signconsole.commands.progress import progress_reporter
from signconsole.commands.reporter import HeadlessReporter
from signconsole.events import RunFinished, RunStarted, StepLogged

LONG_DIR = "runs/20260101-000000-" + "a-very-long-profile-name-" * 4 + "student"


def started() -> RunStarted:
    return RunStarted(
        0,
        time=100.0,
        run_dir=LONG_DIR,
        name="x",
        kind="student",
        device="cpu",
        unit="letter",
        stages=("lstm",),
        parameters={"lstm": 1000},
        trainable={"lstm": True},
        total_steps=100,
    )


def step(n: int, when: float) -> StepLogged:
    return StepLogged(
        n,
        time=when,
        epoch=0,
        loss=1.0,
        parts={"ctc": 1.0},
        lr=1e-3,
        grad_norm=0.5,
        stage_grad_norms={},
        frames_per_second=100.0,
        logit_std=1.0,
    )


def test_plain_lines_carry_an_eta_and_the_summary_keeps_whole_paths(capsys) -> None:
    reporter = HeadlessReporter(interactive=False, plain_interval=0.0)
    reporter(started())
    reporter(step(10, 110.0))
    reporter(step(20, 120.0))  # 1 step/s: 80 steps left
    checkpoint = f"{LONG_DIR}/checkpoints/best.pt"
    reporter(
        RunFinished(
            100,
            status="finished",
            best_error_rate=0.1,
            best_step=90,
            best_checkpoint=checkpoint,
            epochs=3,
            duration=90.0,
        )
    )
    reporter.summary()
    out = capsys.readouterr().out
    assert "step 20/100 ETA 1:20 " in out
    assert f"best checkpoint: {checkpoint}\n" in out and "…" not in out


def test_a_single_step_task_says_it_is_working_then_done(capsys) -> None:
    with progress_reporter(interactive=False) as progress:
        progress("computing feature statistics on train", 0, 1)
        progress("computing feature statistics on train", 1, 1)
    err = capsys.readouterr().err
    assert "0/1" not in err
    assert "computing feature statistics on train ..." in err and "done in" in err


def test_doctor_in_a_pipe_prints_whole_paths() -> None:
    import os
    import subprocess
    import sys

    from conftest import ROOT

    corpus = "/nonexistent/" + "a-long-directory-name/" * 6 + "corpus"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "signconsole",
            "doctor",
            str(ROOT / "profiles" / "demo-student.toml"),
        ]
        + ["--set", f'data.corpus="{corpus}"'],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert result.returncode == 1
    assert f"FAIL  data: {corpus}: corpus directory not found" in result.stdout
    assert "…" not in result.stdout
