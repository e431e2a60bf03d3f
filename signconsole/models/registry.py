"""`model.architecture` -> a model class, built-in or the user's, and the one way models are built.

An architecture is one of:
- a built-in name (`mobilenet_student`, `i3d_teacher`, `bilstm`);
- an importable class, `"package.module:ClassName"`;
- a class in a file, `"path/to/model.py:ClassName"`, relative to the profile file.

Every model is built the same way: `cls(input_dim=F, num_classes=V, **args)`, where `args` is the
profile's `[model.args]` table, checked against the constructor's signature first so a typo is one
line with a did-you-mean instead of a TypeError deep inside the user's code. The built-in models
take their arguments from the `[model]` keys they have always used (hidden, fusion_dim, ...), and
`[model.args]` may override those.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from torch import nn

from signconsole.config import BUILTIN_MODEL_KEYS, ModelConfig
from signconsole.errors import UserError
from signconsole.models.bilstm import BiLSTMBaseline
from signconsole.models.names import BUILTIN_NAMES
from signconsole.models.student import MobileNetStudent
from signconsole.models.teacher import I3DTeacher
from signconsole.models.user_code import exit_while_importing, printed_while_importing


class ModelBuildError(UserError):
    """The architecture cannot be found, imported or constructed; the message says how to fix it."""


def _builtin(name: str, cls: type[nn.Module]) -> Callable[..., nn.Module]:
    """A factory with the user-model calling convention around a built-in class.

    Its keyword arguments are the `[model]` keys the built-ins read, with ModelConfig's defaults,
    so the signature check treats built-in and user models alike.
    """
    from signconsole.data.layout import LAYOUT
    from signconsole.models.base import validate_config

    defaults = {f.name: f.default for f in fields(ModelConfig) if f.name in BUILTIN_MODEL_KEYS}

    def factory(*, input_dim: int, num_classes: int, **args: Any) -> nn.Module:
        if input_dim != LAYOUT.dim:
            raise ModelBuildError(
                f"model.architecture = {name!r} reads the {LAYOUT.dim}-value landmark feature "
                f"layout, but the data has {input_dim} values per frame; use your own model "
                '("path/model.py:Class") for other features'
            )
        config = replace(ModelConfig(architecture=name), **{**defaults, **args})
        try:
            validate_config(config, num_classes)
        except ValueError as error:
            raise ModelBuildError(str(error)) from None
        return cls(config, num_classes)

    parameters = [
        inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=value)
        for key, value in defaults.items()
    ]
    factory.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("input_dim", inspect.Parameter.KEYWORD_ONLY, annotation=int),
            inspect.Parameter("num_classes", inspect.Parameter.KEYWORD_ONLY, annotation=int),
            *parameters,
        ]
    )
    factory.__qualname__ = cls.__qualname__
    return factory


BUILTIN: dict[str, type[nn.Module]] = {
    "mobilenet_student": MobileNetStudent,
    "i3d_teacher": I3DTeacher,
    "bilstm": BiLSTMBaseline,
}
assert tuple(BUILTIN) == BUILTIN_NAMES
ARCHITECTURES = tuple(BUILTIN)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's code comes from: what the run records to rebuild it later."""

    architecture: str  # as the profile gives it (file paths made absolute)
    kind: str  # "builtin", "module" or "file"
    factory: Callable[..., nn.Module]
    file: Path | None  # the Python file that defines a user model
    sha256: str  # of that file; "" for built-ins

    @property
    def is_user_code(self) -> bool:
        return self.kind != "builtin"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_architecture(architecture: str) -> tuple[str, str]:
    target, sep, name = architecture.rpartition(":")
    if not sep or not target or not name:
        raise ModelBuildError(
            f"model.architecture = {architecture!r}: expected a built-in name "
            f'({", ".join(BUILTIN)}), "package.module:ClassName" or "path/model.py:ClassName"'
        )
    return target, name


