"""The profile reference (README) generated from the schema in config.py: every key with its
default and the comment written beside it, so documentation and code cannot drift apart.

    python -m signconsole.profile_reference            # print the table
    python -m signconsole.profile_reference --write    # refresh it in README.md
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing

from signconsole.config import Profile

_COMMENT = re.compile(r"^\s*(\w+):.*?#\s*(.+)$")


def _comments(cls: type) -> dict[str, str]:
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = _COMMENT.match(line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
    return comments


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "(required)"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_default_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}"
    return str(value)


def _default_value(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def rows(cls: type = Profile, prefix: str = "") -> list[tuple[str, str, str]]:
    hints = typing.get_type_hints(cls)
    comments = _comments(cls)
    out = []
    for field in dataclasses.fields(cls):
        if field.name == "source":
            continue
        tp = hints[field.name]
        if dataclasses.is_dataclass(tp):
            out.extend(rows(tp, f"{prefix}{field.name}."))
            continue
        choices = ""
        if typing.get_origin(tp) is typing.Literal:
            choices = " (" + " \\| ".join(f"`{c}`" for c in typing.get_args(tp)) + ")"
        out.append(
            (f"{prefix}{field.name}", _default(field), comments.get(field.name, "") + choices)
        )
    return out


def markdown() -> str:
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, default, meaning in rows():
        lines.append(f"| `{key}` | `{default}` | {meaning} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- profile-reference -->", "<!-- /profile-reference -->"


def readme_block(readme_text: str) -> str:
    """The generated table as it currently stands in the README."""
    start = readme_text.index(BEGIN) + len(BEGIN)
    return readme_text[start : readme_text.index(END)].strip("\n") + "\n"


def write_readme(path: str = "README.md") -> None:
    from pathlib import Path

    text = Path(path).read_text()
    start = text.index(BEGIN) + len(BEGIN)
    Path(path).write_text(text[:start] + "\n" + markdown() + text[text.index(END) :])


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        write_readme()
    else:
        print(markdown(), end="")
