"""One process trains a run directory at a time: `run.lock`, held with flock for the whole run.

The file holds the holder's pid, host, start time and command line, so a refusal can say who
trains the run and a reader (`signconsole runs`, the picker) can tell a live run from one whose
process died (`killed`). flock is released by the kernel when the process dies, however it dies
(kill -9 included), so a stale lock never blocks anyone: the next process takes it over and says
so. The file is removed on a clean release; one left behind is the mark of a process that died.

    with RunLock(run_dir):            # or: lock = RunLock.acquire(run_dir) ... lock.release()
        train()

A lock file that names another host is never taken over: flock may not reach across machines
(NFS without lock support), so the message says how to remove it by hand once that run is over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from signconsole.errors import UserError

LOCK_NAME = "run.lock"


@dataclass(frozen=True)
class LockHolder:
    """What a lock file says about the process that took it."""

    pid: int
    host: str
    started: float  # time.time() when the lock was taken
    command: str = ""

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host} (since {when})"

    def same_host(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool | None:
        """Whether the process still runs; None when it is on another host (cannot tell)."""
        return process_alive(self.pid, self.started) if self.same_host() else None


class RunLocked(UserError):
    """The run is trained by another live process (or one on another host)."""

    def __init__(self, run_dir: Path, holder: LockHolder | None, message: str) -> None:
        self.run_dir, self.holder = run_dir, holder
        super().__init__(message)


def process_alive(pid: int, since: float | None = None) -> bool:
    """Whether `pid` runs here. With `since` (when the lock was taken), a process that started
    later is a reused pid, not the holder (Linux: /proc; elsewhere the pid alone decides)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    except OSError:
        return False
    if since is not None:
        started = _process_start_time(pid)
        if started is not None and started > since + 2.0:  # /proc times are rounded to ticks
            return False
    return True


def _process_start_time(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    # Field 22 (start time in clock ticks since boot) counts from after the ")" of the name,
    # which may itself hold spaces and parentheses.
    fields = stat.rpartition(")")[2].split()
    try:
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError, OSError):
        return None


def read_holder(run_dir: str | Path) -> LockHolder | None:
    """The lock file's holder, or None when there is no lock file (or it cannot be read)."""
    try:
        return _parse((Path(run_dir) / LOCK_NAME).read_bytes())
    except OSError:
        return None


