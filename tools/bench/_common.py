"""Timing and memory helpers shared by the benchmark scripts (``from _common import ...``).

The scripts run as ``python tools/bench/NAME.py``, so this folder is on ``sys.path``; facerec
itself comes from the installed package (``pip install -e .``).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def best_time(
    fn: Callable[[], Any], repeats: int, warmup: Callable[[], Any] | None = None
) -> tuple[float, Any]:
    """``(minimum wall time of fn() over repeats runs, fn's last result)``.

    ``warmup`` (default: ``fn``) runs once first, untimed; pass a cheaper call where one full
    run takes minutes. The minimum is the run least disturbed by other processes.
    """
    (warmup or fn)()
    times, out = [], None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def rss_mb() -> float:
    """Resident set size of this process now, MiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (ru_maxrss: KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def proc_status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (0 where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measured(fn: Callable[[], Any], repeats: int = 1) -> tuple[float, float, int, Any]:
    """``(wall seconds, CPU seconds, peak extra resident bytes, result)`` of ``fn()``.

    With ``repeats`` > 1 the run with the least wall time is kept (the least disturbed by other
    processes on a shared machine); the memory figure is the largest over the runs.
    """
    best, peak, out = None, 0, None
    for _ in range(max(1, repeats)):
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        before = proc_status("VmRSS")
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        peak = max(peak, proc_status("VmHWM") - before)
        if best is None or dt < best[0]:
            best = (dt, dc)
    return best[0], best[1], peak, out
