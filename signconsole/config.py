"""The typed profile: every section and key a profile may hold, with defaults and meaning.

These frozen dataclasses are the schema; `signconsole.profile` loads TOML into them and reports
every problem with file, line, key and a "did you mean". Each field's comment is its reference
documentation (README's profile reference is generated from the same words).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["teacher", "student", "distill"]
Normalization = Literal["none", "per_sample", "corpus_stats"]
Coordinates = Literal["raw", "shoulder"]
LandmarkGroups = tuple[str, ...]
# The groups data.ignore may name, in the order of the landmark layout (data/layout.py).
LANDMARK_GROUPS = ("pose", "left_hand", "right_hand", "face")
OptimizerName = Literal["adam", "adamw", "sgd"]
ScheduleName = Literal["constant", "cosine", "step", "plateau", "cyclic"]
Precision = Literal["fp32", "bf16", "fp16"]
AdaptMethod = Literal["temporal_mean", "spatial_mean", "temporal_max"]
WerNormalization = Literal["none", "phoenix"]
AlphaSchedule = Literal["constant", "linear"]
LoaderKind = Literal["auto", "processes", "threads"]


@dataclass(frozen=True)
class FingerspellConfig:
    lang: str = "ase"  # sign language code of the lexicon (ase, gsg, bzs, ...)
    seed: int = 0  # the corpus is a pure function of (lang, seed, counts)
    train: int = 600  # training sequences (with data.synthesis: slots spelled anew each epoch)
    dev: int = 80  # dev sequences, words disjoint from train
    test: int = 80  # test sequences, words disjoint from train and dev


@dataclass(frozen=True)
class SynthesisConfig:
    enabled: bool = False  # train on sequences spelled anew every epoch (data.corpus = "fingerspell" only; a folder corpus trains on its files)
    random_share: float = 0.5  # share of training slots that spell random letter strings
    random_letters: tuple[int, int] = (2, 12)  # letters in a random string, inclusive
    widen: float = 1.5  # variation ranges (speed, trims, rotations, noise) x the stored corpus's


@dataclass(frozen=True)
class DataConfig:
    corpus: str = "fingerspell"  # Phoenix-layout directory, or "fingerspell" (built-in corpus)
    features: str = ""  # folder of the feature files ({split}/{id}.npz, .npy or .pose) apart from the annotations; "" = CORPUS/features
    normalization: Normalization = "corpus_stats"  # applied once, in the data pipeline
    coordinates: Coordinates = "raw"  # units of the spatial block: raw or shoulder-centred
    batch_size: int = 16  # sequences per batch
    max_frames: int = 0  # longer sequences are skipped and reported; 0 = no limit
    bucket_width: int = 8  # frames per length bucket for batching
    num_workers: int = 1  # workers preparing training batches ahead; 0 = in the training thread
    loader: LoaderKind = "auto"  # workers are "processes" (forked, Linux) or "threads"; "auto" = processes where fork is safe
    ignore: LandmarkGroups = ()  # groups the model never sees (face, pose, left_hand, right_hand): not derived, 0 in the vector; needs corpus_stats
    wer_normalization: WerNormalization = "none"  # "phoenix": official hypothesis cleaning
    augment: bool = False  # train split: new rotation/scale/shift/speed/noise every epoch
    augment_rotation: float = 8.0  # degrees, +-
    augment_noise: float = 0.01  # landmark noise std in shoulder widths
    fingerspell: FingerspellConfig = field(default_factory=FingerspellConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)


@dataclass(frozen=True)
class PretrainedConfig:
    path: str = (
        ""  # checkpoint, state dict, run dir or glob of run dirs (newest); "" = from scratch
    )
    adapt: AdaptMethod = "temporal_mean"  # how I3D 3D kernels become 1D
    allow_partial: bool = False  # a load that matches nothing is an error unless true


@dataclass(frozen=True)
class ModelConfig:
    # a built-in (mobilenet_student, i3d_teacher, bilstm), "package.module:Class" or
    # "path/model.py:Class" (relative to the profile file): see the model contract in README.md
    architecture: str = "mobilenet_student"
    hidden: int = (
        256  # width of the fusion output and of the BiLSTM output (hidden//2 per direction); even
    )
    fusion_dim: int = 64  # per-modality encoder width
    lstm_layers: int = 1  # stacked BiLSTM layers after the convolutional stages
    dropout: float = 0.1  # dropout in fusion, between stages and before the classifier
    temporal_stride: int = 4  # total downsampling in time (1, 2 or 4); never collapses time
    width_multiplier: float = 1.0  # scales convolutional channels
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)
    args: dict[str, Any] = field(
        default_factory=dict
    )  # keyword arguments of the model's constructor


# The [model] keys only the built-in architectures read; a user model takes [model.args] instead.
BUILTIN_MODEL_KEYS = (
    "hidden",
    "fusion_dim",
    "lstm_layers",
    "dropout",
    "temporal_stride",
    "width_multiplier",
)


@dataclass(frozen=True)
class OptimizerConfig:
    name: OptimizerName = "adamw"  # optimizer
    learning_rate: float = 1e-3  # peak learning rate (after warmup)
    weight_decay: float = 1e-4  # decoupled for adamw, L2 for adam/sgd
    momentum: float = 0.9  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adam/adamw moment decay
    grad_clip: float = 1.0  # max total grad norm; 0 = off
    stage_lr: dict[str, float] = field(default_factory=dict)  # per-stage LR multipliers


@dataclass(frozen=True)
class ScheduleConfig:
    name: ScheduleName = "cosine"  # learning-rate schedule after warmup
    warmup_steps: int = 100  # linear warmup from warmup_start_factor * lr
    warmup_start_factor: float = 0.1  # warmup starts at this fraction of the peak lr
    min_lr: float = 1e-5  # floor of cosine
    step_size: int = 1000  # step schedule: steps between decays
    gamma: float = 0.5  # step/plateau decay factor
    patience: int = 3  # plateau: evaluations without improvement before decay
    cycle_steps: int = 2000  # cyclic: steps per triangle


@dataclass(frozen=True)
class TrainingConfig:
    max_epochs: int = 30  # passes over the training split
    max_steps: int = 0  # 0 = limited by epochs only
    max_minutes: float = 0.0  # wall-clock budget; 0 = none
    eval_every: int = 0  # steps between evaluations; 0 = each epoch
    log_every: int = 10  # steps between logged metrics (.item() syncs only here)
    grad_accumulation: int = 1  # batches per optimizer step
    seed: int = 0  # seeds torch and python RNGs (model init, dropout, batch order)
    deterministic: bool = False  # deterministic algorithms (slower; exact CPU reruns)
    device: str = "auto"  # auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps
    precision: Precision = "fp32"  # bf16/fp16 autocast on CUDA only
    compile: bool = False  # torch.compile the model
    nproc: int = 1  # processes (GPUs) on this machine: >1 runs torchrun, as `run --nproc N`
    early_stopping: int = 0  # stop after N evaluations without dev WER improvement; 0 = off
    beam_width: int = 5  # beam search width for sample decodes and evaluation
    sample_decodes: int = 6  # dev samples decoded and shown per evaluation
    checkpoint_every: int = 0  # steps between "last" checkpoints; 0 = each evaluation
    checkpoint_minutes: float = 10.0  # also refresh "last" after this much training time; 0 = off


@dataclass(frozen=True)
class StageUnfreeze:
    epoch: int  # epoch (0-based) at whose start the stages unfreeze
    unfreeze: tuple[str, ...]  # stage names


@dataclass(frozen=True)
class FreezeConfig:
    frozen: tuple[str, ...] = ()  # stages frozen at start
    freeze_until: str = ""  # freeze every stage up to and including this one
    schedule: tuple[StageUnfreeze, ...] = ()  # explicit unfreezing at epochs
    stages: int = 0  # generated: N equal phases over max_epochs, each after the first unfreezes the next frozen group, output side first; 0 = off

    def training_at_start(self, order: tuple[str, ...] | list[str]) -> list[str]:
        """The stages of `order` (input to output) that train in the first epoch: neither in
        `frozen` nor up to `freeze_until`, or unfrozen by a schedule entry at epoch 0. Names
        that are not stages are the caller's to report."""
        frozen = set(self.frozen)
        if self.freeze_until in order:
            frozen |= set(order[: list(order).index(self.freeze_until) + 1])
        for entry in self.schedule:
            if entry.epoch == 0:
                frozen -= set(entry.unfreeze)
        return [name for name in order if name not in frozen]

    def all_frozen_message(self, order: tuple[str, ...] | list[str]) -> tuple[str, str]:
        """(key, message) for a freeze that leaves no stage training at the start."""
        key = "freeze.freeze_until" if self.freeze_until else "freeze.frozen"
        return key, (
            f"every stage is frozen ({', '.join(order)}), so nothing would train; leave at "
            "least one training (freeze fewer, or unfreeze one at epoch 0 in [[freeze.schedule]])"
        )


