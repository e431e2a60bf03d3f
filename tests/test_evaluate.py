"""`signconsole eval` and `decode`: the same numbers as the engine on the same data, unknown glosses
reported, CTM output, and a .pose recording decoded to its letters."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from signconsole.cli import main
from signconsole.config import FingerspellConfig
from signconsole.data.corpus import Corpus
from signconsole.data.dataset import SequenceDataset
from signconsole.data.fingerspell import ensure_corpus, load_alphabet
from signconsole.data.readers import read_sequence
from signconsole.store.reader import RunReader


@pytest.fixture(scope="module")
def other_corpus() -> Path:
    """The same language built with another seed: other words, other renderings."""
    config = FingerspellConfig(lang="ase", seed=7, train=8, dev=12, test=12)
    return Path(ensure_corpus(config).root)


def test_eval_matches_the_engines_evaluation(small_profile, train, other_corpus, tmp_path):
    trained = train(small_profile())
    engine, run_dir = trained.engine, trained.result.run_dir
    last = run_dir / "checkpoints" / "last.pt"
    # The engine's own evaluation code on the other corpus, with the run's vocabulary and stats.
    dataset = SequenceDataset(
        Corpus.open(other_corpus, ("dev",)),
        "dev",
        engine.vocabulary,
        engine.profile.data.normalization,
        engine.data.stats,
        engine.profile.data.coordinates,  # the demo profile's are shoulder-relative
        unknown_glosses="drop",
    )
    result = engine.evaluator.evaluate_split(dataset)
    loss, counts = result.loss, result.counts
    out = tmp_path / "eval.json"
    code = main(
        ["eval", str(last), "--data", str(other_corpus), "--split", "dev", "--json", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["sequences"] == len(dataset)
    assert (report["substitutions"], report["deletions"], report["insertions"]) == (
        counts.substitutions,
        counts.deletions,
        counts.insertions,
    )
    assert report["error_rate"] == pytest.approx(counts.rate)
    assert report["loss"] == pytest.approx(loss, rel=1e-5)
    assert sum(b["sequences"] for b in report["by_length"]) == len(dataset)
    # RUN form: the result is stored with the run.
    assert main(["eval", str(run_dir), "--data", str(other_corpus), "--split", "dev"]) == 0
    with RunReader(run_dir) as reader:
        stored = reader.connection.execute(
            "SELECT split, data, error_rate FROM evaluations"
        ).fetchall()
    assert [tuple(row) for row in stored][-1][:2] == ("dev", str(other_corpus))


def test_unknown_glosses_are_reported_not_fatal(small_profile, train, other_corpus, tmp_path):
    run_dir = train(small_profile("training.max_steps=6")).result.run_dir
    corpus = tmp_path / "corpus"
    shutil.copytree(other_corpus / "annotations", corpus / "annotations")
    (corpus / "features").symlink_to(other_corpus / "features")
    annotation = corpus / "annotations" / "manual" / "test.corpus.csv"
    lines = annotation.read_text().splitlines()
    lines[1] += " Ä Ö"  # two letters the ASL model has never seen
    lines[2] += " Ä"
    annotation.write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval.json"
    assert main(["eval", str(run_dir), "--data", str(corpus), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["unknown_glosses"] == {"Ä": 2, "Ö": 1}
    assert report["sequences"] == 12


def test_ctm_lines_parse_in_id_order(small_profile, train, other_corpus, tmp_path):
    run_dir = train(small_profile("training.max_steps=6")).result.run_dir
    ctm = tmp_path / "hyp.ctm"
    assert main(["eval", str(run_dir), "--data", str(other_corpus), "--ctm", str(ctm)]) == 0
    pattern = re.compile(r"^(\S+) 1 (\d+\.\d{3}) (\d+\.\d{3}) (\S+)$")
    rows = [pattern.match(line) for line in ctm.read_text().splitlines()]
    assert rows and all(rows), ctm.read_text()[:500]
    ids = [row.group(1) for row in rows]
    assert ids == sorted(ids)
    assert set(ids) == {f"ase-test-{i:06d}" for i in range(12)}  # every sequence, once or more
    for sample in set(ids):  # glosses of one sequence follow each other in time
        starts = [float(r.group(2)) for r in rows if r.group(1) == sample]
        assert starts == sorted(starts)


def write_pose(landmarks: np.ndarray, mask: np.ndarray, path: Path, fps: float) -> None:
    """Landmarks [T, 543, 3] as a MediaPipe Holistic .pose file, using a lexicon file's header
    (its face has 478 points with the irises; those 10 and the world landmarks stay masked)."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody

    template = Pose.read(load_alphabet("ase")["A"].read_bytes())
    total = sum(len(c.points) for c in template.header.components)
    frames = landmarks.shape[0]
    data = np.zeros((frames, 1, total, 3), dtype=np.float32)
    confidence = np.zeros((frames, 1, total), dtype=np.float32)
    offsets = {"pose": (0, 0, 33), "face": (33, 33, 468), "left": (511, 501, 21)}
    offsets["right"] = (532, 522, 21)
    for target, source, count in offsets.values():
        data[:, 0, target : target + count] = landmarks[:, source : source + count]
        confidence[:, 0, target : target + count] = mask[:, source : source + count]
    masked = np.ma.masked_array(data, mask=np.repeat(confidence[..., None] == 0, 3, axis=-1))
    body = NumPyPoseBody(fps=fps, data=masked, confidence=confidence)
    with path.open("wb") as handle:
        Pose(template.header, body).write(handle)


