"""One process trains a run directory: a live lock refuses, a dead one is taken over and says so."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signconsole.store.lock import (
    LOCK_NAME,
    RunLock,
    RunLocked,
    lock_state,
    process_alive,
    read_holder,
)

HOLD = """
import sys, time
from signconsole.store.lock import RunLock
lock = RunLock.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(120)
"""


def hold_in_child(run_dir: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(run_dir: Path, pid: int, host: str | None = None, started: float = 0.0) -> None:
    record = {
        "pid": pid,
        "host": host or socket.gethostname(),
        "started": started or time.time(),
        "command": "signconsole run x.toml",
    }
    (run_dir / LOCK_NAME).write_text(json.dumps(record))


def test_lock_records_the_holder_and_is_removed_on_release(tmp_path: Path) -> None:
    with RunLock(tmp_path) as lock:
        holder = read_holder(tmp_path)
        assert holder is not None and holder.pid == os.getpid()
        assert holder.host == socket.gethostname()
        assert lock_state(tmp_path)[0] == "live"
        assert lock.took_over is None and lock.note == ""
    assert not (tmp_path / LOCK_NAME).exists()
    assert lock_state(tmp_path) == ("none", None)
    lock.release()  # twice is harmless


def test_a_second_lock_in_the_same_process_is_refused(tmp_path: Path) -> None:
    lock = RunLock.acquire(tmp_path)
    try:
        with pytest.raises(RunLocked) as refused:
            RunLock.acquire(tmp_path)
        message = str(refused.value)
        assert f"pid {os.getpid()}" in message and f"signconsole show {tmp_path}" in message
    finally:
        lock.release()
    RunLock.acquire(tmp_path).release()  # free again once released


def test_live_holder_refuses_then_kill_9_lets_the_next_take_over(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path)
    try:
        with pytest.raises(RunLocked) as refused:
            RunLock.acquire(tmp_path)
        assert f"pid {child.pid}" in str(refused.value)
        assert lock_state(tmp_path)[0] == "live"
    finally:
        child.kill()
        child.wait()
    assert lock_state(tmp_path)[0] == "dead"  # the file is left behind: the mark of a kill
    notes: list[str] = []
    lock = RunLock.acquire(tmp_path, notify=notes.append)
    try:
        assert lock.took_over is not None and lock.took_over.pid == child.pid
        assert notes == [lock.note] and f"pid {child.pid}" in lock.note and "gone" in lock.note
        assert read_holder(tmp_path).pid == os.getpid()
    finally:
        lock.release()


HOLD_AND_FORK = """
import multiprocessing, sys, time
from signconsole.store.lock import RunLock
fork = multiprocessing.get_context("fork")
running = fork.Event()
def work():
    running.set()  # past the fork and its handlers
    time.sleep(120)
lock = RunLock.acquire(sys.argv[1])
worker = fork.Process(target=work)
worker.start()  # what a loader worker is: a fork of the trainer, which holds the lock
running.wait(60)
print("held", worker.pid, flush=True)
time.sleep(120)
"""


def test_a_forked_worker_outliving_its_killed_trainer_does_not_keep_the_run_locked(
    tmp_path: Path,
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_FORK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    word, worker = child.stdout.readline().split()
    assert word == "held"
    try:
        child.kill()
        child.wait()
        assert process_alive(int(worker))  # still there, sharing the lock's open file
        lock = RunLock.acquire(tmp_path)  # a resume right after the kill is not refused
        assert lock.took_over is not None and lock.took_over.pid == child.pid
        lock.release()
    finally:
        os.kill(int(worker), 9)


def test_stale_file_of_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    pid = dead_pid()
    write_lock(tmp_path, pid)
    with RunLock(tmp_path) as lock:
        assert lock.took_over is not None and lock.took_over.pid == pid


def test_lock_of_another_host_is_never_taken_over(tmp_path: Path) -> None:
    write_lock(tmp_path, 12345, host="elsewhere.example")
    with pytest.raises(RunLocked) as refused:
        RunLock.acquire(tmp_path)
    message = str(refused.value)
    assert "elsewhere.example" in message and f"delete {tmp_path / LOCK_NAME}" in message
    assert lock_state(tmp_path)[0] == "elsewhere"


def test_a_reused_pid_is_not_the_holder() -> None:
    """pid 1 started long after the epoch: a lock taken at time 0 by "pid 1" is stale."""
    assert process_alive(os.getpid(), since=time.time())
    assert not process_alive(dead_pid())
    if Path("/proc/1/stat").exists():
        assert not process_alive(1, since=0.0)


def test_empty_or_garbage_lock_file_is_taken_without_fuss(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_bytes(b"\x00garbage")
    assert lock_state(tmp_path) == ("none", None)
    with RunLock(tmp_path) as lock:
        assert lock.took_over is None


def test_not_a_directory_is_a_user_error(tmp_path: Path) -> None:
    from signconsole.errors import UserError

    with pytest.raises(UserError):
        RunLock.acquire(tmp_path / "missing")
