"""Where in the user's own code an error happened, so a user model's failure is one line that
points at their file instead of a traceback through torch and signconsole."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import sysconfig
import traceback
from collections.abc import Iterator
from pathlib import Path

# Frames under these folders are not the user's: signconsole, the stdlib and installed
# packages (numpy, rich, ...: an error surfacing there is not the user's line to fix, and
# blaming it would hide a traceback worth reading). A user's own package installed editable
# (`pip install -e`) lives in their project folder, so it still counts as theirs.
_PACKAGE = str(Path(__file__).resolve().parents[1]) + "/"
_NOT_USER = tuple(
    {_PACKAGE}
    | {
        str(Path(folder).resolve()) + "/"
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (folder := sysconfig.get_paths().get(key))
    }
)


def user_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of `error`'s traceback in code that is neither torch, signconsole,
    the standard library nor an installed package: the user's model (file or package), or
    None."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        name = str(Path(frame.filename).resolve()) if frame.filename[:1] == "/" else ""
        if name and "/torch/" not in name and not name.startswith(_NOT_USER):
            return frame
    return None


def where(error: BaseException) -> str:
    """' (file:line)' of the user's frame of `error`, or ''."""
    frame = user_frame(error)
    return f" ({frame.filename}:{frame.lineno})" if frame else ""


def first_line(error: BaseException, limit: int = 300) -> str:
    """`error`'s message cut to one line (torch's messages run over several)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextlib.contextmanager
def printed_while_importing() -> Iterator[io.StringIO]:
    """Hold what the user's file prints while it is imported: argparse's `usage: signconsole
    ...` on a bad command line would pass for signconsole's own. Passed on as it was printed
    when the import ends without SystemExit (the caller says what the file printed then)."""
    held = io.StringIO()
    with contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
        try:
            yield held
        except SystemExit:
            raise
        except BaseException:
            _pass_on(held)
            raise
    _pass_on(held)


def _pass_on(held: io.StringIO) -> None:
    if held.getvalue():
        sys.stderr.write(held.getvalue())


def exit_while_importing(path: Path, error: SystemExit, printed: str) -> str:
    """The one line for a model file that ended the process while being imported (script code
    at module level: sys.exit, argparse's parse_args on signconsole's command line)."""
    code = "" if error.code is None else repr(error.code)
    lines = [line for line in printed.strip().splitlines() if line.strip()]
    # argparse writes "PROG: error: ...": the message without the borrowed program name.
    said = re.sub(r"^\S+: error: ", "", lines[-1]) if lines else ""
    return (
        f"{path}{_line_in(error, path)}: the file called sys.exit({code}) while being imported"
        + (f" after printing {said[:200]!r}" if said else "")
        + " (guard script code with if __name__ == '__main__')"
    )


def _line_in(error: BaseException, path: Path) -> str:
    lines = [
        f.lineno for f in traceback.extract_tb(error.__traceback__) if Path(f.filename) == path
    ]
    return f":{lines[-1]}" if lines else ""
