"""TOML profile -> typed, frozen `Profile`.

One pass collects every problem (unknown key, wrong type, bad choice, bad TOML) with the file, the
line, the dotted key, what was expected and the closest valid key, then raises one
`ProfileError`. Nothing is silently ignored. `extends = "base.toml"` merges a parent profile
(child keys win); `--set section.key=value` overrides win over both.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib  # Python 3.11+; pyproject pulls tomli only for older interpreters
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from signconsole.config import Profile, StageUnfreeze
from signconsole.profile_checks import contradictions, name_problems, value_problems
from signconsole.profile_files import (
    Origin,
    Problem,
    ProfileError,
    dotted_keys,
    load_with_extends,
    problem_at,
)
from signconsole.profile_model import SET_SOURCE, architecture_checks
from signconsole.profile_paths import (
    anchor_inherited_paths,
    resolve_path,
    with_absolute_paths,
)

MAX_PROBLEMS = 20  # past this, the rest are one summary line (a binary-ish file: hundreds)


# A profile is a few kB. tomllib needs seconds per MB of keys (and minutes for keys dotted
# thousands deep), so a larger file, or a deeper key, is refused before it is parsed.
def load_profile(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Profile:
    """Load, merge (extends, overrides), validate; raise ProfileError listing every problem."""
    path = Path(path)
    try:
        return _load_profile(path, overrides)
    except RecursionError:  # tables or arrays nested thousands deep
        raise ProfileError(
            [Problem(str(path), None, "", "nested too deeply to be a profile")]
        ) from None


def _load_profile(path: Path, overrides: list[str] | tuple[str, ...]) -> Profile:
    problems: list[Problem] = []
    raw, origins = load_with_extends(path, problems, chain=())
    # A problem with no line of its own (a required key nobody set) names the profile itself.
    origins = {"": Origin(str(path), {}), **origins}
    if problems:
        raise ProfileError(problems)
    anchor_inherited_paths(raw, origins, path)
    for override in overrides:
        _apply_override(raw, origins, override, problems)
    raw.pop("extends", None)
    raw.setdefault("name", path.stem)
    profile = _build(Profile, raw, "", origins, problems)
    if profile is not None:
        profile = dataclasses.replace(profile, source=str(path))
        values = _value_checks(profile, origins)
        problems.extend(values)
        if not any("NUL" in p.message for p in values):  # the path checks would fail on one
            # One line per key: a value out of range is not also a contradiction.
            reported = {p.key for p in problems}
            problems.extend(
                p
                for p in (*_cross_checks(profile, origins), *architecture_checks(profile, origins))
                if p.key not in reported
            )
    if problems:
        raise ProfileError(_capped(problems))
    assert profile is not None
    return profile


def _capped(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    rest = len(problems) - MAX_PROBLEMS
    return [
        *problems[:MAX_PROBLEMS],
        Problem(problems[0].file, None, "", f"... and {rest} more problems"),
    ]


def _apply_override(
    raw: dict[str, Any], origins: dict[str, Origin], override: str, problems: list[Problem]
) -> None:
    key, sep, value_text = override.partition("=")
    key = key.strip()
    if not sep or not all(key.split(".")):  # "=1", ".x=1", "a..b=1"
        problems.append(Problem(SET_SOURCE, None, override, "expected section.key=value"))
        return
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = (
            value_text.strip()
        )  # a bare word: take it as a string (--set model.architecture=bilstm)
    target = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1], start=1):
        if part not in target:  # a table --set creates is --set's, for error messages
            origins.setdefault(".".join(parts[:depth]), Origin(SET_SOURCE, {}))
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            problems.append(Problem(SET_SOURCE, None, key, f"{part} is not a section"))
            return
    target[parts[-1]] = value
    origins[key] = Origin(SET_SOURCE, {})


def _build(cls: type, raw: Any, prefix: str, origins: dict[str, Origin], problems: list[Problem]):
    """Build dataclass `cls` from a TOML table, recording problems instead of stopping."""
    if not isinstance(raw, dict):
        problems.append(problem_at(origins, prefix.rstrip("."), "expected a table"))
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
            hint = (
                f"; did you mean `{close[0]}`?" if close else f"; valid keys: {', '.join(fields)}"
            )
            problems.append(problem_at(origins, dotted, f"unknown key{hint}"))
            continue
        converted = _convert(hints[key], value, dotted, origins, problems)
        if converted is not _INVALID:
            values[key] = converted
    for name, f in fields.items():
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and name not in values and name not in raw:
            problems.append(
                problem_at(origins, f"{prefix}{name}", f"missing required key `{name}`")
            )
    try:
        return cls(**values)
    except TypeError:  # a required key is missing: already reported above
        return None


_INVALID = object()


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values"
    if origin is dict:
        return f"a table of {_describe(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _convert(tp: Any, value: Any, key: str, origins: dict[str, Origin], problems: list[Problem]):
    def bad(extra: str = "") -> object:
        problems.append(
            problem_at(
                origins,
                key,
                f"expected {_describe(tp)}, got {_type_name(value)} {_short(value)}{extra}",
            )
        )
        return _INVALID

    origin = get_origin(tp)
    if tp is Any:  # [model.args]: whatever the user's constructor takes (checked when built)
        return value
    if origin is types.UnionType:  # e.g. `int | None`: try each
        for arg in get_args(tp):
            probe: list[Problem] = []
            result = _convert(arg, value, key, origins, probe)
            if result is not _INVALID:
                return result
        return bad()
    if origin is Literal:
        choices = get_args(tp)
        if value in choices:
            return value
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
        return bad(f"; did you mean {close[0]!r}?" if close else "")
    if dataclasses.is_dataclass(tp):
        built = _build(tp, value, key + ".", origins, problems)
        return _INVALID if built is None else built
    if origin is tuple:
        if not isinstance(value, list):
            return bad()
        args = get_args(tp)
        element_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        if len(element_types) != len(value):
            return bad()
        items = [
            _convert(t, v, f"{key}[{i}]", origins, problems)
            for i, (t, v) in enumerate(zip(element_types, value, strict=True))
        ]
        return _INVALID if any(i is _INVALID for i in items) else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            return bad()
        value_type = get_args(tp)[1]
        items = {
            k: _convert(value_type, v, f"{key}.{k}", origins, problems) for k, v in value.items()
        }
        return _INVALID if any(v is _INVALID for v in items.values()) else items
    if tp is bool:
        return value if isinstance(value, bool) else bad()
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else bad()
    if tp is float:
        if isinstance(value, float) or (
            isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**1023
        ):
            return float(value)  # a larger int would raise OverflowError here
        return bad()
    if tp is str:
        return value if isinstance(value, str) else bad()
    return bad()


def _value_checks(profile: Profile, origins: dict[str, Origin]) -> list[Problem]:
    """Every value in its range (finite, positive where it must be, within sane bounds)."""
    return [
        problem_at(origins, key, message)
        for key, message in (*value_problems(profile), *name_problems(profile))
    ]


def _cross_checks(profile: Profile, origins: dict[str, Origin]) -> list[Problem]:
    """Rules that involve more than one key (ranges of single keys: signconsole.profile_checks)."""
    problems = [problem_at(origins, key, message) for key, message in contradictions(profile)]

    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            problems.append(problem_at(origins, key, message))

    check(
        re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", profile.training.device) is not None,
        "training.device",
        f"{profile.training.device!r}: expected auto, cpu, cuda, cuda:N (a GPU index) or mps",
    )
    training = profile.training
    # A negative or NaN limit is already reported on its own line.
    if training.max_epochs >= 0 and training.max_steps >= 0 and training.max_minutes >= 0:
        check(
            training.max_epochs > 0 or training.max_steps > 0 or training.max_minutes > 0,
            "training.max_epochs",
            "the run needs an end: set max_epochs, max_steps or max_minutes",
        )
    if profile.kind == "distill":
        check(
            bool(profile.distill.teacher),
            "distill.teacher",
            "a distill profile needs the teacher: a run directory or checkpoint path",
        )
    return problems


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    data = dataclasses.asdict(profile)
    data.pop("source", None)

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(data)


def profile_to_toml(profile: Profile) -> str:
    """The fully resolved profile (every default spelled out), as a run directory records it."""
    import tomli_w

    return tomli_w.dumps(profile_to_dict(profile))


def profile_from_dict(data: dict[str, Any], source: str = "<run>") -> Profile:
    """Rebuild a Profile from its dict form (e.g. from a checkpoint), with the same validation."""
    problems: list[Problem] = []
    origins = {key: Origin(source, {}) for key in dotted_keys(data)}
    profile = _build(Profile, data, "", origins, problems)
    if problems or profile is None:
        raise ProfileError(problems)
    return profile


__all__ = [
    "Problem",
    "Profile",
    "ProfileError",
    "StageUnfreeze",
    "load_profile",
    "profile_from_dict",
    "profile_to_dict",
    "profile_to_toml",
    "resolve_path",
    "with_absolute_paths",
]
