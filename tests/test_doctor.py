"""`signconsole doctor`: passes on the shipped demo profiles as shipped, fails for the right reason
on broken ones (bad data path, a missing teacher, a model that collapses time)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import PROFILE, ROOT

from signconsole.commands.doctor import doctor_command
from signconsole.engine import trainer as trainer_module
from signconsole.models.base import ModelOutput
from signconsole.models.registry import build_model as real_build_model


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
    result = doctor(str(ROOT / "profiles" / f"{name}.toml"))
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


@pytest.mark.slow
def test_doctor_overfit_fails_on_a_time_collapsing_model(monkeypatch, capsys) -> None:
    def collapsed(config, vocab_size):
        model = real_build_model(config, vocab_size)
        forward = type(model).forward

        def pooled(self, features, lengths):
            out = forward(self, features, lengths)
            encoder = out.encoder.mean(1, keepdim=True).expand_as(out.encoder)  # seed 003
            return ModelOutput(self.classifier(encoder), out.lengths, encoder)

        model.forward = pooled.__get__(model)
        return model

    monkeypatch.setattr(trainer_module, "build_model", collapsed)
    code = doctor_command(
        PROFILE,
        [
            "model.architecture=bilstm",
            "model.hidden=64",
            "model.fusion_dim=16",
            "health.overfit_max_steps=60",
        ],
    )
    output = " ".join(capsys.readouterr().out.split())
    assert code == 1
    assert "not solved in 60 steps" in output
    assert "sequence_collapse" in output
