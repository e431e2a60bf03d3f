"""The user's own nn.Module, named in a profile as a user would: built, checked against the model
contract, trained with every alarm watching it, and rebuilt from its run later.

The model files are in tests/user_models/ and are copied beside a profile in a temporary folder,
so the profile names them by a relative path, exactly as in README.md's example."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from signconsole.data.prepare import corpus_directory
from signconsole.engine.doctor import preflight
from signconsole.errors import UserError
from signconsole.events import AlarmRaised, EvalFinished, RunStarted
from signconsole.profile import ProfileError, load_profile

MODELS = Path(__file__).parent / "user_models"
ROOT = Path(__file__).resolve().parent.parent

PROFILE = """\
name = "{name}"
kind = "student"

[data]
batch_size = 8

[data.fingerspell]
train = 24
dev = 8
test = 8

[model]
architecture = "{architecture}"

[model.args]
{args}

[optimizer]
learning_rate = 3e-3

[schedule]
name = "constant"
warmup_steps = 0

[training]
device = "cpu"
max_epochs = 0
max_steps = {steps}
eval_every = {eval_every}
log_every = 1
sample_decodes = 2
beam_width = 2
"""


def user_profile(
    folder: Path,
    architecture: str,
    args: str = "hidden = 64",
    steps: int = 50,
    eval_every: int = 25,
    name: str = "user-model",
) -> Path:
    """A profile in `folder` with the user model files beside it."""
    for source in MODELS.glob("*.py"):
        shutil.copy(source, folder / source.name)
    path = folder / f"{name}.toml"
    path.write_text(
        PROFILE.format(
            name=name, architecture=architecture, args=args, steps=steps, eval_every=eval_every
        )
    )
    return path


# ---------------------------------------------------------------------- building and arguments


def test_a_healthy_user_model_trains_with_no_alarm_and_decodes(tmp_path, train) -> None:
    profile = load_profile(user_profile(tmp_path, "gru_ctc.py:GruCtc"))
    trained = train(profile)
    assert trained.of(AlarmRaised) == []
    # The data ignore the face, yet a user's model is fed the whole 6516-vector it was built
    # for (input_dim), never the built-in models' compact batches of the other columns.
    assert not trained.engine.data.train.model_input.columns.full
    assert not trained.engine.compact_batches
    [started] = trained.of(RunStarted)
    assert started.stages == ("proj", "subsample", "rnn", "head")  # top-level children, in order
    dev = trained.of(EvalFinished, split="dev")
    assert dev[-1].loss < dev[0].loss  # it learns
    assert all(len(e.samples) == 2 for e in dev)  # and its decodes are shown beside references
    run_dir = trained.result.run_dir
    assert (run_dir / "model" / "gru_ctc.py").read_text() == (tmp_path / "gru_ctc.py").read_text()


def test_a_user_model_holding_a_builtin_fusion_is_fed_the_whole_vector(tmp_path, train) -> None:
    """The engine tells its fusion which columns the data fills, but the model also slices the
    vector itself: it must get all 6516 values, not a built-in model's compact batch."""
    trained = train(load_profile(user_profile(tmp_path, "on_fusion.py:OnFusion", steps=3)))
    assert trained.result.status == "finished" and trained.engine.state.step == 3
    assert not trained.engine.compact_batches


def test_model_args_are_checked_against_the_constructor(tmp_path, train) -> None:
    path = user_profile(tmp_path, "gru_ctc.py:GruCtc", args="hiden = 64")
    with pytest.raises(UserError, match=r"model.args.hiden: .* did you mean `hidden`\?"):
        train(load_profile(path))
    path = user_profile(tmp_path, "seed_bugs.py:IgnoresInput", args="bias = 1")
    with pytest.raises(UserError, match="model.args.bias: not an argument"):
        train(load_profile(path))


def test_a_missing_required_argument_is_named(tmp_path, train) -> None:
    (tmp_path / "needs.py").write_text(
        "from torch import nn\n"
        "class Needs(nn.Module):\n"
        "    def __init__(self, input_dim, num_classes, layers):\n"
        "        super().__init__()\n"
    )
    path = user_profile(tmp_path, "needs.py:Needs", args="")
    with pytest.raises(UserError, match=r"missing required argument layers: add `layers = \.\.\.`"):
        train(load_profile(path))


