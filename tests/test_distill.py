"""Distillation: the KD loss against hand-computed numbers, padding masks, time resampling, the
teacher's checks (vocabulary, normalization) and a real distillation run on the small corpus."""

from __future__ import annotations

import json
import math
import tomllib

import pytest
import torch

from signconsole.config import DistillConfig
from signconsole.engine.distill import TeacherError
from signconsole.engine.distill_summary import find_baseline
from signconsole.engine.losses import distillation_loss, kd_weight, resample_time
from signconsole.events import DistillationSummary, StepLogged
from signconsole.models.base import ModelOutput
from signconsole.profile import load_profile
from signconsole.profile_files import ProfileError


def output(logits: list, lengths: list[int]) -> ModelOutput:
    tensor = torch.tensor(logits, dtype=torch.float32)
    return ModelOutput(tensor, torch.tensor(lengths), tensor)


def test_kd_loss_matches_a_hand_computed_example() -> None:
    student = output([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]], [2])
    teacher = output([[[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]], [2])
    temperature = 2.0

    def softmax(row: list[float]) -> list[float]:
        exps = [math.exp(v / temperature) for v in row]
        return [e / sum(exps) for e in exps]

    expected = 0.0
    for s_row, t_row in zip(student.logits[0].tolist(), teacher.logits[0].tolist(), strict=True):
        p, q = softmax(t_row), softmax(s_row)
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = temperature**2 * expected / 2  # mean over the 2 valid frames
    loss = distillation_loss(student, teacher, temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert distillation_loss(teacher, teacher, temperature).item() == pytest.approx(0, abs=1e-6)


def test_kd_loss_ignores_padding_frames() -> None:
    generator = torch.Generator().manual_seed(0)
    student_logits = torch.randn(2, 3, 5, generator=generator)
    teacher_logits = torch.randn(2, 3, 5, generator=generator)
    lengths = torch.tensor([3, 1])
    base = distillation_loss(
        ModelOutput(student_logits, lengths, student_logits),
        ModelOutput(teacher_logits, lengths, teacher_logits),
        4.0,
    )
    noisy_student, noisy_teacher = student_logits.clone(), teacher_logits.clone()
    noisy_student[1, 1:] = 50.0  # padding of the second sample
    noisy_teacher[1, 1:] = -50.0
    noisy = distillation_loss(
        ModelOutput(noisy_student, lengths, noisy_student),
        ModelOutput(noisy_teacher, lengths, noisy_teacher),
        4.0,
    )
    assert noisy.item() == pytest.approx(base.item(), rel=1e-6)
    # The mean is over the 4 valid frames, not over the batch's 6 slots.
    per_sample = [
        distillation_loss(
            ModelOutput(student_logits[i : i + 1, :n], lengths[i : i + 1], student_logits),
            ModelOutput(teacher_logits[i : i + 1, :n], lengths[i : i + 1], teacher_logits),
            4.0,
        ).item()
        * n
        for i, n in enumerate([3, 1])
    ]
    assert base.item() == pytest.approx(sum(per_sample) / 4, rel=1e-5)


def test_time_resampling_aligns_frame_centres() -> None:
    probs = torch.eye(4)[None]  # teacher frame i is certain of class i
    down = resample_time(probs, torch.tensor([4]), torch.tensor([2]), 2)
    # student frame 0 covers teacher frames 0-1, frame 1 covers 2-3
    torch.testing.assert_close(down[0], torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]))
    up = resample_time(probs[:, :2, :2], torch.tensor([2]), torch.tensor([4]), 4)
    torch.testing.assert_close(
        up[0], torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    )
    same = resample_time(probs, torch.tensor([4]), torch.tensor([4]), 4)
    torch.testing.assert_close(same, probs)
    # padded batch: the short sample resamples within its own valid frames; padding is zero
    batch = torch.stack([torch.eye(4), torch.cat([torch.eye(4)[:2], torch.zeros(2, 4)])])
    resampled = resample_time(batch, torch.tensor([4, 2]), torch.tensor([2, 1]), 2)
    torch.testing.assert_close(resampled[1, 0], torch.tensor([0.5, 0.5, 0, 0]))
    assert resampled[1, 1].sum() == 0
    assert torch.allclose(resampled[0].sum(-1), torch.ones(2))


# ----------------------------------------------------------------------- real runs


@pytest.fixture
def teacher_run(small_profile, train):
    """A small finished run to distill from (a wider BiLSTM)."""
    return train(small_profile("model.hidden=96")).result.run_dir


def distill_profile(small_profile, teacher: str, *more: str):
    return small_profile('kind="distill"', f'distill.teacher="{teacher}"', *more)


