"""tools/folder2rec.py run as a user runs it: a subprocess with command-line flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from facerec.data.recordio import RecordIODataset

TOOL = Path(__file__).resolve().parents[2] / "tools" / "folder2rec.py"


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_folder2rec_packs_and_resizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    counts = {"id_b": 2, "id_a": 3, "id_c": 1}
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for j in range(count):
            bgr = rng.integers(0, 256, (30 + j, 20, 3), dtype=np.uint8)
            cv2.imwrite(str(root / name / f"{j}.png"), bgr)
    out = tmp_path / "out"
    proc = run_tool("--root", root, "--out", out, "--size", "16", "--quality", "90", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "6 images, 3 identities" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["property", "train.idx", "train.rec"]
    assert (out / "property").read_text() == "3,16,16\n"
    ds = RecordIODataset(out)
    assert len(ds) == 6 and ds.num_classes == 3
    np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 1, 2])  # id_a, id_b, id_c sorted
    np.testing.assert_array_equal(ds.identity_ranges, [[1, 4], [4, 6], [6, 7]])
    for i in range(6):
        image, label = ds[i]
        assert image.shape == (16, 16, 3) and label == ds.labels[i]
        assert ds.read_record(i)[1][:3] == b"\xff\xd8\xff"  # resized images become JPEG


def test_folder2rec_reports_user_errors_in_one_line(tmp_path: Path) -> None:
    proc = run_tool("--root", tmp_path / "missing", "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: data root ") and "missing" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "out" / "train.rec").exists()