@pytest.mark.parametrize(
    "architecture,message",
    [
        ("nope.py:GruCtc", "nope.py not found"),
        ("models.py:GruCtc", "models.py is a folder, not a Python file"),
        ("gru_ctc.py:GRUCtc", "no 'GRUCtc' in .*did you mean 'GruCtc'"),
        ("bilstmm", "did you mean 'bilstm'"),
        ("torch.nn:Linear", "must accept `input_dim`"),
        ("no_such_package.models:Net", "cannot import 'no_such_package.models'"),
    ],
)
def test_a_bad_architecture_is_one_clear_error(tmp_path, train, architecture, message) -> None:
    (tmp_path / "models.py").mkdir()  # a folder named like a model file
    path = user_profile(tmp_path, architecture, args="")
    with pytest.raises((UserError, ProfileError), match=message):
        train(load_profile(path))


def test_builtin_keys_beside_a_user_model_are_rejected(tmp_path) -> None:
    path = user_profile(tmp_path, "gru_ctc.py:GruCtc")
    with pytest.raises(ProfileError, match=r"model.hidden: is read by the built-in models only"):
        load_profile(path, ["model.hidden=32"])


def test_builtin_keys_inherited_by_a_user_model_are_a_warning_at_the_start(tmp_path, train) -> None:
    path = user_profile(tmp_path, "gru_ctc.py:GruCtc", steps=2, eval_every=2)
    (tmp_path / "parent.toml").write_text('[model]\narchitecture = "bilstm"\nfusion_dim = 16\n')
    path.write_text('extends = "parent.toml"\n' + path.read_text())
    [alarm] = train(load_profile(path)).of(AlarmRaised, kind="ignored_keys")
    assert alarm.step == 0 and alarm.severity == "warning"
    assert alarm.message.startswith("model.fusion_dim = 16 is ignored: only the built-in models")


def test_a_syntax_error_in_the_model_file_names_file_and_line(tmp_path, train) -> None:
    (tmp_path / "broken.py").write_text("import torch\n\ndef oops(:\n")
    path = user_profile(tmp_path, "broken.py:Net", args="")
    with pytest.raises(UserError, match=r"broken.py:3: syntax error"):
        train(load_profile(path))


# ------------------------------------------------------------------------ the seeds' model bugs


def test_log_softmax_in_forward_raises_its_alarm(tmp_path, train) -> None:
    trained = train(load_profile(user_profile(tmp_path, "seed_bugs.py:LogSoftmaxInForward")))
    alarms = trained.of(AlarmRaised, kind="log_probs_output")
    assert alarms and alarms[0].step <= 1 and alarms[0].severity == "error"


def test_softmax_in_forward_raises_the_same_alarm_and_fails_doctor(tmp_path, train) -> None:
    path = user_profile(tmp_path, "seed_bugs.py:SoftmaxInForward", steps=2, eval_every=2)
    trained = train(load_profile(path))
    alarms = trained.of(AlarmRaised, kind="log_probs_output")
    assert alarms[0].step == 0 and "it is already probabilities (softmax in forward)" in (
        alarms[0].message
    )
    checks, _ = preflight(load_profile(path))
    assert any(c.status == "fail" and "forward returns probabilities" in c.detail for c in checks)


def test_time_pooled_only_while_training_is_caught_live(tmp_path, train) -> None:
    path = user_profile(tmp_path, "seed_bugs.py:PoolsTimeWhileTraining", steps=4, eval_every=4)
    trained = train(load_profile(path))
    [alarm] = trained.of(AlarmRaised, kind="sequence_collapse")[:1]
    assert alarm.step == 2 and "every output frame of every sample is the same" in alarm.message