def is_file_architecture(architecture: str) -> bool:
    return ":" in architecture and architecture.rpartition(":")[0].endswith(".py")


def resolve_architecture(architecture: str, base_dir: Path | None = None) -> ModelSource:
    """Find the class an architecture names (importing the user's code), or raise one line."""
    if architecture in BUILTIN:
        return ModelSource(
            architecture, "builtin", _builtin(architecture, BUILTIN[architecture]), None, ""
        )
    if ":" not in architecture:
        close = difflib.get_close_matches(architecture, BUILTIN, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ModelBuildError(
            f"model.architecture = {architecture!r} is not a built-in model ({', '.join(BUILTIN)})"
            f'{hint}; your own model is "path/model.py:ClassName" or "package.module:ClassName"'
        )
    target, class_name = split_architecture(architecture)
    if is_file_architecture(architecture):
        path = Path(target).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        module = import_model_file(path.resolve(), architecture)
        file, kind = path.resolve(), "file"
    else:
        # The profile's folder and the working directory are searched too, as `python -m`
        # would: the `signconsole` script's own sys.path[0] is its bin/ folder.
        extra = [str(p) for p in (base_dir, Path.cwd()) if p is not None]
        sys.path[:0] = extra
        try:
            module = importlib.import_module(target)
            module = _reload_if_changed(module)
        except (Exception, SystemExit) as error:  # the user's import: theirs to see in one line
            raise ModelBuildError(
                f"model.architecture = {architecture!r}: cannot import {target!r}: "
                f"{type(error).__name__}: {error}"
            ) from None
        finally:
            for path in extra:
                sys.path.remove(path)
        source_file = getattr(module, "__file__", None)
        file, kind = (Path(source_file) if source_file else None), "module"
    cls = getattr(module, class_name, None)
    if cls is None:
        classes = [n for n, v in vars(module).items() if inspect.isclass(v)]
        close = difflib.get_close_matches(class_name, classes, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else f"; classes there: {classes or 'none'}"
        raise ModelBuildError(
            f"model.architecture = {architecture!r}: no {class_name!r} in {file or target}{hint}"
        )
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise ModelBuildError(
            f"model.architecture = {architecture!r}: {class_name} is not a torch.nn.Module class"
        )
    architecture_out = f"{file}:{class_name}" if kind == "file" else architecture
    return ModelSource(
        architecture_out, kind, cls, file, file_sha256(file) if file and file.exists() else ""
    )


_IMPORTED: dict[str, str] = {}  # module name -> sha256 of its file when imported


def _reload_if_changed(module: Any) -> Any:
    """A long-lived console imports a user package once; an edit between two runs must give
    the second run the new code (and the run must record the code that trained)."""
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file():
        return module
    digest = file_sha256(Path(file))
    seen = _IMPORTED.setdefault(module.__name__, digest)
    if seen != digest:
        module = importlib.reload(module)
        _IMPORTED[module.__name__] = digest
    return module


def import_model_file(path: Path, architecture: str) -> Any:
    """Import a user's model file as its own module (named after its content, so a changed file
    is a new module and two runs in one process never share a stale class)."""
    if not path.is_file():
        raise ModelBuildError(
            f"model.architecture = {architecture!r}: {path} does not exist (file paths are "
            "relative to the profile file)"
        )
    digest = file_sha256(path)[:16]
    module_name = f"signconsole_user_model_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelBuildError(f"model.architecture = {architecture!r}: {path} is not importable")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and typing look their module up here
    # The file's folder on sys.path while it runs, so `from my_layers import X` beside it works.
    sys.path.insert(0, str(path.parent))
    try:
        with printed_while_importing() as printed:
            spec.loader.exec_module(module)
    except SystemExit as error:  # script code at module level: not a reason to end signconsole
        del sys.modules[module_name]
        raise ModelBuildError(exit_while_importing(path, error, printed.getvalue())) from None
    except SyntaxError as error:
        del sys.modules[module_name]
        raise ModelBuildError(
            f"{path}:{error.lineno}: syntax error in your model file: {error.msg}"
        ) from None
    except Exception as error:
        del sys.modules[module_name]
        line = _user_line(error, path)
        raise ModelBuildError(
            f"{path}{line}: importing your model file failed: {type(error).__name__}: {error}"
        ) from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def _user_line(error: BaseException, path: Path) -> str:
    """':LINE' of the deepest frame of the traceback that lies in the user's file."""
    frames = [f for f in inspect.getinnerframes(error.__traceback__) if Path(f.filename) == path]
    return f":{frames[-1].lineno}" if frames else ""


def model_arguments(config: ModelConfig, source: ModelSource) -> dict[str, Any]:
    """The keyword arguments besides input_dim and num_classes."""
    if source.kind == "builtin":
        legacy = {key: getattr(config, key) for key in BUILTIN_MODEL_KEYS}
        return {**legacy, **config.args}
    return dict(config.args)


def check_arguments(source: ModelSource, args: dict[str, Any]) -> None:
    """Every `[model.args]` key must be a constructor parameter and every required one given."""
    try:
        signature = inspect.signature(source.factory)
    except (TypeError, ValueError):
        return  # a C extension class: nothing to check against
    params = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
    where = f"model.architecture = {source.architecture!r}"
    for name in ("input_dim", "num_classes"):
        if name not in params and not takes_any:
            raise ModelBuildError(
                f"{where}: the constructor must accept `{name}` as a keyword argument "
                f"(signconsole passes input_dim = features per frame and num_classes = vocabulary "
                f"size with blank); its signature is {signature}"
            )
    if not takes_any:
        for key in args:
            if key not in params or key in ("input_dim", "num_classes"):
                choices = [n for n in params if n not in ("input_dim", "num_classes")]
                close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
                hint = f"; did you mean `{close[0]}`?" if close else f"; it takes: {choices}"
                if key in ("input_dim", "num_classes"):
                    hint = "; signconsole sets it from the data and vocabulary"
                raise ModelBuildError(f"model.args.{key}: not an argument of {where}{hint}")
    missing = [
        name
        for name, p in params.items()
        if p.default is inspect.Parameter.empty
        and name not in args
        and name not in ("input_dim", "num_classes")
        and p.kind is not inspect.Parameter.POSITIONAL_ONLY
    ]
    if missing:
        raise ModelBuildError(
            f"{where}: missing required argument{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}: add {' and '.join(f'`{m} = ...`' for m in missing)} "
            "under [model.args]"
        )


def build_model(
    config: ModelConfig, input_dim: int, num_classes: int, base_dir: Path | None = None
) -> nn.Module:
    """Build the model a profile's model section describes; `num_classes` counts the blank (0)."""
    return build_from_source(
        resolve_architecture(config.architecture, base_dir), config, input_dim, num_classes
    )


def build_from_source(
    source: ModelSource, config: ModelConfig, input_dim: int, num_classes: int
) -> nn.Module:
    args = model_arguments(config, source)
    check_arguments(source, args)
    try:
        model = source.factory(input_dim=input_dim, num_classes=num_classes, **args)
    except ModelBuildError:
        raise
    except (Exception, SystemExit) as error:  # the user's constructor: one line, its place
        line = _user_line(error, source.file) if source.file else ""
        raise ModelBuildError(
            f"{source.file or source.architecture}{line}: building the model failed: "
            f"{type(error).__name__}: {error}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelBuildError(f"{source.architecture}: did not build a torch.nn.Module")
    return model


__all__ = [
    "ARCHITECTURES",
    "BUILTIN",
    "ModelBuildError",
    "ModelSource",
    "build_from_source",
    "build_model",
    "check_arguments",
    "resolve_architecture",
]
