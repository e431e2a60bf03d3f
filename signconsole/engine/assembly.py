"""`Engine.setup()`: everything a run is built from, in the order it is built.

Device and process group, data, teacher, the model from its source (checked against the contract
on a real batch), stages, pretrained weights, optimizer, sampler and step counts, LR control,
health, callbacks, then the run directory (which restores a resume) and the DDP wrapper. The
engine's loop (trainer.py) starts once this has run.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch

from signconsole.data.loader import LoaderWorkers
from signconsole.data.prepare import prepare_data
from signconsole.engine import callbacks as cb
from signconsole.engine import preflight, run_files, setup
from signconsole.engine.distill import load_teacher
from signconsole.engine.evaluator import Evaluator
from signconsole.engine.freeze import StageControl, StageError
from signconsole.engine.health import BufferGuard, HealthMonitor
from signconsole.engine.inbox import CommandInbox
from signconsole.engine.run_events import publish_start
from signconsole.engine.schedule import LearningRateControl
from signconsole.engine.setup import resolve_device
from signconsole.errors import UserError
from signconsole.models.contract import EncoderTap, model_stages
from signconsole.models.fusion import reads_only, skip_zero_columns
from signconsole.models.registry import build_from_source
from signconsole.profile import profile_to_toml, with_absolute_paths

if TYPE_CHECKING:
    from signconsole.engine.trainer import Engine


def assemble(engine: Engine) -> None:
    profile, training = engine.profile, engine.profile.training
    torch.manual_seed(training.seed)
    random.seed(training.seed)
    if training.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    engine.device = resolve_device(training.device)
    if engine.dist.enabled:
        engine.dist.start(training.device)  # a no-op when `signconsole run` joined already
        if engine.device.type == "cuda":
            engine.device = torch.device("cuda", engine.dist.local_rank)
    setup.check_precision(training, engine.device)
    setup.share_cpu_cores(profile.data, engine.device)
    if engine.device.type == "cuda":
        torch.backends.cudnn.benchmark = not training.deterministic
    if engine.data is None:
        engine.data = prepare_data(profile, engine.progress)
    data = engine.data
    # The loader workers fork now, while the process holds little more than the data: what
    # exists at the fork is copied on the trainer's first write after it (LoaderWorkers.start).
    engine.loader = LoaderWorkers(
        data.train, engine.device, profile.data.num_workers, profile.data.loader
    )
    engine.loader.start()
    engine.vocabulary = data.vocabulary
    if profile.kind == "distill":
        engine.teacher = load_teacher(
            profile, list(engine.vocabulary.tokens), data.stats, engine.device
        )
    probe = setup.probe_batch(data.train, profile.data.batch_size)
    engine.input_dim = int(probe.features.shape[-1])
    engine.model_source, source_note = run_files.model_source(profile, engine.resume_dir)
    engine.model = build_from_source(
        engine.model_source, profile.model, engine.input_dim, len(engine.vocabulary)
    ).to(engine.device)
    # Columns the data leaves at 0 (ignored groups) are not read by a built-in fusion, and
    # when every model fed the training batches is built in, the batches hold only the others.
    columns = data.train.model_input.columns
    skip_zero_columns(engine.model, columns)
    engine.compact_batches = reads_only(
        engine.model, columns, engine.model_source.is_user_code
    ) and (
        engine.teacher is None
        or reads_only(engine.teacher.model, columns, engine.teacher.user_code)
    )
    engine.loader.compact = engine.compact_batches
    engine.contract = setup.check_contract(
        engine.model, probe, len(engine.vocabulary), engine.device, profile.source or profile.name
    )
    engine.stages = model_stages(engine.model)
    engine.encoder_tap = EncoderTap(engine.stages)
    engine.buffer_guard = BufferGuard(engine.model)
    engine.pretrained_report = (
        setup.load_pretrained_weights(engine.model, engine.stages, profile, engine.vocabulary)
        if profile.model.pretrained.path and engine.resume_dir is None  # resume has its own
        else None
    )
    try:  # a user model's stages are known only now: checked before the run directory exists
        engine.control = StageControl(engine.stages, profile.freeze, training.max_epochs)
        for name in profile.optimizer.stage_lr:
            engine.control.check(name, "optimizer.stage_lr")
    except StageError as error:
        raise StageError(f"{profile.source or profile.name}: {error}") from None
    engine.optimizer = setup.build_optimizer(engine.stages, profile.optimizer)
    engine.scaler = torch.amp.GradScaler(
        "cuda", enabled=training.precision == "fp16" and engine.device.type == "cuda"
    )
    engine.sampler = setup.make_sampler(profile, data.train)
    if not len(engine.sampler):
        raise UserError(f"{data.root}: the train split has no sequences to train on")
    batches_per_rank = len(engine.sampler) // engine.dist.world
    if not batches_per_rank:
        raise UserError(
            f"{data.root}: {len(engine.sampler)} training batches cannot feed "
            f"{engine.dist.world} processes; use fewer processes or a smaller data.batch_size"
        )
    engine.steps_per_epoch, engine.total_steps = setup.step_counts(training, batches_per_rank)
    engine.lr_control = LearningRateControl(
        profile.optimizer.learning_rate, profile.schedule, engine.total_steps
    )
    engine.health = HealthMonitor(
        profile.health,
        profile.schedule.warmup_steps,
        engine.bus.publish,
        clip_norm=profile.optimizer.grad_clip,
    )
    engine.evaluator = Evaluator(engine)
    engine.callbacks = cb.standard_callbacks(training, engine.clock, CommandInbox())
    engine.agreement = next(c for c in engine.callbacks if isinstance(c, cb.RankAgreement))
    engine.profile_toml = profile_to_toml(with_absolute_paths(profile))
    run_files.open_run_dir(engine)
    engine.wrap_model()  # after the stages a new run freezes or a resume restores
    publish_start(engine, source_note)
    preflight.contract_alarms(engine.health, engine.contract)
    preflight.data_alarms(engine)
