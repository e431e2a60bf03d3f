"""Profile checks of `[model]` that need to know where keys were set: the architecture (a
built-in name, or a user file that must exist), built-in-only keys beside a user's model, and
a built-in model's [model.args] contradicting its own keys."""

from __future__ import annotations

import difflib
from pathlib import Path

from signconsole.config import BUILTIN_MODEL_KEYS, Profile
from signconsole.models.names import BUILTIN_NAMES
from signconsole.profile_files import Origin, Problem, problem_at, where_set
from signconsole.profile_paths import resolve_path

SET_SOURCE = "--set"  # the origin of a key given on the command line


def architecture_checks(profile: Profile, origins: dict[str, Origin]) -> list[Problem]:
    """What can be known of model.architecture without running the user's code (that happens when
    the model is built: import, class, constructor arguments)."""
    architecture = profile.model.architecture
    if architecture in BUILTIN_NAMES:
        return _builtin_argument_conflicts(profile, origins)
    key = "model.architecture"
    if ":" not in architecture:
        close = difflib.get_close_matches(architecture, BUILTIN_NAMES, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return [
            problem_at(
                origins,
                key,
                f"{architecture!r} is not a built-in model ({', '.join(BUILTIN_NAMES)}); "
                f'{hint}your own model is "path/model.py:ClassName" or "package.module:ClassName"',
            )
        ]
    problems = []
    target, _, name = architecture.rpartition(":")
    if not target or not name.isidentifier():
        problems.append(
            problem_at(origins, key, f'{architecture!r}: expected "path/model.py:ClassName"')
        )
    elif target.endswith(".py"):
        path = resolve_path(profile, target) if profile.source else Path(target)
        if profile.source and not path.is_file():
            what = (
                "is a folder, not a Python file"
                if path.is_dir()
                else "not found (a model file path is relative to the profile file that sets it)"
            )
            problems.append(problem_at(origins, key, f"{path} {what}"))
    # Only keys set beside the architecture: a parent profile's values were for its own model.
    architecture_file = where_set(origins, key)[0]
    for legacy in BUILTIN_MODEL_KEYS:
        if f"model.{legacy}" in origins and where_set(origins, f"model.{legacy}")[0] in (
            architecture_file,
            SET_SOURCE,
        ):
            problems.append(
                problem_at(
                    origins,
                    f"model.{legacy}",
                    "is read by the built-in models only; your model's own arguments go under "
                    f"[model.args] ({legacy} = ... there if its constructor takes it)",
                )
            )
    return problems


def _builtin_argument_conflicts(profile: Profile, origins: dict[str, Origin]) -> list[Problem]:
    """A built-in model takes [model.args] over its [model] keys: both set to different values
    would train with one of them silently, so name both."""
    problems = []
    for name in BUILTIN_MODEL_KEYS:
        key, arg = f"model.{name}", f"model.args.{name}"
        if key not in origins or arg not in origins:
            continue
        set_value, arg_value = getattr(profile.model, name), profile.model.args.get(name)
        if set_value == arg_value:
            continue
        file, line = where_set(origins, key)
        problems.append(
            problem_at(
                origins,
                arg,
                f"{arg_value!r} conflicts with {key} = {set_value!r} "
                f"({file}{f':{line}' if line else ''}); a built-in model takes one value: "
                f"keep {key} and remove {arg}",
            )
        )
    return problems


def ignored_builtin_keys(profile: Profile) -> str:
    """What a user's architecture leaves unused of the built-in-only [model] keys ("" when
    nothing): set by a parent profile (for its own built-in model) or beside an architecture
    given with --set. Set in the same file as the user's architecture they are a profile error
    instead; a value still at its default cannot be told from unset and changes nothing."""
    from signconsole.config import ModelConfig

    model, defaults = profile.model, ModelConfig()
    if model.architecture in BUILTIN_NAMES:
        return ""
    unused = [
        f"model.{name} = {getattr(model, name)!r}"
        for name in BUILTIN_MODEL_KEYS
        if getattr(model, name) != getattr(defaults, name)
    ]
    if not unused:
        return ""
    return (
        f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} ignored: only the built-in "
        f"models read {'it' if len(unused) == 1 else 'them'}, and your model "
        f"({model.architecture.rpartition('/')[2]}) takes its arguments from [model.args]"
    )