def test_distillation_run_trains_the_student_only(small_profile, train, teacher_run) -> None:
    checkpoint = torch.load(teacher_run / "checkpoints" / "best.pt", weights_only=True)["model"]
    baseline = train(small_profile()).result.run_dir  # the same student without distillation
    trained = train(distill_profile(small_profile, str(teacher_run)))
    teacher = trained.engine.teacher
    assert teacher is not None and teacher.run_dir == teacher_run
    for name, parameter in teacher.model.named_parameters():
        assert not parameter.requires_grad and parameter.grad is None, name
        assert torch.equal(parameter.detach(), checkpoint[name]), name
    assert not teacher.model.training
    # Built-in teacher and student, told the same columns: the batches hold only those.
    assert trained.engine.compact_batches
    logged = trained.of(StepLogged)
    assert all(set(e.parts) == {"ctc", "kd"} for e in logged)
    assert all(e.teacher_ms > 0 for e in logged)
    alpha = 0.7
    last = logged[-1]
    # log_every = 1: the logged loss is that step's alpha * KD + (1 - alpha) * CTC
    assert last.loss == pytest.approx(alpha * last.parts["kd"] + (1 - alpha) * last.parts["ctc"])

    [summary] = trained.of(DistillationSummary)
    roles = [row["role"] for row in summary.rows]
    assert roles == ["teacher", "student (distilled)", "student (no distillation)"]
    teacher_row, student_row, baseline_row = summary.rows
    assert teacher_row["parameters"] == teacher.parameters
    assert teacher_row["parameters"] > student_row["parameters"]
    assert baseline_row["run"] == str(baseline)
    # a student that trained fewer steps than the distilled one is no baseline
    steps = trained.engine.state.step
    profile_dict = tomllib.loads(trained.engine.profile_toml)
    runs_dir = trained.result.run_dir.parent
    assert find_baseline(runs_dir, profile_dict, trained.result.run_dir, steps) == baseline
    assert find_baseline(runs_dir, profile_dict, trained.result.run_dir, steps + 1) is None
    assert all(row["cpu_ms_per_sequence"] > 0 for row in summary.rows)
    assert all(row["test_error"] is not None for row in summary.rows)
    assert student_row["test_error"] == trained.engine.test_error_rate
    saved = json.loads((trained.result.run_dir / "comparison.json").read_text())
    assert [m["role"] for m in saved["models"]] == roles


def test_teacher_with_another_vocabulary_is_refused(small_profile, train, teacher_run, tmp_path):
    state = torch.load(teacher_run / "checkpoints" / "best.pt", weights_only=True)
    state["vocabulary"] = state["vocabulary"][:-1] + ["Ä"]
    other = tmp_path / "other.pt"
    torch.save(state, other)
    with pytest.raises(TeacherError) as error:
        train(distill_profile(small_profile, str(other)))
    message = str(error.value)
    assert "vocabulary" in message and "'Ä'" in message and "distill on the corpus" in message


def test_teacher_with_other_normalization_is_refused(small_profile, train, teacher_run) -> None:
    profile = distill_profile(
        small_profile, str(teacher_run), 'data.normalization="per_sample"', "data.ignore=[]"
    )
    with pytest.raises(TeacherError, match="data.normalization"):
        train(profile)


def test_linear_kd_weight_hands_the_end_of_the_run_to_the_labels() -> None:
    constant = DistillConfig(alpha=0.7)
    assert [kd_weight(constant, step, 380) for step in (0, 190, 379)] == [0.7, 0.7, 0.7]
    linear = DistillConfig(alpha=0.7, alpha_schedule="linear")
    assert kd_weight(linear, 0, 380) == 0.7  # the first step: all the teacher's alpha
    assert kd_weight(linear, 379, 380) == 0.0  # the last step: CTC alone
    middle = kd_weight(linear, 190, 381)
    assert middle == pytest.approx(0.35)
    assert kd_weight(linear, 500, 380) == 0.0  # past the plan (a resumed run): never negative


def test_an_unknown_kd_weight_schedule_is_refused_with_its_choices(tmp_path) -> None:
    profile = tmp_path / "distill.toml"
    profile.write_text(
        'name = "d"\nkind = "distill"\n[distill]\nteacher = "t"\nalpha_schedule = "cosine"\n'
    )
    with pytest.raises(ProfileError) as error:
        load_profile(profile)
    message = str(error.value)
    assert "distill.alpha_schedule" in message and "linear" in message


def test_linear_kd_weight_in_a_run_and_no_baseline_that_trained_fewer_steps(
    small_profile, train, teacher_run
) -> None:
    train(small_profile("training.max_steps=3"))  # a student stopped at step 3
    trained = train(
        distill_profile(small_profile, str(teacher_run), "distill.alpha_schedule=linear")
    )
    assert trained.engine.health.clip_norm == trained.engine.profile.optimizer.grad_clip > 0
    first, *_, last = trained.of(StepLogged)  # log_every = 1: steps 1 and 12 of 12
    kd, ctc = first.parts["kd"], first.parts["ctc"]
    assert first.loss == pytest.approx(0.7 * kd + 0.3 * ctc)  # the first step: alpha itself
    assert last.loss == pytest.approx(last.parts["ctc"])  # the last: CTC alone
    [summary] = trained.of(DistillationSummary)
    # the only student run stopped at step 3 of the distilled run's 12: it is no baseline
    assert [row["role"] for row in summary.rows] == ["teacher", "student (distilled)"]
