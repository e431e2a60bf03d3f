"""Every seed failure reproduced for real (real model, real pose data) raises the right alarm, and
a healthy run raises none. Models are broken the way the seeds broke theirs, by wrapping the real
model the engine builds; data is broken the way the seeds' pipelines broke it."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from signconsole.data.corpus import annotation_path
from signconsole.data.dataset import SequenceDataset
from signconsole.data.layout import FEATURE_DIM
from signconsole.data.prepare import prepare_data
from signconsole.data.vocabulary import Vocabulary
from signconsole.engine import trainer as trainer_module
from signconsole.engine.doctor import preflight
from signconsole.events import AlarmRaised, StateChanged, Stop
from signconsole.models.registry import build_model as real_build_model


def kinds(trained) -> list[str]:
    return [event.kind for event in trained.of(AlarmRaised)]


def stop_when_paused(event, engine) -> None:
    if isinstance(event, StateChanged) and event.state == "paused":
        engine.bus.send(Stop(reason="test: stop the paused run"))


# ----------------------------------------------------------------------------- the seeds


# The model bugs of the seeds (log_softmax in forward, time pooled away, a tiny classifier,
# lengths not reduced, input ignored) are written into user model files: tests/test_user_models.py.


def test_raw_logits_get_log_softmax_exactly_once(small_profile, small_data) -> None:
    """The missing-log_softmax half of seed 001 cannot happen: the engine's loss normalizes raw
    logits itself, and its CTC value equals PyTorch's on explicitly normalized inputs."""
    from signconsole.data.dataset import collate

    engine = trainer_module.Engine(small_profile(), trainer_module.EventBus(), data=small_data)
    engine.device = torch.device("cpu")
    engine.model = engine.forward_model = real_build_model(
        engine.profile.model, FEATURE_DIM, len(small_data.vocabulary)
    )
    batch = collate([small_data.train[i] for i in range(4)])
    loss, _, output = engine.compute_loss(batch)
    log_probs = output.logits.log_softmax(-1).transpose(0, 1)
    expected = torch.nn.functional.ctc_loss(
        log_probs, batch.targets, output.lengths, batch.target_lengths, reduction="mean"
    )
    torch.testing.assert_close(loss, expected)


def test_double_normalization_is_named_before_training(
    tmp_path: Path, small_profile, small_data, train
) -> None:
    """Seed 002: features standardized in the dataset are standardized again."""
    root = tmp_path / "standardized"
    for split, dataset in (
        ("train", small_data.train),
        ("dev", small_data.dev),
        ("test", small_data.test),
    ):
        folder = root / "features" / split
        folder.mkdir(parents=True)
        for index, entry in enumerate(dataset.entries):
            # What the seeds' MediaPipeFeatureDataset stored: already-normalized [T, 6516].
            np.save(folder / f"{entry.id}.npy", dataset[index].features.numpy())
        target = annotation_path(root, split)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(annotation_path(small_data.root, split).read_text())
    profile = small_profile(f"data.corpus={str(root)!r}", "training.max_steps=2")
    assert profile.data.normalization == "corpus_stats"
    data = prepare_data(profile)
    checks, _ = preflight(profile)
    [check] = [c for c in checks if c.name == "normalization"]
    assert check.status == "fail" and "already standardized" in check.detail

    bus = trainer_module.EventBus()
    seen: list = []
    bus.subscribe(seen.append)
    trainer_module.Engine(profile, bus, runs_dir=tmp_path / "runs", data=data).run()
    [alarm] = [e for e in seen if isinstance(e, AlarmRaised) and e.kind == "double_normalization"]
    assert alarm.step == 0 and "normalizes them again" in alarm.message
    # The same data declared as already normalized trains without the alarm.
    clean = small_profile(
        f"data.corpus={str(root)!r}",
        "data.normalization=none",
        "data.ignore=[]",
        "training.max_steps=2",
    )
    assert "double_normalization" not in [c.name for c in preflight(clean)[0] if c.status == "fail"]


class EmptyIndexToWord(Vocabulary):
    """Seed 003's Vocabulary: word2idx filled, idx2word never updated."""

    def decode(self, ids):
        index_to_word: dict[int, str] = {}  # never filled
        return [index_to_word[i] for i in ids if i in index_to_word]


