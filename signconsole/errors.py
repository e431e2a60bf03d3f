"""Which exceptions are the user's to fix, and the one line each becomes."""

from __future__ import annotations


def user_error_lines(error: BaseException) -> list[str] | None:
    """Lines to print for an expected user error, or None for a bug (let it raise)."""
    from signconsole.data.corpus import CorpusError
    from signconsole.data.readers import FeatureFileError
    from signconsole.data.vocabulary import UnknownGlossError
    from signconsole.profile import ProfileError

    if isinstance(error, ProfileError):
        return [str(problem) for problem in error.problems]
    if isinstance(error, CorpusError | FeatureFileError | UnknownGlossError | UserError):
        return [str(error)]
    if isinstance(error, OSError) and error.filename and error.strerror:
        # A path the user gave is a file where a folder is needed, read-only, full, ...
        return [f"{error.filename}: {error.strerror.lower()}; check the path and its permissions"]
    return None


class UserError(ValueError):
    """Anything else the user must fix (a bad argument, a missing run); the message says how."""
