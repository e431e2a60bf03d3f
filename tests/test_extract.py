"""`signconsole extract` with real MediaPipe Holistic on a real photograph of a person
(scikit-image's astronaut, NASA), as a short video and as frame folders with small shifts per frame:
landmarks and masks, .pose output, bad inputs reported per sequence, reruns, and the output
training through the normal corpus loader."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from signconsole.cli import main
from signconsole.data.readers import read_sequence

FRAMES = 10
SIZE = 256  # the photograph scaled down: MediaPipe still finds her, and it runs faster


def astronaut_frames(count: int = FRAMES, size: int = SIZE) -> list[np.ndarray]:
    from skimage import data

    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (size, size))
    frames = []
    for i in range(count):
        shift = np.float32([[1, 0, i], [0, 1, i // 2]])  # a small camera drift
        frames.append(cv2.warpAffine(image, shift, (size, size), borderMode=cv2.BORDER_REFLECT))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()


def write_folder(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"images{index:04d}.png"), frame)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "astronaut.mp4"
    write_video(path, astronaut_frames())
    return path


def summary(out: Path) -> dict[str, dict]:
    data = json.loads((out / "extract-summary.json").read_text())
    return {entry["id"]: entry for entry in data["sequences"]}


def test_video_gives_landmarks_masks_and_detection_rates(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["extract", str(video), "--out", str(out), "--workers", "1"]) == 0
    sequence = read_sequence(out / "astronaut.npz")
    assert sequence.landmarks.shape == (FRAMES, 543, 3)
    assert sequence.mask.shape == (FRAMES, 543) and sequence.mask.dtype == bool
    assert sequence.fps == pytest.approx(25.0)
    pose, face = sequence.mask[:, :33], sequence.mask[:, 33:501]
    assert pose.all(axis=1).mean() >= 0.9 and face.all(axis=1).mean() >= 0.9
    # Pixel coordinates on the frame, as pose-format writes them: the face is in the picture.
    nose = sequence.landmarks[:, 0, :2].astype(np.float32)
    assert ((nose > 0) & (nose < SIZE)).all()
    # Undetected points are zero and masked (here at least the hands of most frames).
    missing = ~sequence.mask
    assert (sequence.landmarks[missing] == 0).all()
    entry = summary(out)["astronaut"]
    assert entry["status"] == "done" and entry["frames"] == FRAMES
    assert entry["detected"]["pose"] >= 0.9 and entry["detected"]["face"] >= 0.9


def test_frame_folder_as_pose_file(tmp_path: Path) -> None:
    folder = tmp_path / "signer01"
    write_folder(folder, astronaut_frames())
    out = tmp_path / "out"
    assert main(["extract", str(folder), "--out", str(out), "--format", "pose"]) == 0
    sequence = read_sequence(out / "signer01.pose")
    assert sequence.landmarks.shape == (FRAMES, 543, 3)
    assert sequence.mask[:, :33].all(axis=1).mean() >= 0.9


def phoenix_corpus(root: Path, broken: bool = False) -> Path:
    """A Phoenix-2014-layout corpus of frame folders (annotations + fullFrame folders)."""
    frames = astronaut_frames()
    rows = {
        "train": [("seq-a", "ASTRONAUT HELM"), ("seq-b", "HELM ASTRONAUT"), ("seq-c", "ASTRONAUT")],
        "dev": [("seq-d", "HELM")],
        "test": [("seq-e", "ASTRONAUT HELM")],
    }
    if broken:
        rows["train"] += [("empty", "HELM"), ("mixed", "HELM"), ("nobody", "HELM")]
    manual = root / "annotations" / "manual"
    manual.mkdir(parents=True)
    for split, entries in rows.items():
        lines = ["id|folder|signer|annotation"]
        for sample_id, glosses in entries:
            lines.append(f"{sample_id}|{sample_id}/1/*.png|Signer01|{glosses}")
            folder = root / "features" / "fullFrame-210x260px" / split / sample_id / "1"
            if sample_id == "empty":
                folder.mkdir(parents=True)
            elif sample_id == "mixed":
                write_folder(folder, frames[:3])
                cv2.imwrite(str(folder / "images0003.png"), cv2.resize(frames[3], (120, 90)))
            elif sample_id == "nobody":
                write_folder(folder, [np.full((SIZE, SIZE, 3), 128, np.uint8)] * 4)
            else:
                write_folder(folder, frames)
        (manual / f"{split}.corpus.csv").write_text("\n".join(lines) + "\n")
    return root


def test_phoenix_corpus_extracts_and_trains(tmp_path: Path, small_profile) -> None:
    corpus = phoenix_corpus(tmp_path / "phoenix")
    out = tmp_path / "landmarks"
    assert main(["extract", str(corpus), "--out", str(out), "--workers", "2"]) == 0
    assert (out / "features" / "train" / "seq-a.npz").exists()
    assert (out / "annotations" / "manual" / "dev.corpus.csv").exists()

    from signconsole.engine.trainer import Engine
    from signconsole.events import EventBus

    profile = small_profile(
        f'data.corpus="{out}"', "data.batch_size=2", "training.max_steps=2", "training.eval_every=2"
    )
    result = Engine(profile, EventBus(), runs_dir=tmp_path / "runs").run()
    assert result.status == "finished" and result.steps == 2
    assert result.best_error_rate is not None  # dev was scored through the corpus loader


def test_bad_sequences_are_reported_and_the_rest_go_on(tmp_path: Path, capsys) -> None:
    corpus = phoenix_corpus(tmp_path / "phoenix", broken=True)
    (corpus / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "landmarks"
    code = main(["extract", str(corpus), "--out", str(out), "--workers", "2"])
    assert code == 1  # something failed
    results = summary(out)
    assert results["seq-a"]["status"] == "done"
    assert "no frame images" in results["empty"]["reason"]
    assert "different sizes" in results["mixed"]["reason"]
    assert "no person detected" in results["nobody"]["reason"]
    for failed in ("empty", "mixed", "nobody"):
        assert not (out / "features" / "train" / f"{failed}.npz").exists()
    printed = capsys.readouterr().out
    assert "failed" in printed and "nobody" in printed

    corrupt = main(["extract", str(corpus / "broken.mp4"), "--out", str(out / "v")])
    assert corrupt == 1
    assert "OpenCV cannot open" in summary(out / "v")["broken"]["reason"]


def test_rerun_skips_finished_sequences_and_cleans_stale_temporaries(video, tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["extract", str(video), "--out", str(out), "--workers", "1"]) == 0
    first = (out / "astronaut.npz").stat().st_mtime_ns
    stale = out / ".astronaut.npz.abc123.tmp"  # what a killed writer leaves
    stale.write_bytes(b"half")
    assert main(["extract", str(video), "--out", str(out), "--workers", "1"]) == 0
    assert summary(out)["astronaut"]["status"] == "skipped"
    assert (out / "astronaut.npz").stat().st_mtime_ns == first
    assert not stale.exists()
    assert main(["extract", str(video), "--out", str(out), "--overwrite"]) == 0
    assert summary(out)["astronaut"]["status"] == "done"


def test_missing_input_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["extract", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file or folder" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["extract", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "nothing to extract" in capsys.readouterr().err