@pytest.mark.parametrize(
    "model",
    [
        "PooledTime",  # pooled to one frame (seed 003)
        "MeanOverTimeAfterHead",  # the logits averaged over time and repeated T times
    ],
)
def test_time_pooled_away_is_a_sequence_collapse(tmp_path, train, model) -> None:
    path = user_profile(tmp_path, f"seed_bugs.py:{model}", steps=2, eval_every=2)
    trained = train(load_profile(path))
    [alarm] = trained.of(AlarmRaised, kind="sequence_collapse")[:1]
    assert alarm.step == 0 and "pools the time axis away" in alarm.message
    checks, _ = preflight(load_profile(path))
    assert any(c.status == "fail" and "pooled away" in c.detail for c in checks)


def test_a_near_zero_final_layer_is_signal_death(tmp_path, train) -> None:
    trained = train(load_profile(user_profile(tmp_path, "seed_bugs.py:TinyFinalLayer", steps=5)))
    alarms = trained.of(AlarmRaised, kind="signal_death")
    assert alarms and alarms[0].step <= 1


def test_lengths_not_reduced_with_the_stride_stop_the_run_and_fail_doctor(tmp_path, train) -> None:
    path = user_profile(tmp_path, "seed_bugs.py:LengthsNotReduced")
    with pytest.raises(UserError, match="reduce the lengths with the model's temporal stride"):
        train(load_profile(path))
    checks, _ = preflight(load_profile(path))
    [failed] = [c for c in checks if c.status == "fail"]
    assert failed.name == "model contract" and "output lengths reach" in failed.detail


def test_a_model_that_ignores_its_input_is_alarmed(tmp_path, train) -> None:
    path = user_profile(tmp_path, "seed_bugs.py:IgnoresInput", args="", steps=3, eval_every=3)
    trained = train(load_profile(path))
    [alarm] = trained.of(AlarmRaised, kind="input_ignored")
    assert alarm.step == 0 and "did not change when its input did" in alarm.message
    checks, _ = preflight(load_profile(path))
    assert any(c.status == "warn" and "did not change" in c.detail for c in checks)


def test_a_zero_initialised_classifier_is_not_an_ignored_input(tmp_path, train) -> None:
    trained = train(load_profile(user_profile(tmp_path, "seed_bugs.py:ZeroInitHead", steps=3)))
    assert not trained.of(AlarmRaised, kind="input_ignored")
    assert not trained.of(AlarmRaised, kind="sequence_collapse")


def test_a_parameter_on_the_model_itself_trains(tmp_path, train) -> None:
    path = user_profile(tmp_path, "seed_bugs.py:WithPositionScale", steps=4, eval_every=4)
    trained = train(load_profile(path))
    assert trained.of(RunStarted)[0].stages[-1] == "model_params"
    assert float(trained.engine.model.scale.detach()) != 1.0  # it was in the optimizer


def test_stages_from_a_module_dict_name_the_freeze_groups(tmp_path, train) -> None:
    path = user_profile(tmp_path, "seed_bugs.py:NamedStages", steps=4, eval_every=4)
    profile = load_profile(path, ['freeze.frozen=["encoder"]'])
    trained = train(profile)
    assert trained.of(RunStarted)[0].stages == ("encoder", "head")
    assert trained.engine.control.trainable == {"encoder": False, "head": True}


def test_freezing_every_stage_of_a_user_model_fails_before_the_run_dir(
    tmp_path, train, runs_dir
) -> None:
    path = user_profile(tmp_path, "gru_ctc.py:GruCtc")
    profile = load_profile(path, ['freeze.frozen=["proj", "subsample", "rnn", "head"]'])
    with pytest.raises(UserError) as error:
        train(profile)
    assert str(error.value) == (
        f"{path}: freeze.frozen: every stage is frozen (proj, subsample, rnn, head), so nothing "
        "would train; leave at least one training (freeze fewer, or unfreeze one at epoch 0 in "
        "[[freeze.schedule]])"
    )
    assert not runs_dir.exists() or not list(runs_dir.iterdir())


def test_an_error_in_the_users_forward_is_one_line_with_its_place(tmp_path, train) -> None:
    path = user_profile(tmp_path, "seed_bugs.py:ForwardRaises")
    with pytest.raises(UserError, match=r"forward raised RuntimeError: .*seed_bugs.py:\d+\)"):
        train(load_profile(path))