@pytest.mark.slow
def test_empty_index_to_word_map_is_caught(small_profile, small_data, runs_dir) -> None:
    broken = EmptyIndexToWord(small_data.vocabulary.tokens)
    data = dataclasses.replace(small_data, vocabulary=broken)
    # The doctor's round trip catches it without training ...
    from signconsole.engine.doctor import _vocabulary

    check = _vocabulary(data)
    assert check.status == "fail" and "encode->decode" in check.detail
    # ... and training shows it as soon as the model emits labels that decode to nothing.
    # Long enough for this small model to leave the CTC plateau and emit letters (~step 125).
    profile = small_profile(
        "training.max_steps=200",
        "training.max_epochs=1000",
        "training.eval_every=25",
        "optimizer.learning_rate=3e-3",
    )
    bus = trainer_module.EventBus()
    seen: list = []
    bus.subscribe(seen.append)

    def stop_once_seen(event) -> None:  # the alarm is what this test waits for
        if isinstance(event, AlarmRaised) and event.kind == "blank_only":
            bus.send(Stop(reason="alarm seen", source="test"))

    bus.subscribe(stop_once_seen)
    trainer_module.Engine(profile, bus, runs_dir=runs_dir, data=data).run()
    alarms = [e for e in seen if isinstance(e, AlarmRaised) and e.kind == "blank_only"]
    assert alarms and {a.severity for a in alarms} == {"error"}  # no plateau warning first
    assert "index->gloss" in alarms[0].message


def test_a_nan_batch_is_skipped_named_and_weights_stay_finite(
    small_profile, small_data, runs_dir
) -> None:
    """Seed 002's symptom: NaN reaches the model. The step is skipped, the module and batch named."""
    poisoned_id = small_data.train.entries[3].id

    class Poisoned(SequenceDataset):
        def raw_item(self, index, synthesized=True, shipped=True, epoch=None):
            item = super().raw_item(index, synthesized, shipped, epoch)
            if item.id == poisoned_id:  # a NaN nose coordinate, as a broken extractor writes
                item.landmarks = item.landmarks.clone()
                item.landmarks[2, 0, 0] = math.nan
            return item

    train_split = copy.copy(small_data.train)
    train_split.__class__ = Poisoned
    data = dataclasses.replace(small_data, train=train_split)
    bus = trainer_module.EventBus()
    seen: list = []
    bus.subscribe(seen.append)
    profile = small_profile("training.max_steps=6", "health.nonfinite_pause_after=0")
    engine = trainer_module.Engine(profile, bus, runs_dir=runs_dir, data=data)
    engine.run()
    alarms = [e for e in seen if isinstance(e, AlarmRaised) and e.kind == "nonfinite"]
    assert alarms, "a NaN batch must raise the nonfinite alarm"
    assert all(poisoned_id in alarm.batch_ids for alarm in alarms)
    assert alarms[0].stage.startswith("fusion"), alarms[0].message  # first module to see NaN
    assert "step skipped" in alarms[0].message
    assert all(torch.isfinite(p).all() for p in engine.model.parameters())


def test_an_exploding_learning_rate_alarms_and_pauses(small_profile, train) -> None:
    profile = small_profile(
        "optimizer.learning_rate=100",  # the largest a profile accepts
        "optimizer.grad_clip=0.0",
        "optimizer.name=sgd",
        "optimizer.momentum=0.0",
        "training.max_steps=40",
        "health.nonfinite_pause_after=2",
    )
    trained = train(profile, stop_when_paused)
    found = set(kinds(trained))
    assert found & {"grad_explode", "nonfinite"}, found
    assert all(torch.isfinite(p).all() for p in trained.engine.model.parameters())
    if "nonfinite" in found:  # repeated non-finite steps pause the run instead of burning time
        assert trained.of(StateChanged, state="paused")


