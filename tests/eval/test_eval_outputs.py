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


def _sorted_pairs(root: Path, checkpoint: Path) -> Path:
    """The issue-21 CSV: 150 genuine pairs, then 150 impostor pairs. A genuine pair is two
    files of one synthetic face (cosine 1 - 1e-7 whatever the network); an impostor pair two
    faces this (3-step, barely trained) network scores below 0.99, so insightface's threshold
    grid (step 0.005) separates the classes and the right k-fold accuracy is 100 %."""
    import cv2
    import numpy as np

    from facerec.data.synthetic import SyntheticFaces
    from facerec.inference import embed_images, l2_normalize, load_embedder

    faces = SyntheticFaces(150, 1, size=32, seed=0)
    pics = [faces.render(1_000_000 + k, 0) for k in range(150)]
    img = root / "img"
    img.mkdir()
    for k, pic in enumerate(pics):
        for side in "ab":
            cv2.imwrite(str(img / f"{k}{side}.png"), cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))
    e = l2_normalize(embed_images(load_embedder(checkpoint, None, "cpu", 64, None), pics, 64))
    cos = e @ e.T
    apart = np.argwhere(np.triu(cos < 0.99, 1))[:150]
    assert len(apart) == 150
    rows = [f"img/{k}a.png,img/{k}b.png,1" for k in range(150)]
    rows += [f"img/{i}a.png,img/{j}b.png,0" for i, j in apart]
    (root / "sorted.csv").write_text("path1,path2,same\n" + "\n".join(rows) + "\n")
    return root / "sorted.csv"


def test_csv_sorted_by_class_gets_stratified_folds(tmp_path, checkpoint, capsys):
    """Issue 21 §3: contiguous folds of this file held one class each (1.33 % printed);
    stratified folds give the best-threshold accuracy, and results.json says how they were made."""
    csv = _sorted_pairs(tmp_path, checkpoint)
    out = tmp_path / "o"
    argv = ["eval", "--checkpoint", str(checkpoint), "--pairs-csv", str(csv), "--folds", "2"]
    assert facerec_main([*argv, "--device", "cpu", "--out", str(out)]) == 0
    rep = json.loads((out / "results.json").read_text())["models"]
    (v,) = (m["verification"]["sorted"] for m in rep.values())
    assert v["fold_method"] == "stratified by class, seed 0" and v["folds"] == 2
    assert v["best_accuracy"] == 1.0
    assert v["accuracy_mean"] == 1.0, v["fold_accuracies"]


def test_file_folds_with_one_class_are_refused_before_embedding(tmp_path, checkpoint, capsys):
    """A .bin is read as insightface reads it (10 contiguous folds): one sorted by class has
    folds of one class, refused in one line before any image is embedded."""
    import cv2
    import numpy as np

    from facerec.eval.benchmarks import write_bin

    rng = np.random.default_rng(1)
    pics = [cv2.imencode(".png", rng.integers(0, 256, (32, 32, 3), np.uint8))[1] for _ in range(40)]
    write_bin(tmp_path / "sorted.bin", [p.tobytes() for p in pics], [True] * 10 + [False] * 10)
    out = tmp_path / "o"
    argv = ["eval", "--checkpoint", str(checkpoint), "--bin", str(tmp_path / "sorted.bin")]
    assert facerec_main([*argv, "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sorted.bin: fold 1 of the 10 the file defines holds only genuine pairs" in err, err
    assert err.count("\n") == 1 and "embedding" not in err
    assert not out.exists()  # nothing written, not even the folder


def test_full_or_read_only_out_is_refused_before_embedding(
    tmp_path, checkpoint, capsys, monkeypatch
):
    import os
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    out = tmp_path / "o"
    assert _eval(checkpoint, out) == 2
    err = capsys.readouterr().err
    assert "MiB free" in err and err.count("\n") == 1 and "embedding" not in err, err
    assert not out.exists()
    monkeypatch.undo()
    # read-only (the tests may run as root, whom chmod does not stop: os.access is asked)
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m: False if Path(p) == tmp_path else real_access(p, m)
    )
    assert _eval(checkpoint, out) == 2
    err = capsys.readouterr().err
    assert "cannot write in" in err and err.count("\n") == 1 and "embedding" not in err, err
    assert not out.exists()


def test_out_inside_an_input_is_refused(tmp_path, checkpoint, capsys):
    (tmp_path / "img").mkdir()
    csv = tmp_path / "sorted.csv"
    csv.write_text("a,b,1\n")
    for out in (tmp_path / "img" / "eval", tmp_path / "sorted.csv"):
        argv = ["eval", "--checkpoint", str(checkpoint), "--pairs-csv", str(csv)]
        argv += ["--lfw-root", str(tmp_path / "img"), "--lfw-pairs", str(csv)]
        assert facerec_main([*argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "choose an output outside what the command reads" in err and err.count("\n") == 1
    assert not (tmp_path / "img" / "eval").exists()


def test_lfw_names_outside_the_root_only_with_the_flag(tmp_path):
    import cv2
    import numpy as np

    root = tmp_path / "lfw"
    for who in ("A", "B"):
        (root / who).mkdir(parents=True)
        for k in (1, 2):
            cv2.imwrite(str(root / who / f"{who}_{k:04d}.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "secret").mkdir()
    # root/../secret/../secret_0001.jpg, the path LFW's layout spells for '../secret' 1
    cv2.imwrite(str(tmp_path / "secret_0001.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "pairs.txt").write_text("2 1\nA 1 2\nA 1 B 1\nB 1 2\nA 2 /x 1\n")
    with pytest.raises(
        DataError, match=r"pairs.txt:5: name '/x' leaves .* or --allow-outside-root"
    ):
        read_lfw(tmp_path / "pairs.txt", root)
    # a name with a separator is read as the path it spells only when allowed
    (tmp_path / "pairs.txt").write_text("2 1\nA 1 2\nA 1 B 1\nB 1 2\nA 2 ../secret 1\n")
    with pytest.raises(DataError, match="leaves the image root"):
        read_lfw(tmp_path / "pairs.txt", root)
    b = read_lfw(tmp_path / "pairs.txt", root, allow_outside_root=True)
    assert b.num_pairs == 4 and b.fold_method == "LFW pairs.txt: the file's 2 folds"
