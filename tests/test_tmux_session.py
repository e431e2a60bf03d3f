"""A real terminal: the console in tmux on the demo profile, driven by keystrokes.

Starts `signconsole profiles/demo-student.toml` (small corpus and an early first evaluation so it
runs in well under a minute, fusion frozen at start so there is a stage to unfreeze, a gradient
alarm threshold so low that an alarm arrives at once), acknowledges the alarm, waits for the
first evaluation, pauses, unfreezes a stage, resumes and quits; then resumes the run headless and
reviews it with `signconsole show`: the charts cover the whole run. Every screen is captured to
$SIGNCONSOLE_TMUX_CAPTURES (default: a temporary folder) so a person can read what was shown.
Run it alone with `python -m pytest tests/test_tmux_session.py -s`.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SMALL

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

SESSION = f"signconsole-test-{os.getpid()}"  # two checkouts may run it at once
AXIS = re.compile(r"│ {7}(\d+) +(\d+)│")  # a chart's step axis: first and last step


STEP = re.compile(r"step (\d+)/")
STATE_REASONS = (
    "SELECT json_extract(payload, '$.reason') FROM events"
    " WHERE type = 'StateChanged' ORDER BY rowid"
)


def status_step(text: str) -> int:
    """The step the status line shows; -1 before it shows one."""
    found = STEP.search(text.splitlines()[0] if text else "")
    return int(found.group(1)) if found else -1


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_screen(predicate, what: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = screen()
        if predicate(text):
            return text
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; screen was:\n{screen()}")


@pytest.mark.slow
def test_console_in_tmux_pause_unfreeze_resume_quit(tmp_path: Path) -> None:
    captures = Path(os.environ.get("SIGNCONSOLE_TMUX_CAPTURES", tmp_path / "captures"))
    captures.mkdir(parents=True, exist_ok=True)
    overrides = [
        *SMALL,
        "training.max_steps=100000",
        "training.max_epochs=10000",
        "training.eval_every=20",
        'freeze.frozen=["fusion"]',
        "health.grad_norm_explode=0.0001",  # an alarm at the second logged step (clipping exempts the first)
        "health.grad_norm_vanish=0.00001",  # below it, as a profile must have it
    ]
    command = [
        sys.executable,
        "-m",
        "signconsole",
        str(ROOT / "profiles" / "demo-student.toml"),
        "--runs-dir",
        str(tmp_path / "runs"),
    ]
    for override in overrides:
        command += ["--set", override]
    # pytest imports readline, and GNU readline exports COLUMNS=80 LINES=24 into the C environment
    # (not os.environ), which tmux and the console inherit: Textual would then draw 80x24 in the
    # 120x36 pane. `env -u` drops them so the console sizes itself from the terminal, as for a user.
    environment = (
        f"-u COLUMNS -u LINES SIGNCONSOLE_CACHE={os.environ.get('SIGNCONSOLE_CACHE', '')} "
        "TERM=xterm-256color"
    )
    shell = f"cd {ROOT} && env {environment} {' '.join(repr(c) for c in command)}; echo EXITED=$?; sleep 30"
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "36", shell)
    shots: dict[str, str] = {}

    def shot(name: str, text: str) -> None:
        shots[name] = text
        (captures / f"{len(shots):02d}-{name}.txt").write_text(text)

    try:
        alarm = wait_screen(lambda s: "hint:" in s and "grad_explode" in s, "the alarm banner")
        shot("alarm", alarm)
        assert "grad_explode (a)" in alarm.splitlines()[0]  # on the status line too
        tmux("send-keys", "-t", SESSION, "a")
        shot("acknowledged", wait_screen(lambda s: "hint:" not in s, "the banner to go"))
        assert "grad_explode (a)" not in shots["acknowledged"].splitlines()[0]

        shot("first-eval", wait_screen(lambda s: "best LER" in s, "the first evaluation"))
        assert "RUNNING" in shots["first-eval"] and "frozen" in shots["first-eval"]

        tmux("send-keys", "-t", SESSION, "Space")
        shot("paused", wait_screen(lambda s: "PAUSED" in s, "the paused state"))

        tmux("send-keys", "-t", SESSION, "f")  # the cursor starts on the first stage: fusion
        tmux("send-keys", "-t", SESSION, "2")  # the events tab
        shot("unfrozen", wait_screen(lambda s: "stage fusion unfrozen" in s, "the unfreeze event"))
        assert "PAUSED" in shots["unfrozen"]  # commands apply while paused

        paused_at = status_step(shots["unfrozen"])
        tmux("send-keys", "-t", SESSION, "Space")
        # The status line, not the events tab: new alarms and checkpoints can push the resume
        # event out of view between two captures. run.db holds it, checked below.
        shot(
            "resumed",
            wait_screen(
                lambda s: "RUNNING" in s.splitlines()[0] and status_step(s) > paused_at,
                "training to resume",
            ),
        )

        tmux("send-keys", "-t", SESSION, "q")
        shot("confirm-quit", wait_screen(lambda s: "Quit?" in s, "the quit question"))
        tmux("send-keys", "-t", SESSION, "y")
        shot("exited", wait_screen(lambda s: "EXITED=0" in s, "a clean exit", timeout=60))
        assert "Traceback" not in shots["exited"]
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    checkpoints = list((tmp_path / "runs").glob("*/checkpoints/last.pt"))
    assert checkpoints, "quitting stops the run with a checkpoint"

    # Resume it headless for a few more steps, then review it: the whole run, not the tail.
    run_dir = checkpoints[0].parent.parent
    with sqlite3.connect(run_dir / "run.db") as db:
        reasons = [r for (r,) in db.execute(STATE_REASONS)]
    assert "resumed by user" in reasons[reasons.index("paused by user") :], reasons
    stopped = int(
        sqlite3.connect(run_dir / "run.db").execute("SELECT max(step) FROM metrics").fetchone()[0]
    )
    resume = [
        sys.executable,
        "-m",
        "signconsole",
        "run",
        str(ROOT / "profiles" / "demo-student.toml"),
        "--resume",
        str(run_dir),
    ]
    resume += [a for o in [*overrides, f"training.max_steps={stopped + 10}"] for a in ("--set", o)]
    resume.append("--allow-changes")  # max_steps is new: recorded in the run
    done = subprocess.run(resume, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    show = (
        f"cd {ROOT} && env {environment} {sys.executable} -m signconsole show {run_dir}; sleep 30"
    )
    tmux("new-session", "-d", "-s", SESSION, "-x", "120", "-y", "36", show)
    try:
        review = wait_screen(lambda s: "FINISHED" in s and AXIS.search(s), "the review's charts")
        shot("review-resumed", review)
        axes = [tuple(map(int, m.groups())) for m in AXIS.finditer(review)]
        first, last = axes[0]  # the loss chart's step axis
        assert first < stopped < last == stopped + 10, (axes, stopped)
        assert "hint:" not in review  # a stored alarm is history, not news
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
