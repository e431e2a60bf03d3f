"""Training losses: CTC (log_softmax applied here, exactly once) and knowledge distillation.

Both take raw logits. The model never normalizes its output (seed 001: log_softmax applied twice,
or never, left a teacher at 100% WER), so this module is the one place probabilities are made.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from signconsole.config import DistillConfig
from signconsole.models.contract import ModelOutput


def ctc_min_lengths(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Frames CTC needs per sample: one per label plus one blank between each repeated pair.

    `targets` in CTC's concatenated form. Vectorized: it runs every step, and a Python loop over
    the batch's samples cost ~16 small tensor ops a sample."""
    targets, lengths = targets.cpu().long(), target_lengths.cpu().long()
    sample = torch.repeat_interleave(torch.arange(len(lengths)), lengths)  # owner of each label
    # A repeat: two neighbouring labels that are equal and belong to the same sample.
    repeated = (targets[1:] == targets[:-1]) & (sample[1:] == sample[:-1])
    repeats = torch.zeros_like(lengths).index_add_(0, sample[1:], repeated.long())
    return lengths + repeats


def ctc_loss(
    output: ModelOutput, targets: torch.Tensor, target_lengths: torch.Tensor
) -> torch.Tensor:
    """Mean over feasible samples of CTC / target length. Samples with fewer output frames than
    their labels need are left out (CTC would be inf for them); the engine reports them."""
    log_probs = output.logits.float().log_softmax(-1)
    lengths, target_lengths = output.lengths.cpu(), target_lengths.cpu()
    feasible = lengths >= ctc_min_lengths(targets, target_lengths)
    if not feasible.all():
        # Left out before CTC, not masked after it: an infeasible sample's loss is inf and its
        # gradient NaN, and a mask (where, * 0) keeps that NaN in the backward pass.
        if not feasible.any():
            return log_probs.sum() * 0.0  # nothing to learn from: a zero, finite gradient
        labels = torch.repeat_interleave(feasible, target_lengths)
        targets = targets[labels.to(targets.device)]
        log_probs = log_probs[feasible.to(log_probs.device)]
        lengths, target_lengths = lengths[feasible], target_lengths[feasible]
    ctc = F.ctc_loss(
        log_probs.transpose(0, 1),
        targets.to(log_probs.device),
        lengths,
        target_lengths,
        blank=0,
        reduction="none",
        zero_infinity=False,  # every sample left is feasible: an inf now is a real fault
    )
    return (ctc / target_lengths.to(ctc.device).clamp(min=1)).mean()


def resample_time(
    probs: torch.Tensor, lengths: torch.Tensor, target_lengths: torch.Tensor, frames: int
) -> torch.Tensor:
    """Resample per-frame distributions [B, T, V] with `lengths` valid frames to `target_lengths`
    valid frames (padded to `frames`), by linear interpolation between the two nearest source
    frames.

    Frame centres are aligned, not frame edges: target frame j sits at source position
    (j + 0.5) * L / L' - 0.5, clamped to the valid range, as in `F.interpolate(...,
    align_corners=False)`. A mix of two distributions is a distribution, so every resampled
    frame still sums to 1. Equal lengths return the input frames unchanged.
    """
    batch = probs.shape[0]
    device = probs.device
    source = lengths.to(device=device, dtype=torch.float32)[:, None]
    target = target_lengths.to(device=device, dtype=torch.float32)[:, None].clamp(min=1)
    j = torch.arange(frames, device=device, dtype=torch.float32)[None, :]
    position = ((j + 0.5) * source / target - 0.5).clamp(min=0)
    position = torch.minimum(position, (source - 1).clamp(min=0))
    low = position.floor().long()
    high = torch.minimum(low + 1, (source - 1).clamp(min=0).long())
    weight = (position - low.float())[..., None]
    index = torch.arange(batch, device=device)[:, None]
    resampled = (1 - weight) * probs[index, low] + weight * probs[index, high]
    valid = j < target_lengths.to(device)[:, None]
    return torch.where(valid[..., None], resampled, 0.0)


def distillation_loss(
    student: ModelOutput, teacher: ModelOutput, temperature: float
) -> torch.Tensor:
    """T^2 * KL(teacher || student) per frame, averaged over the student's valid frames.

    Both sides are softened by the temperature (Hinton et al. 2015); T^2 keeps the gradient scale
    independent of T. Teacher posteriors are resampled to the student's frames when their output
    lengths differ (different temporal strides). Padding frames never count.
    """
    frames = student.logits.shape[1]
    teacher_probs = (teacher.logits.float() / temperature).softmax(-1)
    if teacher.logits.shape[1] != frames or not torch.equal(
        teacher.lengths.cpu(), student.lengths.cpu()
    ):
        teacher_probs = resample_time(teacher_probs, teacher.lengths, student.lengths, frames)
    student_log_probs = (student.logits.float() / temperature).log_softmax(-1)
    # xlogy: 0 * log 0 = 0 for classes the teacher rules out completely.
    per_frame = (torch.xlogy(teacher_probs, teacher_probs) - teacher_probs * student_log_probs).sum(
        -1
    )
    lengths = student.lengths.to(per_frame.device)
    valid = torch.arange(frames, device=per_frame.device)[None, :] < lengths[:, None]
    total = torch.where(valid, per_frame, 0.0).sum()
    return temperature**2 * total / valid.sum().clamp(min=1)


def kd_weight(config: DistillConfig, step: int, total_steps: int) -> float:
    """The weight of the KD term at `step` (0-based, the step being taken); 1 - it weighs CTC.

    "linear" falls from `alpha` to 0 at the last step. On the demo, a constant 0.7 got the
    student off the CTC plateau sooner (dev LER 19.4% against 96.7% at step 152) and then held it
    to its teacher's mistakes (1.89% test against 1.08% with "linear" and 0.81% alone): teacher
    guidance early, labels at the end."""
    if config.alpha_schedule == "constant" or total_steps <= 1:
        return config.alpha
    return config.alpha * max(0.0, 1.0 - step / (total_steps - 1))