@pytest.mark.slow
def test_decode_reads_a_pose_recording_to_its_letters(small_profile, tmp_path, capsys):
    # A model that has learned 8 spelled words; one of them, recorded as a .pose file.
    profile = small_profile(
        "data.fingerspell.train=8",
        "model.dropout=0.0",
        "optimizer.weight_decay=0.0",
        "optimizer.learning_rate=3e-3",
        "training.max_epochs=0",
        "training.max_steps=200",  # train loss ~0.07: the training words decode exactly (120: not yet)
        "training.eval_every=200",  # one evaluation, at the end: 0 is every epoch (every step here)
        "training.log_every=50",
    )
    from signconsole.data.prepare import prepare_data

    data = prepare_data(profile)
    checkpoint = train_on(profile, data, tmp_path)
    entry = data.train.entries[0]
    sequence = read_sequence(data.train.paths[0])
    pose_file = tmp_path / f"{entry.id}.pose"
    write_pose(sequence.landmarks, sequence.mask, pose_file, sequence.fps or 25.0)
    again = read_sequence(pose_file)
    np.testing.assert_allclose(again.landmarks, sequence.landmarks, atol=1e-4)
    assert (again.mask == sequence.mask).all()

    assert main(["decode", str(checkpoint), str(pose_file)]) == 0
    out = capsys.readouterr().out
    letters = " ".join(entry.glosses)
    assert f"greedy  {letters}\n" in out, out
    assert f"beam 5  {letters}\n" in out, out


def train_on(profile, data, tmp_path: Path) -> Path:
    from signconsole.engine.trainer import Engine
    from signconsole.events import EventBus

    result = Engine(profile, EventBus(), runs_dir=tmp_path / "runs", data=data).run()
    return result.run_dir / "checkpoints" / "last.pt"


def test_decode_reports_a_bad_file_and_exits_1(small_profile, train, tmp_path, capsys):
    run_dir = train(small_profile("training.max_steps=2")).result.run_dir
    empty = tmp_path / "empty.pose"
    empty.write_bytes(b"")
    assert main(["decode", str(run_dir / "checkpoints" / "last.pt"), str(empty)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("file is empty; re-extract or rebuild this sequence")


@pytest.mark.parametrize(
    "arguments, said",
    [
        (["eval", "some-run", "--beam", "0"], "--beam 0: give 1"),
        (
            ["eval", "some-run", "--beam", "100000"],
            "--beam 100000: give 1 (greedy decoding) to 1000",
        ),
        (["decode", "some-run", "x.npz", "--beam", "0"], "--beam 0: give 1"),
        (["eval", "some-run", "--device", "banana"], "--device 'banana': give auto, cpu"),
        (["decode", "some-run", "x.npz", "--device", "tpu"], "--device 'tpu': give auto, cpu"),
        (["eval", "some-run", "--json", "{tmp}"], "is a folder; give a file name"),
        (["eval", "some-run", "--ctm", "{tmp}/no/such/x.ctm"], "does not exist"),
    ],
)
def test_eval_and_decode_options_are_checked_before_anything_runs(
    arguments, said, tmp_path, capsys
):
    """A wrong option is one line, exit 2, before a checkpoint is loaded or a split scored."""
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    assert main([*arguments, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1, err


def test_eval_on_a_gpu_this_machine_lacks_names_the_option(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda is valid here")
    assert main(["eval", "some-run", "--device", "cuda", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--device cuda but no CUDA GPU is visible" in err and "training.device" not in err
