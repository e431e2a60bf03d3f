"""Where a fingerspelling build goes, and what it may replace there.

A build writes into a temp folder beside the output and renames it into place when complete, so
an interrupted build never leaves half a corpus. Renaming replaces the whole output folder, so
it may only replace what signconsole wrote itself: an empty folder, or a fingerspelling corpus
(its fingerspell.json) holding no file a build does not write. Anything else, a Phoenix corpus
or a user's notes beside a corpus, is refused before a byte is written.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

METADATA = "fingerspell.json"
SPLITS = ("train", "dev", "test")
_ANNOTATIONS = {f"{split}.{kind}.csv" for split in SPLITS for kind in ("corpus", "frames")}


def replaced_corpus(out_dir: Path) -> dict | None:
    """The metadata of the corpus a build into `out_dir` would replace (None: nothing, the folder
    is missing or empty). Raises ValueError, naming what is in the way, when the folder holds
    anything a fingerspelling build did not write."""
    if Path.cwd().resolve().is_relative_to(out_dir.resolve()):
        # The swap would move the folder a shell stands in (or above it) into the bin.
        raise ValueError(
            f"{out_dir}: is the current folder or holds it; run the build from elsewhere or "
            "choose another output folder"
        )
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ValueError(
            f"{out_dir}: exists and is not a directory; choose a new or empty output folder"
        )
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return None
    metadata = _read_metadata(out_dir / METADATA)
    if metadata is None:
        raise ValueError(
            f"{out_dir}: not empty and not a fingerspelling corpus built by signconsole (no "
            f"readable {METADATA}); a build replaces the whole folder, so choose a new or empty "
            "output folder"
        )
    foreign = _first_foreign_file(out_dir)
    if foreign is not None:
        raise ValueError(
            f"{out_dir}: holds {foreign}, which `data fingerspell` did not write; a build "
            f"replaces the whole folder, so move {foreign} out first or choose a new or empty "
            "output folder"
        )
    return metadata


def describe(metadata: dict) -> str:
    """'ase, seed 0, 8/8/8 train/dev/test sequences', as far as the metadata says."""
    config = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    counts = "/".join(str(config.get(split, "?")) for split in SPLITS)
    return (
        f"{config.get('lang', '?')}, seed {config.get('seed', '?')}, {counts} train/dev/test "
        "sequences"
    )


def rebuild_command(metadata: dict, out_dir: Path) -> str | None:
    """The command that spells the corpus `metadata` describes again (None: it does not say)."""
    config = metadata.get("config")
    keys = ("lang", "seed", *SPLITS)
    if not isinstance(config, dict) or any(key not in config for key in keys):
        return None
    options = " ".join(f"--{key} {config[key]}" for key in keys)
    return f"signconsole data fingerspell {options} --out {out_dir}"


def _read_metadata(path: Path) -> dict | None:
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("config"), dict):
        return None
    return metadata


def _first_foreign_file(root: Path) -> str | None:
    """The first path under `root` (relative; folders end in /) that a build does not write."""
    for folder, folders, files in os.walk(root):
        folders.sort()
        here = Path(folder).relative_to(root)
        for name in folders:
            if (Path(folder) / name).is_symlink() or not _written_by_a_build(here / name, True):
                return f"{here / name}/"
        for name in sorted(files):
            if (Path(folder) / name).is_symlink() or not _written_by_a_build(here / name):
                return str(here / name)
    return None


def _written_by_a_build(relative: Path, folder: bool = False) -> bool:
    parts = relative.parts
    if folder:
        return parts in (("annotations",), ("annotations", "manual"), ("features",)) or (
            len(parts) == 2 and parts[0] == "features" and parts[1] in SPLITS
        )
    if parts == (METADATA,):
        return True
    if len(parts) == 3 and parts[:2] == ("annotations", "manual"):
        return parts[2] in _ANNOTATIONS
    return (
        len(parts) == 3
        and parts[0] == "features"
        and parts[1] in SPLITS
        and parts[2].endswith(".npz")
        and not parts[2].startswith(".")
    )


def work_folder(target: Path) -> Path:
    """A new, empty folder beside `target` for a build of it."""
    # Not mkdtemp: its 0700 mode would stick to the corpus; mkdir honours the umask.
    work = target.parent / f".{target.name}.building-{os.getpid()}-{secrets.token_hex(4)}"
    work.mkdir()
    return work


def remove_stale_builds(target: Path) -> None:
    """Delete temp dirs of builds of `target` whose process is gone (a killed build)."""
    for folder in target.parent.glob(f".{target.name}.building-*"):
        match = re.match(r"\d+", folder.name.rsplit(".building-", 1)[1])
        if match is None:
            continue
        try:
            os.kill(int(match.group()), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # alive but someone else's process
            continue


def install(work: Path, target: Path) -> None:
    """Swap the finished build in: the target is never seen half-written."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "corpus")
    os.replace(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
