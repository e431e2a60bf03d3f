"""Profiles: every shipped profile loads; every bad profile gives file, line, key and a fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from signconsole.profile import (
    ProfileError,
    load_profile,
    profile_from_dict,
    profile_to_dict,
    profile_to_toml,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "profiles"


@pytest.mark.parametrize("path", sorted((ROOT / "profiles").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_profiles_load(path: Path) -> None:
    profile = load_profile(path)
    assert profile.kind in ("teacher", "student", "distill")
    assert profile.name == path.stem


def test_phoenix_templates_differ_from_each_other_only_where_meant() -> None:
    teacher = load_profile(ROOT / "profiles" / "phoenix-teacher.toml")
    student = load_profile(ROOT / "profiles" / "phoenix-student.toml")
    assert teacher.data == student.data  # one data path to edit, in phoenix-teacher.toml
    assert teacher.data.wer_normalization == "phoenix"


def problems_of(path: Path, overrides: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        load_profile(path, overrides)
    return [str(p) for p in caught.value.problems]


def test_malformed_toml_names_file_and_line() -> None:
    [problem] = problems_of(FIXTURES / "malformed.toml")
    assert problem.startswith(f"{FIXTURES / 'malformed.toml'}:4:")
    assert "invalid TOML" in problem


def test_unknown_key_suggests_the_closest() -> None:
    [problem] = problems_of(FIXTURES / "unknown_key.toml")
    assert ":4: optimizer.learnin_rate: unknown key; did you mean `learning_rate`?" in problem


def test_wrong_type_says_what_was_expected() -> None:
    [problem] = problems_of(FIXTURES / "wrong_type.toml")
    assert ":4: data.batch_size: expected an integer, got a string 'sixteen'" in problem


def test_bad_choice_lists_choices_and_suggests() -> None:
    [problem] = problems_of(FIXTURES / "bad_choice.toml")
    assert "model.architecture" in problem and "did you mean 'mobilenet_student'" in problem


def test_missing_required_kind() -> None:
    [problem] = problems_of(FIXTURES / "missing_kind.toml")
    assert "missing required key `kind`" in problem


def test_missing_parent_profile() -> None:
    [problem] = problems_of(FIXTURES / "extends_missing.toml")
    assert "extends" in problem and "nope.toml" in problem and ":1:" in problem


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text(
        'kind = "student"\n[data]\nbatch_size = -1\nnormalisation = "none"\n'
        "[training]\nmax_epoch = 3\n"
    )
    problems = problems_of(path)
    assert any("normalisation" in p and "normalization" in p for p in problems)
    assert any("max_epoch" in p and "max_epochs" in p for p in problems)


def test_extends_merges_and_child_wins() -> None:
    child = load_profile(FIXTURES / "child.toml")
    parent = load_profile(ROOT / "profiles" / "demo-student.toml")
    assert child.optimizer.learning_rate == 5e-4
    assert child.model == parent.model  # inherited untouched
    assert child.name == "child"


def test_set_overrides_and_bad_override_key() -> None:
    path = ROOT / "profiles" / "demo-student.toml"
    profile = load_profile(path, ["optimizer.learning_rate=3e-4", "model.architecture=bilstm"])
    assert profile.optimizer.learning_rate == 3e-4
    assert profile.model.architecture == "bilstm"
    [problem] = problems_of(path, ("optimizer.learning_rat=1",))
    assert problem.startswith("--set: optimizer.learning_rat: unknown key; did you mean")


def test_cross_field_rules(tmp_path: Path) -> None:
    path = tmp_path / "distill.toml"
    path.write_text('kind = "distill"\n[model]\ntemporal_stride = 3\n')
    problems = problems_of(path)
    assert any("distill.teacher" in p for p in problems)
    assert any("model.temporal_stride" in p and "1, 2 or 4" in p for p in problems)


def test_resolved_profile_round_trips_through_toml(tmp_path: Path) -> None:
    profile = load_profile(ROOT / "profiles" / "demo-teacher.toml")
    written = tmp_path / "profile.toml"
    written.write_text(profile_to_toml(profile))
    again = load_profile(written)
    assert profile_to_dict(again) == profile_to_dict(profile)
    assert profile_from_dict(profile_to_dict(profile)) == again.__class__(
        **{**again.__dict__, "source": ""}
    )


@pytest.mark.parametrize(
    "fixture,needle",
    [
        ("malformed.toml", "invalid TOML"),
        ("unknown_key.toml", "did you mean `learning_rate`"),
        ("wrong_type.toml", "expected an integer"),
        ("missing_data.toml", "corpus directory not found"),
    ],
)
def test_cli_bad_profile_is_one_clear_line_without_traceback(fixture: str, needle: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "signconsole", "run", str(FIXTURES / fixture)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_readme_profile_reference_matches_the_schema() -> None:
    from signconsole.profile_reference import markdown, readme_block

    readme = (ROOT / "README.md").read_text()
    assert readme_block(readme) == markdown(), (
        "README's profile reference is stale: run `python -m signconsole.profile_reference --write`"
    )


def test_worker_processes_where_fork_is_unsafe_are_refused_before_training(monkeypatch) -> None:
    """macOS and Windows: `data.loader = "processes"` is one line at load time, not a failure at
    the first epoch; "auto" falls back to threads there."""
    import signconsole.profile_checks as checks

    monkeypatch.setattr(checks, "worker_processes_available", lambda: False)
    demo = ROOT / "profiles" / "demo-student.toml"
    with pytest.raises(ProfileError) as caught:
        load_profile(demo, ["data.loader=processes"])
    assert any("data.loader" in str(p) and "threads" in str(p) for p in caught.value.problems)
    load_profile(demo, ["data.loader=auto"])  # no problem


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            '[freeze]\nfrozen = ["fusion", "subsample", "lstm", "classifier"]\n',
            ":7: freeze.frozen: every stage is frozen (fusion, subsample, lstm, classifier)",
        ),
        (
            '[freeze]\nfreeze_until = "classifier"\n',
            ":7: freeze.freeze_until: every stage is frozen",
        ),
        (
            '[data]\nignore = ["face", "pose", "left_hand", "right_hand"]\n',
            ":7: data.ignore: ignores every landmark group (pose, left_hand, right_hand, face)",
        ),
        (
            '[data]\nignore = ["nose"]\n',
            ":7: data.ignore: unknown landmark group(s) 'nose'; the groups are pose, left_hand",
        ),
    ],
)
def test_nothing_left_to_train_or_see_is_a_profile_error(
    tmp_path: Path, body: str, needle: str
) -> None:
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\nkind = "student"\n[model]\narchitecture = "bilstm"\n\n' + body)
    [problem] = problems_of(path)
    assert problem.startswith(str(path)) and needle in problem


def test_the_profiles_landmark_groups_are_the_layouts() -> None:
    from signconsole.config import LANDMARK_GROUPS
    from signconsole.data.layout import LAYOUT

    assert set(LANDMARK_GROUPS) == set(LAYOUT.landmark_groups())


def test_inherited_relative_paths_resolve_against_the_file_that_wrote_them(tmp_path: Path) -> None:
    from signconsole.profile import with_absolute_paths

    (tmp_path / "um").mkdir()
    (tmp_path / "um" / "models.py").write_text("")
    (tmp_path / "um" / "base.toml").write_text(
        'name = "base"\nkind = "student"\n[data]\ncorpus = "../corpus"\nfeatures = "feats"\n'
        '[model]\narchitecture = "models.py:Net"\n[model.pretrained]\npath = "w.pt"\n'
    )
    child = tmp_path / "child.toml"
    child.write_text('extends = "um/base.toml"\nname = "child"\n[data]\nfeatures = "mine"\n')
    profile = with_absolute_paths(load_profile(child))
    assert profile.model.architecture == f"{tmp_path / 'um' / 'models.py'}:Net"
    assert profile.data.corpus == str(tmp_path / "corpus")
    assert profile.model.pretrained.path == str(tmp_path / "um" / "w.pt")
    assert profile.data.features == str(tmp_path / "mine")  # the child's own: beside the child


def test_a_builtin_models_args_contradicting_its_own_keys_name_both(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\nkind = "student"\n[model]\narchitecture = "bilstm"\nhidden = 32\n')
    [problem] = problems_of(path, ("model.args.hidden=4",))
    assert problem == (
        f"--set: model.args.hidden: 4 conflicts with model.hidden = 32 ({path}:5); a built-in "
        "model takes one value: keep model.hidden and remove model.args.hidden"
    )
    assert load_profile(path, ["model.args.hidden=32"]).model.hidden == 32  # agreeing: fine


def test_builtin_keys_a_user_model_inherits_are_reported_as_ignored(tmp_path: Path) -> None:
    from signconsole.profile_model import ignored_builtin_keys

    (tmp_path / "net.py").write_text("")
    (tmp_path / "base.toml").write_text(
        'name = "b"\nkind = "student"\n[model]\narchitecture = "bilstm"\nhidden = 32\n'
    )
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\n[model]\narchitecture = "net.py:Net"\n')
    assert ignored_builtin_keys(load_profile(child)) == (
        "model.hidden = 32 is ignored: only the built-in models read it, and your model "
        "(net.py:Net) takes its arguments from [model.args]"
    )
    by_set = load_profile(tmp_path / "base.toml", ["model.architecture=net.py:Net"])
    assert ignored_builtin_keys(by_set).startswith("model.hidden = 32 is ignored")
    assert ignored_builtin_keys(load_profile(tmp_path / "base.toml")) == ""  # built in: read
