"""`signconsole doctor`: passes on the shipped demo profiles as shipped, fails for the right reason
on broken ones (bad data path, a missing teacher, a model that collapses time)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT


def doctor(*args: str) -> subprocess.CompletedProcess:
    wide = {**os.environ, "COLUMNS": "250"}  # one table row per line, for the assertions
    return subprocess.run(
        [sys.executable, "-m", "signconsole", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=wide,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo-student", "demo-teacher", "overfit"])
def test_doctor_passes_on_shipped_demo_profiles(name: str) -> None:
    # The student's doctor as shipped (5 sequences); the others on 2, which is all this test
    # needs to know they learn, at a third of the time.
    smaller = () if name == "demo-student" else ("--set", "health.overfit_samples=2")
    result = doctor(str(ROOT / "profiles" / f"{name}.toml"), *smaller)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert "overfit test" in result.stdout and "at 0% after" in result.stdout


@pytest.mark.parametrize(
    "name,overrides,reason",
    [
        ("phoenix-teacher", (), "corpus directory not found"),
        (
            "demo-distill",
            ("--set", 'distill.teacher="/nonexistent/*-demo-teacher"'),
            "nothing with a checkpoint matches",
        ),
    ],
)
def test_doctor_fails_with_the_reason(name: str, overrides: tuple, reason: str) -> None:
    result = doctor(str(ROOT / "profiles" / f"{name}.toml"), *overrides)
    assert result.returncode == 1
    assert reason in result.stdout
    assert "Traceback" not in result.stderr