def _parse(data: bytes) -> LockHolder | None:
    try:
        fields = json.loads(data.decode("utf-8"))
        return LockHolder(
            pid=int(fields["pid"]),
            host=str(fields["host"]),
            started=float(fields["started"]),
            command=str(fields.get("command", "")),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None  # empty (a holder killed between open and write) or not ours


def _try_flock(descriptor: int) -> bool | None:
    """True: locked; False: another open file holds it; None: this filesystem has no flock."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise
    return True


class RunLock:
    """The exclusive right to train `run_dir`. `RunLock(run_dir)` only names it; `with` or
    `RunLock.acquire` takes it. `took_over` is the dead holder a stale lock came from (or None),
    `note` the line that says so (empty when there was none)."""

    def __init__(self, run_dir: str | Path, notify: Callable[[str], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.notify = notify
        self.took_over: LockHolder | None = None
        self.note = ""
        self._descriptor: int | None = None

    @classmethod
    def acquire(cls, run_dir: str | Path, notify: Callable[[str], None] | None = None) -> RunLock:
        """Take the lock or raise RunLocked (a UserError: one line, exit 2). `notify` receives
        the line announcing a stale lock's takeover (the engine publishes it; `note` keeps it)."""
        lock = cls(run_dir, notify)
        lock._take()
        return lock

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def __enter__(self) -> RunLock:
        self._take()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _take(self) -> None:
        if self.held:
            raise RuntimeError(f"{self.path}: already held by this RunLock")
        if not self.run_dir.is_dir():
            raise UserError(f"{self.run_dir}: not a run directory")
        for _ in range(5):  # only repeats when a holder released between our open and flock
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                if self._lock_open_file(descriptor):
                    self._descriptor, descriptor = descriptor, -1
                    _HELD.add(self)
                    return
            finally:
                if descriptor >= 0:
                    os.close(descriptor)
        raise RunLocked(self.run_dir, None, f"{self.path}: could not take the lock; try again")

    def _lock_open_file(self, descriptor: int) -> bool:
        """Lock the open file; False when it is no longer the file at `self.path`."""
        locked = _try_flock(descriptor)
        previous = _parse(os.pread(descriptor, 4096, 0))
        if locked is False:
            raise refusal(self.run_dir, previous)
        try:
            if not os.path.samestat(os.fstat(descriptor), os.stat(self.path)):
                return False  # the holder released (unlinked) it after we opened it
        except FileNotFoundError:
            return False
        if previous is not None and previous.pid != os.getpid():
            if not previous.same_host():
                raise refusal(self.run_dir, previous)
            if locked is None and previous.alive():  # no flock here: the pid decides
                raise refusal(self.run_dir, previous)
            self._announce_takeover(previous)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "command": shlex.join(sys.argv),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(descriptor)
        return True

    def _announce_takeover(self, previous: LockHolder) -> None:
        self.took_over = previous
        self.note = (
            f"{self.run_dir}: took over the lock of {previous.describe()}, which is gone "
            "(the run was killed)"
        )
        if self.notify is not None:
            self.notify(self.note)

    def release(self) -> None:
        """Remove the lock file and let go. Safe to call twice, and after a failed acquire."""
        descriptor, self._descriptor = self._descriptor, None
        _HELD.discard(self)
        if descriptor is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(os.fstat(descriptor), os.stat(self.path)):
                    self.path.unlink()  # before unlocking: a waiter then sees a fresh file
        finally:
            os.close(descriptor)  # releases the flock


def refusal(run_dir: Path, holder: LockHolder | None) -> RunLocked:
    """The error for a run another process trains: who, since when, and what to do instead."""
    attach = f"`signconsole show {run_dir}`"
    if holder is None:
        message = (
            f"{run_dir}: another process is training this run; watch or control it with {attach}"
        )
    elif holder.same_host():
        message = (
            f"{run_dir}: this run is being trained by {holder.describe()}; watch or "
            f"control it with {attach} (stop it there before resuming)"
        )
    else:
        message = (
            f"{run_dir}: locked by {holder.describe()}; watch it with {attach}. If that "
            f"run is over, delete {run_dir / LOCK_NAME} and try again"
        )
    return RunLocked(run_dir, holder, message)


def refuse_if_live(run_dir: str | Path) -> None:
    """Raise RunLocked when a live process (or one on another host) holds the run: a quick
    check before slow preparation; `RunLock.acquire` is what actually decides."""
    state, holder = lock_state(run_dir)
    if state in ("live", "elsewhere"):
        raise refusal(Path(run_dir), holder)


def lock_state(run_dir: str | Path) -> tuple[str, LockHolder | None]:
    """("none" | "live" | "dead" | "elsewhere", holder) as a reader sees it, without locking
    (a reader must never make a starting run fail to take its lock)."""
    holder = read_holder(run_dir)
    if holder is None:
        return ("none", None)
    alive = holder.alive()
    if alive is None:
        return ("elsewhere", holder)
    return ("live" if alive else "dead", holder)


_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()


def _drop_locks_in_child() -> None:
    """A forked child (a loader worker) does not hold its parent's run locks. flock belongs to
    the open file, which a child shares: it would keep a killed trainer's run locked for as long
    as the child lives. Closing the child's copy leaves the parent's lock as it is."""
    for lock in list(_HELD):
        descriptor, lock._descriptor = lock._descriptor, None
        if descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(descriptor)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_locks_in_child)