def test_ctc_infeasible_sequences_are_reported(small_profile, small_data, runs_dir) -> None:
    """More labels than output frames (20x the letters in the same frames): reported with ids and
    left out of the loss, which stays finite, instead of silently zeroed."""
    train_split = copy.copy(small_data.train)
    train_split.targets = [t * 20 if i % 2 else t for i, t in enumerate(train_split.targets)]
    data = dataclasses.replace(small_data, train=train_split)
    bus = trainer_module.EventBus()
    seen: list = []
    bus.subscribe(seen.append)
    trainer_module.Engine(
        small_profile("training.max_steps=3"), bus, runs_dir=runs_dir, data=data
    ).run()
    [alarm] = [e for e in seen if isinstance(e, AlarmRaised) and e.kind == "ctc_infeasible"]
    assert alarm.batch_ids[0] == small_data.train.entries[1].id
    assert f"{len(train_split.targets) // 2} sequences ({small_data.train.entries[1].id}, " in (
        alarm.message
    )
    assert "left out of the loss and its gradient" in alarm.message
    from signconsole.events import StepLogged

    logged = [e for e in seen if isinstance(e, StepLogged)]
    assert logged and all(math.isfinite(e.loss) and math.isfinite(e.grad_norm) for e in logged)
    # Left out for real: a masked inf loss still sends NaN through the backward pass.
    assert not [e for e in seen if isinstance(e, AlarmRaised) and e.kind == "nonfinite"]


def test_ctc_needs_one_blank_between_repeated_labels_of_the_same_sample_only() -> None:
    from signconsole.engine.losses import ctc_min_lengths

    # "abb", "b", "ccc", "": the b that ends the first sample and the b of the second are
    # neighbours in the concatenated targets but belong to different samples.
    targets = torch.tensor([1, 2, 2, 2, 3, 3, 3])
    lengths = torch.tensor([3, 1, 3, 0])
    assert ctc_min_lengths(targets, lengths).tolist() == [4, 1, 5, 0]


def test_ctc_loss_leaves_out_exactly_the_samples_too_short_to_align() -> None:
    from signconsole.engine.losses import ctc_loss
    from signconsole.models.contract import ModelOutput

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 4)
    targets, target_lengths = torch.tensor([1, 2, 2, 1, 2, 2]), torch.tensor([3, 3])
    # "abb" needs 4 frames: the first sample has them, the second only 3.
    loss = ctc_loss(ModelOutput(logits, torch.tensor([4, 3]), None), targets, target_lengths)
    alone = torch.nn.functional.ctc_loss(
        logits[:1].log_softmax(-1).transpose(0, 1), targets[:3], [4], [3], reduction="sum"
    )
    assert torch.isfinite(loss) and torch.allclose(loss, alone / 3)


def test_an_infeasible_sample_gets_no_gradient_and_the_others_a_finite_one() -> None:
    from signconsole.engine.losses import ctc_loss
    from signconsole.models.contract import ModelOutput

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 4, requires_grad=True)
    targets, target_lengths = torch.tensor([1, 2, 2, 1, 2, 2]), torch.tensor([3, 3])
    ctc_loss(ModelOutput(logits, torch.tensor([4, 3]), None), targets, target_lengths).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0].abs().sum() > 0 and logits.grad[1].abs().sum() == 0

    logits.grad = None  # every sample infeasible: a zero loss, a zero (finite) gradient
    lengths = torch.tensor([3, 3])
    loss = ctc_loss(ModelOutput(logits, lengths, None), targets, target_lengths)
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_doctor_flags_ctc_infeasible_lengths(small_profile, small_data) -> None:
    from signconsole.engine.doctor import _ctc_lengths

    model = real_build_model(small_profile().model, FEATURE_DIM, len(small_data.vocabulary))
    assert _ctc_lengths(model, small_data, stride=4).status == "pass"
    long_targets = copy.copy(small_data)
    train_split = copy.copy(small_data.train)
    train_split.targets = [
        t * 20 for t in train_split.targets
    ]  # 20x the letters in the same frames
    long_targets.train = train_split
    check = _ctc_lengths(model, long_targets, stride=4)
    assert check.status == "fail" and "fewer output frames" in check.detail


# ------------------------------------------------------------------------ no false alarms


@pytest.mark.slow
def test_a_healthy_demo_student_run_raises_no_alarm(small_profile, train) -> None:
    profile = small_profile(
        "model.architecture=mobilenet_student",
        "model.hidden=128",
        "model.fusion_dim=32",
        "model.width_multiplier=0.25",
        "training.max_steps=160",
        "training.max_epochs=1000",
        "training.eval_every=40",
        "training.log_every=5",
        "schedule.name=cosine",
        "schedule.warmup_steps=20",
        "optimizer.learning_rate=2e-3",
    )
    trained = train(profile)
    assert trained.of(AlarmRaised) == [], [(a.kind, a.message) for a in trained.of(AlarmRaised)]
    assert trained.result.best_error_rate < 1.0