@dataclass(frozen=True)
class HealthConfig:
    nonfinite_pause_after: int = (
        3  # non-finite steps in a row before the console pauses (headless: ends, failed); 0 = never
    )
    grad_norm_explode: float = 100.0  # total grad norm above this is an alarm
    grad_norm_vanish: float = 1e-3  # grad norm below this (after warmup) is an alarm
    logit_std_min: float = 0.01  # logits spread below this: output signal death (seed 000)
    collapse_similarity: float = 0.995  # mean cosine of consecutive encoder frames (seed 003)
    blank_only_after_evals: int = (
        4  # all-blank decodes warn from this evaluation on (and epoch 3, step 500)
    )
    overfit_samples: int = 5  # doctor: training sequences the overfit test must learn to 0%
    overfit_max_steps: int = 600  # doctor: steps the overfit test may take before it fails


@dataclass(frozen=True)
class DistillConfig:
    teacher: str = ""  # the teacher: run directory, checkpoint, or glob of run dirs (newest match)
    temperature: float = 4.0  # softens teacher and student posteriors
    alpha: float = 0.7  # weight of the KD term; 1 - alpha weighs CTC
    alpha_schedule: AlphaSchedule = "constant"  # "linear": the KD weight falls from alpha to 0 at the planned last step (the teacher guides early, the labels decide the end)


@dataclass(frozen=True)
class OutputConfig:
    runs_dir: str = "runs"  # where run directories land (relative to the working directory)


@dataclass(frozen=True)
class Profile:
    name: str  # run name (default: the profile file's stem)
    kind: Kind  # teacher, student or distill
    description: str = ""  # shown in the profile picker
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    source: str = ""  # the file it was loaded from (not a TOML key)
