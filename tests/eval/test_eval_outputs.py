"""facerec eval's output folder and benchmark names (issue 21 §4, §6): checked before any work,
a run's files written together, names that leave their root refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facerec.cli import main as facerec_main
from facerec.errors import DataError
from facerec.eval.benchmarks import read_lfw


@pytest.fixture
def checkpoint(fit_run) -> Path:
    return fit_run.checkpoint


def _eval(ckpt: Path, out: Path, *extra: str) -> int:
    argv = ["eval", "--checkpoint", str(ckpt), "--synthetic", "--synthetic-pairs", "20"]
    return facerec_main([*argv, "--device", "cpu", "--out", str(out), *extra])


def test_second_run_leaves_no_file_of_the_first(tmp_path, checkpoint, capsys):
    out = tmp_path / "eval"
    assert _eval(checkpoint, out, "--report") == 0
    assert (out / "report.html").is_file()
    (out / "mine.txt").write_text("a user's file")
    assert _eval(checkpoint, out) == 0  # no --report this time
    assert not (out / "report.html").exists()  # the first run's report would mislead
    assert (out / "mine.txt").read_text() == "a user's file"  # never written by eval: kept
    listed = json.loads((out / ".facerec_eval_outputs.json").read_text())["files"]
    assert "results.json" in listed and "report.html" not in listed and "mine.txt" not in listed


def test_out_is_checked_before_any_work(tmp_path, checkpoint, capsys):
    a_file = tmp_path / "results"
    a_file.write_text("x")
    cases = {
        str(a_file): "is a file; expected a folder",
        str(checkpoint): "is the same as --checkpoint",
    }
    for out, words in cases.items():
        capsys.readouterr()
        assert _eval(checkpoint, Path(out)) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
        assert "embedding" not in err
    assert a_file.read_text() == "x" and checkpoint.is_file()


def test_repeated_pairs_are_counted(tmp_path, checkpoint, capsys):
    img = tmp_path / "img"
    img.mkdir()
    import cv2
    import numpy as np

    for k in range(4):
        cv2.imwrite(str(img / f"{k}.png"), np.full((32, 32, 3), 60 * k, np.uint8))
    rows = ["img/0.png,img/1.png,1", "img/1.png,img/0.png,1", "img/2.png,img/3.png,0"]
    rows += ["img/0.png,img/2.png,0", "img/0.png,img/1.png,1", "img/1.png,img/3.png,0"]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    argv = ["eval", "--checkpoint", str(checkpoint), "--pairs-csv", str(tmp_path / "p.csv")]
    assert facerec_main([*argv, "--folds", "2", "--out", str(tmp_path / "o")]) == 0
    assert "p: 2 of 6 pairs repeat an earlier pair" in capsys.readouterr().err


def test_lfw_names_that_leave_the_root_are_refused(tmp_path):
    root = tmp_path / "lfw"
    root.mkdir()
    (tmp_path / "pairs.txt").write_text("1 1\n../secret 1 2\nA 1 B 1\n")
    with pytest.raises(DataError, match=r"pairs.txt:2: name '../secret' leaves the image root"):
        read_lfw(tmp_path / "pairs.txt", root)
