"""tools/make_pairs.py: the pairs CSV of the README's real-photo example, run as a user runs it."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

TOOL = Path(__file__).resolve().parents[2] / "tools" / "make_pairs.py"


def run_tool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_make_pairs_is_deterministic_balanced_and_relative(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    for i in range(4):
        (root / f"p{i}").mkdir(parents=True)
        for j in range(4):
            cv2.imwrite(str(root / f"p{i}" / f"{j}.png"), np.full((8, 8), 10 * i + j, np.uint8))
    args = ("--root", "faces", "--identities", "p1", "p2", "p3", "--pairs", "10")
    first = run_tool(*args, "--out", "a.csv", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert run_tool(*args, "--out", "b.csv", cwd=tmp_path).returncode == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    rows = list(csv.reader((tmp_path / "a.csv").open()))
    assert rows[0] == ["path1", "path2", "same"]
    body = rows[1:]
    assert len(body) == 20 and len({tuple(r) for r in body}) == 20  # no repeated pair
    for a, b, same in body:
        assert (tmp_path / a).is_file() and (tmp_path / b).is_file()  # relative to the CSV
        assert Path(a).parent.name != "p0" and Path(b).parent.name != "p0"
        assert (Path(a).parent == Path(b).parent) == (same == "1")
    assert sum(r[2] == "1" for r in body) == 10


def test_make_pairs_refuses_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    for i in range(2):
        (root / f"p{i}").mkdir(parents=True)
        for j in range(3):
            cv2.imwrite(str(root / f"p{i}" / f"{j}.png"), np.zeros((8, 8), np.uint8))
    cases = {
        ("--identities", "nobody"): "--identities nobody not found",
        ("--pairs", "7"): "only 6 genuine and 9 impostor pairs",
        ("--out", "faces/p0/x.csv"): "inside --root",
    }
    for extra, message in cases.items():
        out = () if "--out" in extra else ("--out", "x.csv")
        proc = run_tool("--root", "faces", *extra, *out, cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1
    assert not (tmp_path / "x.csv").exists() and not (root / "p0" / "x.csv").exists()
