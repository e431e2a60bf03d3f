"""Reading profile files: safe text, TOML, `extends` chains, and where each key was set.

Everything here is about files and positions, not about what the keys mean (that is
`signconsole.profile`): a profile is read as bytes with limits (a folder, a pipe, a huge or
binary file is one line, never a hang), parsed, merged with its parents, and every dotted key
is mapped to its file and line so that problems can say where they are.
"""

from __future__ import annotations

import re
import tomllib  # Python 3.11+; pyproject pulls tomli only for older interpreters
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ProfileError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class Origin:
    """Where a key's value came from, for error messages."""

    file: str
    lines: dict[str, int]


MAX_PROFILE_BYTES = 256 * 1024
MAX_KEY_DEPTH = 16
_KEY_PART = r"""(?:[A-Za-z0-9_\-]+|"[^"\n]*"|'[^'\n]*')"""
_DEEP_KEY = re.compile(
    rf"^[ \t]*\[*[ \t]*(?:{_KEY_PART}[ \t]*\.[ \t]*){{{MAX_KEY_DEPTH},}}", re.MULTILINE
)


def _read_profile_text(path: Path, problems: list[Problem]) -> str | None:
    """The file's text, or None with the reason in `problems`: a folder, a device or pipe (whose
    read would block or never end), a huge file, a binary or UTF-16 file."""

    def fail(message: str) -> None:
        problems.append(Problem(str(path), None, "", message))

    try:
        if path.is_dir():
            fail("is a folder; give a profile .toml file (see profiles/)")
            return None
        if not path.is_file():
            fail("not a regular file (a pipe or a device?); give a profile .toml file")
            return None
        size = path.stat().st_size
        if size > MAX_PROFILE_BYTES:
            fail(f"{size:,} bytes is too large for a profile (a TOML text file of a few kB)")
            return None
        data = path.read_bytes()
    except OSError as error:
        fail(f"cannot read ({error.strerror or error}); check the path and its permissions")
        return None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        kind = "UTF-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "binary"
        fail(f"not a UTF-8 text file (it looks {kind}); save the profile as UTF-8 TOML")
        return None
    try:
        return data.decode("utf-8-sig")  # a UTF-8 byte-order mark (Windows editors) is harmless
    except UnicodeDecodeError as error:
        fail(
            f"not a UTF-8 text file (byte {error.start} is not UTF-8); "
            "save the profile as UTF-8 TOML"
        )
        return None


def load_with_extends(
    path: Path, problems: list[Problem], chain: tuple[Path, ...]
) -> tuple[dict[str, Any], dict[str, Origin]]:
    if not path.exists():
        problems.append(Problem(str(path), None, "", "profile file not found"))
        return {}, {}
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(p.name for p in (*chain, resolved))
        problems.append(Problem(str(path), None, "extends", f"extends forms a cycle: {cycle}"))
        return {}, {}
    text = _read_profile_text(path, problems)
    if text is None:
        return {}, {}
    deep = _DEEP_KEY.search(text)
    if deep is not None:
        line = text.count("\n", 0, deep.start()) + 1
        problems.append(
            Problem(str(path), line, "", f"a key nested more than {MAX_KEY_DEPTH} levels deep")
        )
        return {}, {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        match = re.search(r"\(at line (\d+), column \d+\)", str(error))
        line = int(match.group(1)) if match else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
        problems.append(Problem(str(path), line, "", f"invalid TOML: {message}"))
        return {}, {}
    lines = _key_lines(text)
    origins = {key: Origin(str(path), lines) for key in dotted_keys(data)}
    parent_name = data.get("extends")
    if parent_name is None:
        return data, origins
    if not isinstance(parent_name, str) or not parent_name.strip() or "\x00" in parent_name:
        problems.append(
            Problem(str(path), lines.get("extends"), "extends", "expected a profile file name")
        )
        return data, origins
    parent_path = (path.parent / parent_name).resolve()
    if not parent_path.exists():
        problems.append(
            Problem(
                str(path),
                lines.get("extends"),
                "extends",
                f"parent profile {parent_name!r} not found (looked for {parent_path})",
            )
        )
        return data, origins
    parent, parent_origins = load_with_extends(parent_path, problems, (*chain, resolved))
    return _merge(parent, data), {**parent_origins, **origins}


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dotted_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(dotted_keys(value, dotted + "."))
    return keys


_HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*([A-Za-z0-9_.\-\"]+)\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """Map dotted keys to the line that sets them. tomllib gives no positions, so scan the text:
    headers and `key =` lines are enough for a profile (no multi-line keys)."""
    lines: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > 1000:  # no real key line is this long; the patterns backtrack on it
            continue
        header = _HEADER.match(line)
        if header:
            table = header.group(1).replace('"', "").replace(" ", "")
            lines.setdefault(table, number)
            continue
        assign = _ASSIGN.match(line)
        if assign:
            key = assign.group(1).replace('"', "")
            lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines


def where_set(origins: dict[str, Origin], key: str) -> tuple[str, int | None]:
    """The file and line that set `key`, or the closest table above it that has one."""
    probe = key
    while probe:
        origin = origins.get(probe)
        if origin is not None:
            return origin.file, origin.lines.get(probe) or origin.lines.get(key)
        probe = probe.rpartition(".")[0]
    any_origin = next(iter(origins.values()), None)
    return (any_origin.file if any_origin else "<profile>"), None


def problem_at(origins: dict[str, Origin], key: str, message: str) -> Problem:
    file, line = where_set(origins, key)
    return Problem(file, line, key, message)
