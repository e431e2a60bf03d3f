"""Malformed profiles, generated: each must end as exit 2 and one clear line, never a traceback,
never a hang, never a silent run.

The cases come from the schema itself (every bounded key just outside each end of its range,
every float key NaN and infinite, every int key past 64 bits) plus hand-written families: wrong
types, encodings, extends chains, contradictions, paths that are not files. Each case holds
exactly one problem, so each must print exactly one line, naming the file (or --set) and the key.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from signconsole.cli import main
from signconsole.config import Profile
from signconsole.profile import load_profile
from signconsole.profile_checks import BOUNDS, bound_key, walk

# Valid on its own: every case below adds one problem to it (and no table, so a case may add any).
BASE = 'kind = "student"\n'


@dataclass(frozen=True)
class Case:
    id: str
    write: Callable[[Path], Path]  # builds the profile under a folder, returns the path to run
    key: str = ""  # the key the one line must name ("" = only the file)
    overrides: tuple[str, ...] = ()
    source: str = ""  # the file the line must name, when not the profile itself (a parent)


def text_case(id: str, body: str, key: str = "", overrides: tuple[str, ...] = ()) -> Case:
    def write(folder: Path) -> Path:
        path = folder / f"{id}.toml"
        path.write_text(BASE + body, encoding="utf-8")
        return path

    return Case(id, write, key, overrides)


def bytes_case(id: str, data: bytes) -> Case:
    def write(folder: Path) -> Path:
        path = folder / f"{id}.toml"
        path.write_bytes(data)
        return path

    return Case(id, write)


def defaults() -> dict[str, object]:
    return dict(walk(Profile(name="x", kind="student")))


def assignment(key: str, value: str) -> str:
    """`[a.b]\\nc = value` for a dotted key (TOML text)."""
    table, _, leaf = key.rpartition(".")
    return (f"[{table}]\n" if table else "") + f"{leaf} = {value}\n"


def toml_number(value: float | int) -> str:
    if isinstance(value, float) and value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def range_cases() -> list[Case]:
    """Every bounded scalar key, just below its low end and just above its high end."""
    cases = []
    values = defaults()
    for key, bound in BOUNDS.items():
        if key not in values:
            continue  # list/table patterns: see pattern_cases
        is_int = isinstance(values[key], int)
        outside = []
        if bound.low is not None:
            outside.append(
                bound.low if bound.low_open else (bound.low - 1 if is_int else bound.low - 0.5)
            )
        if bound.high is not None:
            outside.append(
                bound.high if bound.high_open else (bound.high + 1 if is_int else bound.high * 2)
            )
        for value in outside:
            value = int(value) if is_int else float(value)
            text = toml_number(value)
            cases.append(text_case(f"range-{key}={text}", assignment(key, text), key))
    return cases


def pattern_cases() -> list[Case]:
    return [
        text_case("betas-1.5", "[optimizer]\nbetas = [1.5, 0.999]\n", "optimizer.betas[0]"),
        text_case("betas-nan", "[optimizer]\nbetas = [0.9, nan]\n", "optimizer.betas[1]"),
        text_case(
            "stage_lr-negative", "[optimizer.stage_lr]\nfusion = -0.5\n", "optimizer.stage_lr"
        ),
        text_case("stage_lr-inf", "[optimizer.stage_lr]\nfusion = inf\n", "optimizer.stage_lr"),
        text_case(
            "schedule-epoch-negative",
            '[[freeze.schedule]]\nepoch = -1\nunfreeze = ["fusion"]\n',
            "freeze.schedule[0].epoch",
        ),
    ]


def nonfinite_and_huge_cases() -> list[Case]:
    """NaN and infinity in every float key; 2**70 in every int key (TOML allows neither to
    overflow quietly: tomllib reads them as they are)."""
    cases = []
    for key, value in defaults().items():
        if isinstance(value, bool):
            continue
        if isinstance(value, float):
            cases.append(text_case(f"nan-{key}", assignment(key, "nan"), key))
            cases.append(text_case(f"inf-{key}", assignment(key, "-inf"), key))
        elif isinstance(value, int):
            cases.append(text_case(f"huge-{key}", assignment(key, str(2**70)), key))
    return cases


def type_cases() -> list[Case]:
    return [
        text_case("int-as-string", '[data]\nbatch_size = "16"\n', "data.batch_size"),
        text_case("int-as-float", "[data]\nbatch_size = 1.5\n", "data.batch_size"),
        text_case("int-as-bool", "[training]\nseed = true\n", "training.seed"),
        text_case("float-as-list", "[optimizer]\nlearning_rate = [1]\n", "optimizer.learning_rate"),
        text_case(
            "float-as-table", "[optimizer.learning_rate]\nx = 1\n", "optimizer.learning_rate"
        ),
        text_case("float-too-big-int", f"[optimizer]\nweight_decay = {10**400}\n"),
        text_case(
            "bool-as-string", '[training]\ndeterministic = "yes"\n', "training.deterministic"
        ),
        text_case("string-as-int", "name = 5\n", "name"),
        text_case("section-as-scalar", "data = 5\n", "data"),
        text_case("choice-unknown", '[optimizer]\nname = "adamx"\n', "optimizer.name"),
        text_case("choice-wrong-case", '[schedule]\nname = "Cosine"\n', "schedule.name"),
        text_case("betas-one-value", "[optimizer]\nbetas = [0.9]\n", "optimizer.betas"),
        text_case("unknown-key", "[training]\nmax_epoch = 3\n", "training.max_epoch"),
        text_case("unknown-section", "[trainer]\nmax_epochs = 3\n", "trainer"),
        text_case("kind-missing-value", 'kind2 = "x"\n', "kind2"),
        text_case("toml-syntax", "[training\nmax_epochs = 3\n"),
        text_case("toml-duplicate-key", "[training]\nseed = 1\nseed = 2\n"),
        text_case("deep-array", "x = " + "[" * 5000 + "]" * 5000 + "\n"),
        text_case("deep-inline-table", "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n"),
        text_case("deep-dotted-key", ".".join(["a"] * 20000) + " = 1\n"),
        text_case("nul-in-name", 'name = "a\\u0000b"\n', "name"),
        text_case("nul-in-corpus", '[data]\ncorpus = "x\\u0000"\n', "data.corpus"),
        text_case("name-with-slash", 'name = "../escape"\n', "name"),
        text_case("name-empty", 'name = ""\n', "name"),
        text_case("runs-dir-empty", '[output]\nruns_dir = ""\n', "output.runs_dir"),
        text_case("device-unknown", '[training]\ndevice = "tpu"\n', "training.device"),
        text_case("device-bad-index", '[training]\ndevice = "cuda:x"\n', "training.device"),
        text_case("architecture-typo", '[model]\narchitecture = "bilstmm"\n', "model.architecture"),
        text_case(
            "architecture-missing-file",
            '[model]\narchitecture = "nowhere.py:Model"\n',
            "model.architecture",
        ),
    ]


def contradiction_cases() -> list[Case]:
    return [
        text_case(
            "no-end", "[training]\nmax_epochs = 0\nmax_steps = 0\nmax_minutes = 0.0\n", "training"
        ),
        text_case("max-epochs-negative", "[training]\nmax_epochs = -1\n", "training.max_epochs"),
        text_case("distill-without-teacher", "", "distill.teacher", ("kind=distill",)),
        text_case(
            "fp16-on-cpu",
            '[training]\nprecision = "fp16"\ndevice = "cpu"\n',
            "training.precision",
        ),
        text_case(
            "min-lr-above-lr",
            "[optimizer]\nlearning_rate = 1e-4\n[schedule]\nmin_lr = 1e-3\n",
            "schedule.min_lr",
        ),
        text_case(
            "plateau-gamma-1", '[schedule]\nname = "plateau"\ngamma = 1.0\n', "schedule.gamma"
        ),
        text_case(
            "vanish-above-explode",
            "[health]\ngrad_norm_vanish = 10.0\ngrad_norm_explode = 5.0\n",
            "health.grad_norm_vanish",
        ),
        text_case(
            "ignore-without-corpus-stats",
            '[data]\nnormalization = "per_sample"\nignore = ["face"]\n',
            "data.ignore",
        ),
        text_case(
            "linear-kd-weight-without-a-planned-end",
            '[distill]\nteacher = "t"\nalpha_schedule = "linear"\n'
            "[training]\nmax_epochs = 0\nmax_steps = 0\nmax_minutes = 5.0\n",
            "distill.alpha_schedule",
            ("kind=distill",),
        ),
        text_case("hidden-odd", "[model]\nhidden = 63\n", "model.hidden"),
        text_case("stride-3", "[model]\ntemporal_stride = 3\n", "model.temporal_stride"),
        text_case(
            "freeze-more-phases-than-epochs",
            "[training]\nmax_epochs = 3\n[freeze]\nstages = 4\n",
            "freeze.stages",
        ),
        text_case(
            "unfreeze-after-the-end",
            '[training]\nmax_epochs = 3\n[[freeze.schedule]]\nepoch = 3\nunfreeze = ["fusion"]\n',
            "freeze.schedule[0].epoch",
        ),
    ]


def override_cases() -> list[Case]:
    return [
        text_case("set-no-equals", "", "training.seed", ("training.seed",)),
        text_case("set-bare-huge", "", "training.seed", ("training.seed=2**70",)),
        text_case("set-negative", "", "training.max_minutes", ("training.max_minutes=-5",)),
        text_case("set-nan", "", "optimizer.learning_rate", ("optimizer.learning_rate=nan",)),
        text_case("set-into-scalar", "", "name", ("name.x=1",)),
        text_case("set-empty-key-part", "", "a..b", ("a..b=1",)),
    ]


def encoding_cases() -> list[Case]:
    text = BASE + "[training]\nmax_epochs = 3\n"
    return [
        bytes_case("utf16-le-bom", text.encode("utf-16")),
        bytes_case("utf16-be-bom", b"\xfe\xff" + text.encode("utf-16-be")),
        bytes_case("utf16-le-no-bom", text.encode("utf-16-le")),
        bytes_case("latin1", (BASE + 'description = "café"\n').encode("latin-1")),
        bytes_case("random-binary", bytes(range(256)) * 8),
        bytes_case("png-header", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
        bytes_case("gzip", b"\x1f\x8b\x08\x00" + os.urandom(64)),
        bytes_case("empty", b""),
        bytes_case("only-bom", b"\xef\xbb\xbf"),
        bytes_case("too-large", b"# " + b"x" * (300 * 1024) + b"\n"),
    ]


def path_case(id: str, make: Callable[[Path], Path]) -> Case:
    return Case(id, make)


def extends_and_path_cases() -> list[Case]:
    def self_cycle(folder: Path) -> Path:
        path = folder / "self.toml"
        path.write_text('extends = "self.toml"\n' + BASE)
        return path

    def two_cycle(folder: Path) -> Path:
        (folder / "b.toml").write_text('extends = "a.toml"\n' + BASE)
        (folder / "a.toml").write_text('extends = "b.toml"\n' + BASE)
        return folder / "a.toml"

    def long_cycle(folder: Path) -> Path:
        for i in range(10):
            (folder / f"c{i}.toml").write_text(f'extends = "c{(i + 1) % 10}.toml"\n' + BASE)
        return folder / "c0.toml"

    def missing_parent(folder: Path) -> Path:
        (folder / "child.toml").write_text('extends = "nope.toml"\n' + BASE)
        return folder / "child.toml"

    def extends_number(folder: Path) -> Path:
        (folder / "child.toml").write_text("extends = 5\n" + BASE)
        return folder / "child.toml"

    def extends_empty(folder: Path) -> Path:
        (folder / "child.toml").write_text('extends = ""\n' + BASE)
        return folder / "child.toml"

    def extends_folder(folder: Path) -> Path:
        (folder / "sub").mkdir()
        (folder / "child.toml").write_text('extends = "sub"\n' + BASE)
        return folder / "child.toml"

    def extends_binary(folder: Path) -> Path:
        (folder / "parent.toml").write_bytes(b"\x00\x01\x02" * 10)
        (folder / "child.toml").write_text('extends = "parent.toml"\n' + BASE)
        return folder / "child.toml"

    def extends_bad_parent(folder: Path) -> Path:
        (folder / "parent.toml").write_text(BASE + "[training]\nmax_epochs = -3\n")
        (folder / "child.toml").write_text('extends = "parent.toml"\n')
        return folder / "child.toml"

    def a_folder(folder: Path) -> Path:
        (folder / "profiles.toml").mkdir()
        return folder / "profiles.toml"

    def missing(folder: Path) -> Path:
        return folder / "missing.toml"

    def fifo(folder: Path) -> Path:  # a read would block forever
        path = folder / "fifo.toml"
        os.mkfifo(path)
        return path

    def unreadable(folder: Path) -> Path:
        path = folder / "secret.toml"
        path.write_text(BASE)
        path.chmod(0)
        return path

    cases = [
        path_case("extends-self", self_cycle),
        path_case("extends-cycle-2", two_cycle),
        path_case("extends-cycle-10", long_cycle),
        path_case("extends-missing", missing_parent),
        path_case("extends-number", extends_number),
        path_case("extends-empty", extends_empty),
        Case("extends-folder", extends_folder, source="sub"),
        Case("extends-binary", extends_binary, source="parent.toml"),
        Case("extends-bad-parent", extends_bad_parent, "training.max_epochs", source="parent.toml"),
        path_case("profile-is-folder", a_folder),
        path_case("profile-missing", missing),
        path_case("profile-is-fifo", fifo),
        path_case("profile-dev-null", lambda folder: Path("/dev/null")),
    ]
    if os.geteuid() != 0:  # root reads a 0000 file anyway
        cases.append(path_case("profile-unreadable", unreadable))
    return cases


CASES = [
    *range_cases(),
    *pattern_cases(),
    *nonfinite_and_huge_cases(),
    *type_cases(),
    *contradiction_cases(),
    *override_cases(),
    *encoding_cases(),
    *extends_and_path_cases(),
]


def test_there_are_over_a_hundred_distinct_cases() -> None:
    assert len(CASES) >= 100
    assert len({case.id for case in CASES}) == len(CASES)


def test_base_profile_is_valid(tmp_path: Path) -> None:
    """Otherwise every case below would fail for the base's reason, not its own."""
    path = tmp_path / "base.toml"
    path.write_text(BASE)
    assert load_profile(path).kind == "student"


