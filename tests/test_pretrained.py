"""Pretrained weights: I3D Kinetics layouts adapted 3D -> 1D with an exact load report, signconsole
checkpoints and run directories, and loads that match nothing failing loudly (seed 000)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest
import torch

from signconsole.cli import main
from signconsole.config import ModelConfig, PretrainedConfig
from signconsole.data.layout import FEATURE_DIM
from signconsole.events import PretrainedLoaded
from signconsole.models.pretrained import (
    LoadReport,
    PretrainedError,
    adapt_kernel,
    load_pretrained,
)
from signconsole.models.registry import build_model
from signconsole.models.teacher import MIXED_PLAN

VOCAB = 30
TEACHER = ModelConfig(architecture="i3d_teacher", hidden=64, fusion_dim=16)
STEM = {"Conv3d_1a_7x7": (3, 64, 7), "Conv3d_2b_1x1": (64, 64, 1), "Conv3d_2c_3x3": (64, 192, 3)}
BRANCHES = {"b0": 0, "b1a": 1, "b1b": 2, "b2a": 3, "b2b": 4, "b3b": 5}
HASSONY2 = {"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1"}
HASSONY2 |= {"b2a": "branch_2.0", "b2b": "branch_2.1", "b3b": "branch_3.1"}


def i3d_state_dict(flavour: str = "piergiaj", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the real key names and shapes of the two PyTorch I3D ports'
    Kinetics-400 RGB checkpoints (Inception-v1 plan, 400-class logits)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def unit(name: str, c_in: int, c_out: int, k: int) -> None:
        bn = "bn" if flavour == "piergiaj" else "batch3d"
        state[f"{name}.conv3d.weight"] = torch.randn(c_out, c_in, k, k, k, generator=generator)
        state[f"{name}.{bn}.weight"] = torch.rand(c_out, generator=generator)
        state[f"{name}.{bn}.bias"] = torch.randn(c_out, generator=generator)
        state[f"{name}.{bn}.running_mean"] = torch.randn(c_out, generator=generator)
        state[f"{name}.{bn}.running_var"] = torch.rand(c_out, generator=generator) + 0.5

    for name, (c_in, c_out, k) in STEM.items():
        unit(name if flavour == "piergiaj" else name.lower(), c_in, c_out, k)
    channels = 192
    for block, plan in MIXED_PLAN.items():
        c0, c1r, c1, c2r, c2, c3 = plan
        shapes = {
            "b0": (channels, c0, 1),
            "b1a": (channels, c1r, 1),
            "b1b": (c1r, c1, 3),
            "b2a": (channels, c2r, 1),
            "b2b": (c2r, c2, 3),
            "b3b": (channels, c3, 1),
        }
        for branch, (c_in, c_out, k) in shapes.items():
            if flavour == "piergiaj":
                unit(f"{block}.{branch}", c_in, c_out, k)
            else:
                unit(f"{block.lower()}.{HASSONY2[branch]}", c_in, c_out, k)
        channels = c0 + c1 + c2 + c3
    logits = "logits" if flavour == "piergiaj" else "conv3d_0c_1x1"
    state[f"{logits}.conv3d.weight"] = torch.randn(400, channels, 1, 1, 1, generator=generator)
    state[f"{logits}.conv3d.bias"] = torch.randn(400, generator=generator)
    return state


def teacher(**changes) -> torch.nn.Module:
    return build_model(dataclasses.replace(TEACHER, **changes), FEATURE_DIM, VOCAB)


def load(model, path: Path, **config) -> LoadReport:
    pretrained = PretrainedConfig(path=str(path), **config)
    return load_pretrained(model, model.stages(), pretrained, architecture="i3d_teacher")


@pytest.mark.parametrize("flavour", ["piergiaj", "hassony2"])
@pytest.mark.parametrize("adapt", ["temporal_mean", "spatial_mean", "temporal_max"])
def test_i3d_checkpoint_loads_with_an_exact_report(tmp_path, flavour, adapt) -> None:
    source = i3d_state_dict(flavour)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(source, path)
    model = teacher()
    report = load(model, path, adapt=adapt)

    assert report.source_format == f"i3d ({flavour})"
    stages = report.stages
    # Each unit: 1 conv kernel + 4 BatchNorm tensors in the checkpoint; 6 tensors in the model
    # (num_batches_tracked too). Conv3d_1a's RGB kernel never maps.
    assert (stages["stem"].loaded, stages["stem"].adapted, stages["stem"].tensors) == (14, 2, 18)
    assert len(stages["stem"].skipped) == 1
    key, reason = stages["stem"].skipped[0]
    assert key.lower() == "conv3d_1a_7x7.conv3d.weight" and "RGB" in reason
    for stage, blocks in (("mixed_3", 2), ("mixed_4", 5), ("mixed_5", 2)):
        units = blocks * 6
        assert (stages[stage].loaded, stages[stage].adapted) == (units * 5, units), stage
        assert stages[stage].tensors == units * 6 and not stages[stage].skipped
    for stage in ("fusion", "lstm", "classifier"):
        assert stages[stage].loaded == 0
    assert report.loaded == 14 + 9 * 6 * 5 and report.adapted == 2 + 9 * 6
    assert len(report.unmatched) == 2  # the Kinetics logits, weight and bias

    ours = model.state_dict()
    name = "Mixed_4c.b1b" if flavour == "piergiaj" else "mixed_4c.branch_1.1"
    bn = "bn" if flavour == "piergiaj" else "batch3d"
    kernel = source[f"{name}.conv3d.weight"]  # [224, 112, 3, 3, 3]
    loaded = ours["mixed_4.Mixed_4c.branch_1.1.conv.weight"]
    assert loaded.shape == (224, 112, 3)
    expected = {
        "temporal_mean": kernel.mean(dim=(3, 4)),
        "temporal_max": kernel.amax(dim=(3, 4)),
        "spatial_mean": torch.stack(
            [torch.zeros(224, 112), kernel.mean(dim=(3, 4))[:, :, 1], torch.zeros(224, 112)], 2
        ),
    }[adapt]
    torch.testing.assert_close(loaded, expected)
    torch.testing.assert_close(
        ours["mixed_4.Mixed_4c.branch_1.1.bn.running_var"], source[f"{name}.{bn}.running_var"]
    )
    text = "\n".join(report.lines())
    assert f"by {adapt}" in text and "mixed_4" in text


def test_adapt_kernel_reduces_space_only() -> None:
    kernel = torch.arange(2 * 1 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 1, 3, 2, 2)
    assert adapt_kernel(kernel, "temporal_mean")[0, 0].tolist() == [1.5, 5.5, 9.5]
    assert adapt_kernel(kernel, "temporal_max")[0, 0].tolist() == [3.0, 7.0, 11.0]
    assert adapt_kernel(kernel, "spatial_mean")[0, 0].tolist() == [0.0, 5.5, 0.0]


def test_i3d_at_another_width_matches_nothing_and_fails(tmp_path) -> None:
    path = tmp_path / "i3d.pt"
    torch.save(i3d_state_dict(), path)
    model = teacher(width_multiplier=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PretrainedError) as error:
        load(model, path)
    message = str(error.value)
    assert "nothing in" in message and "refusing to train from random weights" in message
    assert "allow_partial" in message and "shape" in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    report = load(model, path, allow_partial=True)
    assert report.loaded == 0
    assert any("width_multiplier = 1.0" in note for note in report.notes)


def test_i3d_checkpoint_refuses_the_student(tmp_path) -> None:
    path = tmp_path / "i3d.pt"
    torch.save(i3d_state_dict(), path)
    student = build_model(ModelConfig(architecture="mobilenet_student"), FEATURE_DIM, VOCAB)
    with pytest.raises(PretrainedError, match='only onto architecture = "i3d_teacher"'):
        load_pretrained(
            student,
            student.stages(),
            PretrainedConfig(path=str(path)),
            architecture="mobilenet_student",
        )


def test_unsafe_or_missing_files_are_errors(tmp_path) -> None:
    model = teacher()
    with pytest.raises(PretrainedError, match="does not exist"):
        load(model, tmp_path / "nope.pt")
    pickled = tmp_path / "pickled.pt"
    torch.save({"weights": Path("/etc")}, pickled)  # a non-tensor object: unsafe to unpickle
    with pytest.raises(PretrainedError, match="weights_only=True"):
        load(model, pickled)
    with pytest.raises(PretrainedError, match="nothing with a checkpoint matches"):
        load(model, tmp_path / "*-demo-teacher")


def test_plain_state_dict_with_module_prefix_loads_everything(tmp_path) -> None:
    source = teacher()
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = teacher()
    report = load(model, path)
    assert report.source_format == "state_dict"
    assert all(s.loaded == s.tensors for s in report.stages.values())
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


# ----------------------------------------------------------------------- through the engine


def test_run_starts_from_a_previous_run(small_profile, train, tmp_path) -> None:
    first = train(small_profile("training.max_steps=6"))
    run_dir = first.result.run_dir
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    # A glob of run directories picks the newest with a checkpoint.
    pattern = str(run_dir.parent / "*-demo-student")
    captured: dict[str, torch.Tensor] = {}

    def weights_at_start(event, engine) -> None:
        if isinstance(event, PretrainedLoaded):
            captured.update({k: v.clone() for k, v in engine.model.state_dict().items()})

    second = train(
        small_profile("training.max_steps=2", f'model.pretrained.path="{pattern}"'),
        weights_at_start,
    )
    [event] = second.of(PretrainedLoaded)
    assert event.source == str(run_dir / "checkpoints" / "best.pt")
    assert event.source_format == "signconsole"
    assert all(tensors == loaded for _, tensors, loaded, _, _ in event.stages)
    for key, value in best.items():
        assert torch.equal(captured[key], value), key

    database = sqlite3.connect(second.result.run_dir / "run.db")
    [(payload,)] = database.execute(
        "SELECT payload FROM events WHERE type = 'PretrainedLoaded'"
    ).fetchall()
    assert json.loads(payload)["source"] == event.source
    log = (second.result.run_dir / "log.txt").read_text()
    assert "pretrained signconsole from" in log and "classifier" in log


def test_other_vocabulary_skips_the_classifier(small_profile, train, tmp_path) -> None:
    first = train(small_profile("training.max_steps=2"))
    state = torch.load(first.result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    state["vocabulary"] = list(reversed(state["vocabulary"]))
    other = tmp_path / "other-vocabulary.pt"
    torch.save(state, other)
    second = train(small_profile("training.max_steps=1", f'model.pretrained.path="{other}"'))
    [event] = second.of(PretrainedLoaded)
    rows = {row[0]: row for row in event.stages}
    assert rows["classifier"][2] == 0 and rows["classifier"][4] == rows["classifier"][1]
    assert rows["lstm"][2] == rows["lstm"][1]
    assert any("vocabulary" in note for note in event.notes)


def test_cli_reports_an_incompatible_checkpoint_in_one_line(small_args, tmp_path, capsys) -> None:
    path = tmp_path / "i3d.pt"
    torch.save(i3d_state_dict(), path)
    code = main(
        [
            "run",
            *small_args,
            "--set",
            f'model.pretrained.path="{path}"',
            "--runs-dir",
            str(tmp_path),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert "I3D checkpoint" in errors[0] and "i3d_teacher" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i3d.pt"]  # no run directory left