def test_output_lengths_returning_a_non_tensor_is_a_contract_line(tmp_path, train) -> None:
    path = user_profile(tmp_path, "contract_bugs.py:OutputLengthsNotATensor")
    with pytest.raises(UserError) as error:
        train(load_profile(path))
    assert str(error.value) == (
        f"{path}: the model breaks the contract: output_lengths() returned str; it must return "
        "an integer tensor of shape [8] (one output length per input length), or be removed"
    )


def test_stages_naming_a_non_module_says_which_stage(tmp_path, train) -> None:
    path = user_profile(tmp_path, "contract_bugs.py:StagesNotModules")
    with pytest.raises(UserError) as error:
        train(load_profile(path))
    assert str(error.value) == (
        f"{path}: the model breaks the contract: stages()['head'] is a str, not an nn.Module; "
        "it must map stage names to the modules of the model, input to output, e.g. "
        "{'encoder': self.encoder, 'head': self.head}"
    )


def test_an_error_in_the_users_forward_while_training_is_one_line_and_logged(
    tmp_path, train, runs_dir
) -> None:
    path = user_profile(tmp_path, "contract_bugs.py:RaisesWhileTraining", steps=5)
    with pytest.raises(UserError) as error:
        train(load_profile(path))
    [run_dir] = list(runs_dir.iterdir())
    log = run_dir / "log.txt"
    line = str(error.value)
    assert line.startswith("forward raised RuntimeError: boom in training (")
    assert f"contract_bugs.py:25) at step 2; the run failed, its full traceback is in {log}" in (
        line
    )
    assert "\n" not in line
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and 'raise RuntimeError("boom' in text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import sys\nsys.exit(3)\n", r"exits.py:2: the file called sys.exit\(3\) while being"),
        (
            "import argparse\nparser = argparse.ArgumentParser()\n"
            "parser.add_argument('--lr', required=True)\nparser.parse_args()\n",
            r"exits.py:4: the file called sys.exit\(2\) while being imported after printing "
            r"'the following arguments are required: --lr' \(guard script code with if",
        ),
    ],
)
def test_a_model_file_that_exits_while_imported_is_one_line(
    tmp_path, train, capsys, body, message
) -> None:
    (tmp_path / "exits.py").write_text(body)
    path = user_profile(tmp_path, "exits.py:Net", args="")
    with pytest.raises(UserError, match=message):
        train(load_profile(path))
    assert "usage:" not in capsys.readouterr().err  # argparse's, which passed for signconsole's


# ------------------------------------------------------------------ reproducible from the run


def signconsole(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "signconsole", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_headless_run_then_eval_and_decode_rebuild_the_user_model(tmp_path) -> None:
    path = user_profile(tmp_path, "gru_ctc.py:GruCtc", steps=20, eval_every=10)
    runs = tmp_path / "runs"
    result = signconsole("run", str(path), "--runs-dir", str(runs), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    [run_dir] = list(runs.iterdir())

    evaluated = signconsole("eval", str(run_dir), "--split", "dev", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "rebuilt from the run's copy" not in evaluated.stderr

    # The user edits their model file after the run: eval must still use the code it trained.
    model_file = tmp_path / "gru_ctc.py"
    model_file.write_text(model_file.read_text().replace("hidden: int = 64", "hidden: int = 48"))
    edited = signconsole("eval", str(run_dir), "--split", "dev", cwd=tmp_path)
    assert edited.returncode == 0, edited.stderr[-2000:]
    assert "changed since the run; rebuilt from the run's copy" in edited.stderr

    def scores(out: str) -> list[str]:  # everything but the timing
        return [line for line in out.splitlines() if "throughput" not in line]

    assert scores(edited.stdout) == scores(evaluated.stdout)

    corpus = corpus_directory(load_profile(path))[0]
    model_file.unlink()
    recording = sorted(corpus.rglob("*.npz"))[0]  # a real landmark file of the corpus
    decoded = signconsole("decode", str(run_dir), str(recording), cwd=tmp_path)
    assert decoded.returncode == 0, decoded.stderr[-2000:]
    assert "is missing; rebuilt from the run's copy" in decoded.stderr
    assert "greedy" in decoded.stdout
