"""`signconsole doctor`: the checks that need no training (the overfit test that follows them
is engine/overfit.py).

Each check returns a `Check` (pass / warn / fail, what was measured, what to do), so the command
prints one table and exits non-zero when anything failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from signconsole.config import Profile
from signconsole.data.corpus import CorpusError
from signconsole.data.layout import LAYOUT
from signconsole.data.normalize import check_input
from signconsole.data.prepare import PreparedData, Progress, prepare_data
from signconsole.data.readers import FeatureFileError, read_sequence
from signconsole.data.vocabulary import count_of
from signconsole.engine.health import HINTS
from signconsole.models.contract import model_stages
from signconsole.profile_model import ignored_builtin_keys

Status = str  # "pass", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""


def _data_files(data: PreparedData, progress: Progress | None) -> list[Check]:
    """Every feature file readable, finite and well-shaped; detection rates per landmark group."""
    problems: list[str] = []
    present = {name: 0.0 for name in LAYOUT.landmark_groups()}
    frames = 0
    datasets = [("train", data.train), ("dev", data.dev)]
    if data.test is not None:
        datasets.append(("test", data.test))
    total = sum(len(ds) for _, ds in datasets)
    done = 0
    for split, dataset in datasets:
        for path in dataset.paths:
            done += 1
            if progress and done % 50 == 0:
                progress("reading every feature file", done, total)
            try:
                sequence = read_sequence(path)
            except FeatureFileError as error:
                problems.append(f"{split}: {error}")
                continue
            if sequence.mask is not None:
                frames += len(sequence.mask)
                for name, group in LAYOUT.landmark_groups().items():
                    present[name] += float(sequence.mask[:, group].any(axis=1).sum())
    checks = []
    if problems:
        checks.append(
            Check(
                "feature files",
                "fail",
                f"{len(problems)} of {total} unreadable: " + problems[0],
                "re-extract or rebuild those sequences",
            )
        )
    else:
        checks.append(Check("feature files", "pass", f"{total} files read, shapes and values ok"))
    if frames:
        rates = ", ".join(f"{name} {count / frames:.0%}" for name, count in present.items())
        status = "warn" if present["pose"] / frames < 0.5 else "pass"
        checks.append(
            Check(
                "landmark detection (share of frames)",
                status,
                rates,
                "few pose detections: check the extraction" if status == "warn" else "",
            )
        )
    return checks


def _feature_statistics(data: PreparedData) -> list[Check]:
    sample = [data.train.raw_features(i) for i in range(min(64, len(data.train)))]
    features = torch.cat([s[0] for s in sample])
    valid = torch.cat([s[1] for s in sample])
    state = check_input(features, valid)
    blocks = ", ".join(
        f"{name} {state.block_mean[name]:+.2g}±{state.block_std[name]:.2g}"
        for name in state.block_mean
    )
    checks = [Check("raw feature statistics (mean±std per block)", "pass", blocks)]
    mode = data.train.normalization
    if state.looks_standardized and mode != "none":
        checks.append(
            Check(
                "normalization",
                "fail",
                f"input is already standardized and data.normalization = {mode!r} "
                "normalizes it again (seed 002: NaN/Inf in full training)",
                'set data.normalization = "none" for this corpus',
            )
        )
    else:
        normalized = torch.stack(
            [data.train[i].features.abs().max() for i in range(min(64, len(data.train)))]
        ).max()
        status = "warn" if float(normalized) > 1e3 else "pass"
        checks.append(
            Check(
                "normalization",
                status,
                f"{mode}: largest normalized value {float(normalized):.3g}",
                "values this large overflow in fp16: check the statistics"
                if status == "warn"
                else "",
            )
        )
    return checks


def _vocabulary(data: PreparedData) -> Check:
    vocabulary = data.vocabulary
    failures = vocabulary.round_trip_failures(data.train.corpus.glosses("train"))
    if vocabulary.tokens[0] != "<blank>" or failures:
        return Check(
            "vocabulary",
            "fail",
            f"{len(failures)} training sequences do not survive encode->decode"
            + (f", e.g. {' '.join(failures[0])!r}" if failures else ""),
            "the index->gloss map must be filled for every gloss (seed 003)",
        )
    unknown = sum(data.dev.unknown.values())
    detail = (
        f"{count_of(len(vocabulary) - 1, data.unit)} + blank at 0; every training sequence "
        "round-trips"
    )
    if unknown:
        detail += f"; {unknown} dev gloss occurrences unknown to it (scored as errors)"
    return Check("vocabulary", "pass", detail)


def _ctc_lengths(model, data: PreparedData, stride: float) -> Check:
    from signconsole.engine.preflight import infeasible_samples

    infeasible, worst = infeasible_samples(model, [data.train, data.dev], stride)
    if infeasible:
        return Check(
            "CTC output lengths",
            "fail",
            f"{len(infeasible)} sequences have fewer output frames than labels (+repeats), "
            f"e.g. {infeasible[0]}",
            "downsample time less (model.temporal_stride for the built-in models)",
        )
    return Check(
        "CTC output lengths",
        "pass",
        f"every sequence has enough output frames (tightest: {worst:.1f}x its labels)",
    )


def _model(profile: Profile, data: PreparedData) -> tuple[list[Check], object | None]:
    """Build the model exactly as a run does and call it on one real batch (the contract)."""
    from signconsole.engine import setup
    from signconsole.errors import UserError
    from signconsole.models.contract import model_stages, parameters_per_stage
    from signconsole.models.registry import build_model

    probe = setup.probe_batch(data.train, profile.data.batch_size)
    base = Path(profile.source).parent if profile.source else None
    try:
        model = build_model(
            profile.model, int(probe.features.shape[-1]), len(data.vocabulary), base
        )
    except UserError as error:
        return [Check("model", "fail", str(error), "fix model.architecture or [model.args]")], None
    try:
        report = setup.check_contract(model, probe, len(data.vocabulary), torch.device("cpu"), "")
    except UserError as error:
        lines = [line.removeprefix(": ") for line in str(error).splitlines()]
        return [
            Check("model contract", "fail", line, "see the model contract in README.md")
            for line in lines
        ], None
    per_stage = parameters_per_stage(model_stages(model))
    checks = [
        Check(
            "parameters",
            "pass",
            f"{sum(per_stage.values()) / 1e6:.2f}M: "
            + ", ".join(f"{name} {count:,}" for name, count in per_stage.items()),
        )
    ]
    if report.normalized:
        checks.append(
            Check(
                "model contract",
                "fail",
                "forward returns log-probabilities (logsumexp over V is 0 on every frame)"
                if report.normalized == "log_softmax"
                else "forward returns probabilities (non-negative, summing to 1 on every frame)",
                f"return raw logits, no {report.normalized} in forward: the loss applies "
                "log_softmax once (seed 001)",
            )
        )
    elif report.input_ignored:
        checks.append(
            Check(
                "model contract",
                "warn",
                "the output did not change when the input did (one real batch against noise)",
                "forward() must use its features; a zero-initialised classifier also does this",
            )
        )
    elif report.collapsed:
        checks.append(
            Check(
                "model contract",
                "fail",
                "every output frame is identical along time: the time axis is pooled away",
                "keep T' frames (no AdaptiveAvgPool1d(1) over time; seed 003)",
            )
        )
    else:
        checks.append(
            Check("model contract", "pass", f"one real batch: T/T' = {report.stride:.1f}")
        )
    checks.append(_ctc_lengths(model, data, report.stride))
    return checks, model


def preflight(
    profile: Profile, progress: Progress | None = None
) -> tuple[list[Check], PreparedData | None]:
    """The checks that need no training."""
    try:
        data = prepare_data(profile, progress)
    except (CorpusError, FeatureFileError, ValueError) as error:
        return [Check("data", "fail", str(error), "fix the corpus or data.corpus")], None
    checks = [
        Check(
            "data",
            "pass",
            f"{data.root}: "
            + ", ".join(
                f"{name} {len(ds)}"
                for name, ds in (("train", data.train), ("dev", data.dev), ("test", data.test))
                if ds is not None
            ),
        )
    ]
    checks += _data_files(data, progress)
    checks += _feature_statistics(data)
    checks.append(_vocabulary(data))
    model_checks, model = _model(profile, data)
    checks += model_checks
    if model is None:
        return checks, data
    checks.append(_pretrained(profile, model, data))
    checks.append(_freeze(profile, model))
    ignored = ignored_builtin_keys(profile)
    if ignored:
        checks.append(Check("model keys", "warn", ignored, HINTS["ignored_keys"]))
    if profile.kind == "distill":
        checks.append(_teacher(profile, data))
    return checks, data


def _pretrained(profile: Profile, model, data: PreparedData) -> Check:
    from signconsole.models.pretrained import (
        PretrainedError,
        load_pretrained,
        profile_pretrained,
    )

    config = profile_pretrained(profile)
    if not config.path:
        return Check("pretrained weights", "pass", "none configured: training from scratch")
    try:
        report = load_pretrained(
            model,
            model_stages(model),
            config,
            list(data.vocabulary.tokens),
            profile.model.architecture,
        )
    except PretrainedError as error:
        return Check("pretrained weights", "fail", str(error), "fix model.pretrained")
    partial = [s.stage for s in report.stages.values() if s.tensors and s.kept_initial]
    detail = report.summary()
    if partial:
        detail += f"; starting from initialization: {', '.join(partial)}"
    return Check(
        "pretrained weights",
        "warn" if partial or report.notes else "pass",
        detail + "".join(f"; {note}" for note in report.notes),
        "expected for stages the checkpoint does not have (e.g. fusion, lstm, classifier from I3D)"
        if partial
        else "",
    )


def _teacher(profile: Profile, data: PreparedData) -> Check:
    import torch

    from signconsole.engine.distill import TeacherError, load_teacher
    from signconsole.models.pretrained import PretrainedError

    try:
        teacher = load_teacher(
            profile, list(data.vocabulary.tokens), data.stats, torch.device("cpu")
        )
    except (TeacherError, PretrainedError) as error:
        return Check("distillation teacher", "fail", str(error), "fix distill.teacher")
    return Check(
        "distillation teacher",
        "pass",
        f"{teacher.checkpoint}: {teacher.profile.model.architecture}, "
        f"{teacher.parameters / 1e6:.2f}M parameters; vocabulary and normalization match; "
        f"T = {profile.distill.temperature}, alpha = {profile.distill.alpha}"
        + (" falling to 0" if profile.distill.alpha_schedule == "linear" else ""),
    )


def _freeze(profile: Profile, model) -> Check:
    from signconsole.engine.freeze import StageControl, StageError

    try:
        control = StageControl(model_stages(model), profile.freeze, profile.training.max_epochs)
    except StageError as error:
        return Check("freeze stages", "fail", str(error), "fix the [freeze] table")
    frozen = control.initially_frozen
    schedule = "; ".join(
        f"epoch {epoch}: {', '.join(names)}" for epoch, names in control.schedule_text()
    )
    return Check(
        "freeze stages",
        "pass",
        (f"frozen at start: {', '.join(frozen)}" if frozen else "all stages train")
        + (f"; unfreezing {schedule}" if schedule else ""),
    )
