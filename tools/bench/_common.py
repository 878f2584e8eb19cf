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
