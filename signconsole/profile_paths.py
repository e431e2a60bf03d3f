"""File paths in profiles: each relative to the profile file that wrote it, made absolute where
a run records its profile (so the copy in a run directory points at the same files)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from signconsole.config import Profile
from signconsole.profile_files import Origin

# Keys whose values are file paths relative to the profile file that sets them.
PATH_KEYS = (
    "data.corpus",
    "data.features",
    "model.architecture",
    "model.pretrained.path",
    "distill.teacher",
)


def anchor_inherited_paths(raw: dict[str, Any], origins: dict[str, Origin], root: Path) -> None:
    """Relative paths a parent profile set (through `extends`) made absolute against that
    parent's folder: after the merge only the child's folder is known, and "models.py" written
    in um/base.toml means um/models.py. The child's own paths stay as written (resolve_path)."""
    for key in PATH_KEYS:
        *tables, name = key.split(".")
        table = raw
        for part in tables:
            table = table.get(part) if isinstance(table, dict) else None
        value = table.get(name) if isinstance(table, dict) else None
        origin = origins.get(key)
        if not isinstance(value, str) or not value or origin is None or "\x00" in value:
            continue
        if key == "data.corpus" and value == "fingerspell":
            continue  # the built-in corpus, not a folder
        target, colon, class_name = (
            value.rpartition(":") if key == "model.architecture" else (value, "", "")
        )
        if key == "model.architecture" and not target.endswith(".py"):
            continue  # a built-in name or an importable package
        setter = Path(origin.file)
        if setter.resolve() == root.resolve() or Path(target).expanduser().is_absolute():
            continue
        anchored = str((setter.parent / Path(target).expanduser()).resolve())
        table[name] = f"{anchored}{colon}{class_name}"


def resolve_path(profile: Profile, value: str) -> Path:
    """Paths in a profile are relative to the profile file, so profiles travel with their data."""
    path = Path(value).expanduser()
    if path.is_absolute() or not profile.source:
        return path
    return (Path(profile.source).parent / path).resolve()


def with_absolute_paths(profile: Profile) -> Profile:
    """The same profile with its file paths made absolute, so the copy recorded in a run
    directory still points at the same files from there."""

    def absolute(value: str) -> str:
        return str(resolve_path(profile, value)) if value else value

    data = profile.data
    if data.corpus != "fingerspell":
        data = dataclasses.replace(data, corpus=absolute(data.corpus))
    data = dataclasses.replace(data, features=absolute(data.features))
    pretrained = dataclasses.replace(
        profile.model.pretrained, path=absolute(profile.model.pretrained.path)
    )
    architecture = profile.model.architecture
    target, _, class_name = architecture.rpartition(":")
    if target.endswith(".py"):
        architecture = f"{absolute(target)}:{class_name}"
    return dataclasses.replace(
        profile,
        data=data,
        model=dataclasses.replace(profile.model, pretrained=pretrained, architecture=architecture),
        distill=dataclasses.replace(profile.distill, teacher=absolute(profile.distill.teacher)),
    )
