"""Process-wide settings for training on CPU, applied once at startup, before torch is imported."""

from __future__ import annotations

import os
import sys


def tune_process() -> None:
    # With the default OpenMP wait policy, 2 intra-op threads on a busy 2-core machine ran
    # several times slower than 1: spinning threads fight the UI thread and other jobs.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Tensors of 2 MB and more on transparent huge pages: a demo batch is ~100 MB of float32,
    # over glibc's largest mmap threshold, so every batch and large activation is fresh memory;
    # faulting it in 4 KB pages took 66 ms a batch, in 2 MB pages 24 ms.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    _pin_malloc_thresholds()


def _pin_malloc_thresholds() -> None:
    """glibc malloc: fixed mmap threshold (its 32 MiB maximum) and no heap trimming.

    By default glibc serves large blocks with mmap and adapts the threshold as blocks are freed,
    so whether a step's 1-32 MiB activations reuse heap memory or fault in fresh pages depends on
    the allocation history: the same CPU training loop flipped between ~1,000 and ~30,000 page
    faults a step, 30-40% of its time (benchmarks/README.md). Pinned thresholds keep freed memory
    for reuse. Best effort: other C libraries are left alone.
    """
    libc = _glibc()
    if libc is None or os.environ.get("SIGNCONSOLE_NO_MALLOPT"):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
    libc.mallopt(m_trim_threshold, 1 << 30)


def release_free_heap() -> None:
    """glibc: hand the heap's free pages back to the kernel (`malloc_trim`), before forking.

    A free page kept in the heap is shared with a forked child, and the parent's next write to
    it, when malloc reuses it, copies it first; a released page is zero-filled instead. Best
    effort: other C libraries are left alone."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _glibc():
    """The C library when it is glibc on Linux (it has mallopt and malloc_trim), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def worker_processes_available() -> bool:
    """Loader workers are forked (they share the in-memory corpus copy-on-write). Fork is the
    default and safe with torch on Linux; macOS's system libraries are not fork-safe and Windows
    has no fork."""
    import multiprocessing

    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