def test_every_numeric_key_has_a_bound() -> None:
    numeric = {
        bound_key(key)
        for key, value in defaults().items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
    patterns = {"optimizer.stage_lr.*", "freeze.schedule[].epoch"}
    assert numeric - set(BOUNDS) == set(), "add a range to profile_checks.BOUNDS"
    assert set(BOUNDS) - numeric - patterns == set(), "BOUNDS names a key config.py lacks"


@pytest.fixture(autouse=True)
def never_train(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A case that validation lets through must fail here, not train for minutes."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation accepted a malformed profile")

    monkeypatch.setattr("signconsole.data.prepare.prepare_data", refuse)
    monkeypatch.chdir(tmp_path)


def run_in_process(case: Case, folder: Path, capsys: pytest.CaptureFixture[str]):
    path = case.write(folder)
    arguments = ["run", str(path)]
    for override in case.overrides:
        arguments += ["--set", override]
    code = main(arguments)
    captured = capsys.readouterr()
    return path, code, captured


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_malformed_profile_is_one_line_and_exit_2(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    path, code, captured = run_in_process(case, tmp_path, capsys)
    elapsed = time.monotonic() - started
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1, lines
    [line] = lines
    assert line.startswith("signconsole: error: ")
    assert "Traceback" not in captured.err and captured.out == ""
    source = case.source or ("--set" if case.id.startswith("set-") else path.name)
    assert source in line, line
    assert case.key in line, line
    assert elapsed < 3, f"{case.id} took {elapsed:.1f} s"


def test_messages_say_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A few lines read as a user reads them: the file, the line, the key, the range."""
    by_id = {case.id: case for case in CASES}

    def line(id: str) -> str:
        case_dir = tmp_path / id
        case_dir.mkdir()
        _, _, captured = run_in_process(by_id[id], case_dir, capsys)
        return captured.err.strip()

    assert line("max-epochs-negative").endswith(
        "max-epochs-negative.toml:3: training.max_epochs: must be in [0, 1000000000], got -1"
    )
    assert "not a UTF-8 text file (it looks UTF-16)" in line("utf16-le-bom")
    assert "not a UTF-8 text file" in line("latin1")
    assert "is a folder" in line("profile-is-folder")
    assert "not a regular file" in line("profile-is-fifo")
    assert "extends forms a cycle: a.toml -> b.toml -> a.toml" in line("extends-cycle-2")
    assert "must be a finite number, got nan" in line("nan-optimizer.learning_rate")
    assert "nested more than 16 levels" in line("deep-dotted-key")
    assert "nested too deeply" in line("deep-array")
    assert "missing required key `kind`" in line("empty")


def test_a_whole_batch_takes_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    for index, case in enumerate(CASES):
        folder = tmp_path / str(index)
        folder.mkdir()
        run_in_process(case, folder, capsys)
    assert time.monotonic() - started < 15, "validation must fail fast, before any training"


SUBPROCESS_CASES = (
    "max-epochs-negative",
    "nan-optimizer.learning_rate",
    "utf16-le-bom",
    "extends-cycle-2",
    "profile-is-fifo",
    "profile-is-folder",
)


@pytest.mark.parametrize("id", SUBPROCESS_CASES)
def test_real_process_exits_2_with_one_line(id: str, tmp_path: Path) -> None:
    case = next(case for case in CASES if case.id == id)
    path = case.write(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "signconsole", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "runs").exists(), "nothing may be created for a bad profile"


def test_profile_dataclasses_are_walked_completely() -> None:
    """`walk` must see every field, or a new key would escape the range checks unnoticed."""
    leaves = defaults()
    for f in dataclasses.fields(Profile):
        if f.name != "source":
            assert any(key == f.name or key.startswith(f.name + ".") for key in leaves), f.name


def test_a_flood_of_problems_is_capped_with_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong file that happens to parse as TOML must not print hundreds of lines."""
    path = tmp_path / "flood.toml"
    path.write_text(BASE + "".join(f"key{i} = {i}\n" for i in range(30)))
    assert main(["run", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 21 and lines[-1].endswith("... and 10 more problems")
