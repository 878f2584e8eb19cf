"""The benchmarks that drive facerec's training, data and index APIs themselves run at their
smoke sizes here, so a change to those APIs cannot leave a benchmark broken unnoticed (the
offline-mining benchmark once stopped at the first hard-identity run after the data callbacks
moved to the CLI). Each prints its table; the test checks the exit code and the table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "tools" / "bench"

CASES = {
    "offline_mining": (["--quick", "--threads", "1"], "| offline |"),
    "train_throughput": (
        "--depth 18 --width 0.0625 --size 32 --classes 20 --batch 8 --steps 2 --warmup 1".split(),
        "ArcFaceHead",
    ),
    "faiss_refresh": (["--quick", "--indexes", "flat", "ivf", "--threads", "1"], "ivf"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs_at_smoke_size(name: str, tmp_path: Path) -> None:
    args, expect = CASES[name]
    r = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert expect in r.stdout, r.stdout[-3000:]
