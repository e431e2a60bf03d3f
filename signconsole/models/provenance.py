"""Which code built a run's model, kept with the run so the model can be rebuilt later.

A user model is code outside signconsole that can change or vanish after the run. The run records
the class path and the sha256 of the defining file, and keeps a copy of that file under
`<run>/model/`. Rebuilding (eval, decode, resume, a distillation teacher) uses the original file
while its hash still matches, else the run's copy, and says which and why.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signconsole.models.registry import (
    ModelBuildError,
    ModelSource,
    file_sha256,
    resolve_architecture,
    split_architecture,
)

COPY_DIR = "model"


def record_source(source: ModelSource, run_dir: Path) -> dict[str, Any]:
    """Copy a user model's file into the run; return what checkpoints store about the source."""
    record: dict[str, Any] = {"architecture": source.architecture, "kind": source.kind}
    if source.file is not None and source.file.is_file():
        target = run_dir / COPY_DIR / source.file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            shutil.copyfile(source.file, target)
        record.update(file=str(source.file), sha256=source.sha256, copy=str(target))
    return record


@dataclass
class RebuiltSource:
    source: ModelSource
    note: str  # "" when the original code was used unchanged


def source_for_run(
    architecture: str, recorded: dict[str, Any] | None, run_dir: Path | None
) -> RebuiltSource:
    """The code to rebuild a recorded model with: the original while unchanged, else the copy."""
    if recorded is None or not recorded.get("sha256"):
        return RebuiltSource(resolve_architecture(architecture), "")
    architecture = recorded["architecture"]  # absolute: the run may be used from anywhere
    original = Path(recorded["file"])
    copy = Path(recorded["copy"]).name
    copy_path = (run_dir / COPY_DIR / copy) if run_dir is not None else Path(recorded["copy"])
    if original.is_file() and file_sha256(original) == recorded["sha256"]:
        return RebuiltSource(resolve_architecture(architecture), "")
    why = "changed since the run" if original.is_file() else "is missing"
    if not copy_path.is_file():
        raise ModelBuildError(
            f"the model's source {original} {why} and the run's copy {copy_path} is gone too; "
            "restore the file the run was trained with (sha256 "
            f"{recorded['sha256'][:12]}…)"
        )
    if file_sha256(copy_path) != recorded["sha256"]:
        raise ModelBuildError(
            f"the run's copy of the model source {copy_path} does not match the recorded "
            f"sha256 {recorded['sha256'][:12]}…; restore the file the run was trained with"
        )
    _, class_name = split_architecture(recorded["architecture"])
    source = resolve_architecture(f"{copy_path}:{class_name}")
    note = f"model source {original} {why}; rebuilt from the run's copy {copy_path}"
    return RebuiltSource(source, note)
