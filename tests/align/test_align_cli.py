"""``facerec align`` end to end: real faces, a photo without a face, a corrupt file, two faces."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facerec import cli
from facerec.align import align_face
from facerec.align.cli import REPORT_COLUMNS, align_folder
from facerec.align.landmarks import read_landmarks
from facerec.data.image import read_image
from facerec.data.synthetic import SyntheticFaces
from facerec.errors import DataError


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _report(out: Path) -> list[dict[str, str]]:
    with open(out / "align_report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and tuple(rows[0]) == REPORT_COLUMNS
    return rows


@pytest.fixture
def photos(tmp_path, orl_root) -> Path:
    """raw/alice/{1,2}.jpg and raw/bob/1.png (ORL faces in larger frames), raw/bob/wall.png
    (no face), raw/carol/broken.jpg (corrupt), raw/pair/two.png (two ORL faces side by side)."""
    raw = tmp_path / "raw"
    frame = np.full((200, 260, 3), 90, np.uint8)
    for name, src, (y, x) in [
        ("alice/1.jpg", "s1/1.pgm", (40, 60)),
        ("alice/2.jpg", "s1/2.pgm", (20, 150)),
        ("bob/1.png", "s2/1.pgm", (70, 10)),
    ]:
        img = frame.copy()
        img[y : y + 112, x : x + 92] = read_image(orl_root / src)
        _write(raw / name, img)
    _write(raw / "bob" / "wall.png", np.full((150, 150, 3), (120, 160, 200), np.uint8))
    (raw / "carol").mkdir()
    (raw / "carol" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    left = read_image(orl_root / "s3" / "1.pgm")
    right = cv2.resize(read_image(orl_root / "s4" / "1.pgm"), (69, 84))  # a smaller face
    two = np.full((130, 200, 3), 60, np.uint8)
    two[5:117, 4:96] = left
    two[20:104, 120:189] = right
    _write(raw / "pair" / "two.png", two)
    return raw


def test_align_folder_end_to_end(photos, tmp_path, capsys):
    out = tmp_path / "aligned"
    assert cli.main(["align", "--in", str(photos), "--out", str(out), "--no-progress"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (
        f"aligned 4 of 6 images into {out} (3 one face, 1 several faces (kept framed), "
        f"1 no face, 1 unreadable); report: {out / 'align_report.csv'}"
    )
    rows = {r["path"]: r for r in _report(out)}
    assert set(rows) == {
        "alice/1.jpg", "alice/2.jpg", "bob/1.png", "bob/wall.png", "carol/broken.jpg",
        "pair/two.png",
    }  # fmt: skip
    assert {k: r["status"] for k, r in rows.items()} == {
        "alice/1.jpg": "ok", "alice/2.jpg": "ok", "bob/1.png": "ok", "bob/wall.png": "no_face",
        "carol/broken.jpg": "unreadable", "pair/two.png": "multiple",
    }  # fmt: skip
    assert "not a decodable image" in rows["carol/broken.jpg"]["error"]
    assert rows["pair/two.png"]["faces"] == "2" and rows["bob/wall.png"]["faces"] == "0"
    # the identity layout is kept; a face is written for each ok/multiple photo, nothing else
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["alice/1.png", "alice/2.png", "bob/1.png", "pair/two.png"]
    assert not list(out.rglob("*.tmp")) and not (out / ".align_report.partial.csv").exists()
    # each crop is the photo warped with the reported landmarks
    r = rows["alice/2.jpg"]
    lm = np.array([float(r[f"{p}_{c}"]) for p in ("le", "re", "nose", "lm", "rm") for c in "xy"])
    crop = read_image(out / "alice" / "2.png")
    assert crop.shape == (112, 112, 3)
    expect = align_face(read_image(photos / "alice" / "2.jpg"), lm.reshape(5, 2))
    # the report rounds landmarks to 0.01 px: a few grey levels at edges (3 with OpenCV 4.14's
    # warp, 2 with 5.0); a landmark 1 px off moves edges by tens of levels
    assert np.abs(crop.astype(int) - expect).max() <= 3
    # the larger of the two faces (left, ORL s3) was kept: its box starts in the left half
    assert float(rows["pair/two.png"]["x2"]) < 100


def test_rerun_skips_done_and_keep_all(photos, tmp_path, capsys):
    out = tmp_path / "aligned"
    align_folder(photos, out, progress=False)
    stamp = (out / "alice" / "1.png").stat().st_mtime_ns
    (out / "bob" / "1.png").unlink()  # a lost crop is redone
    counts = align_folder(photos, out, progress=False)
    # the crop lost is redone, the corrupt photo is tried again (it may have been replaced)
    assert counts["skipped"] == 4 and counts["crops"] == 1 and counts["retried"] == 1
    assert (counts["ok"], counts["multiple"], counts["no_face"], counts["unreadable"]) == (
        3,
        1,
        1,
        1,
    )
    assert (out / "alice" / "1.png").stat().st_mtime_ns == stamp
    assert len(_report(out)) == 6
    every = tmp_path / "every"
    counts = align_folder(photos, every, keep="all", size=(64, 64), progress=False)
    assert counts["crops"] == 5
    assert sorted(p.name for p in (every / "pair").iterdir()) == ["two_0.png", "two_1.png"]
    assert read_image(every / "pair" / "two_1.png").shape == (64, 64, 3)
    two = [r for r in _report(every) if r["path"] == "pair/two.png"]
    assert [r["face"] for r in two] == ["0", "1"]


def test_interrupted_run_continues(photos, tmp_path, detector):
    class Interrupted:
        calls = 0

        def detect_batch(self, images):
            Interrupted.calls += 1
            if Interrupted.calls == 2:
                raise KeyboardInterrupt
            return detector.detect_batch(images)

    out = tmp_path / "aligned"
    with pytest.raises(KeyboardInterrupt):
        align_folder(photos, out, detector=Interrupted(), batch_size=2, progress=False)
    assert (out / ".align_report.partial.csv").is_file()  # the journal of the first batch
    assert not (out / "align_report.csv").exists()
    seen: list[int] = []

    class Counting:
        def detect_batch(self, images):
            seen.append(len(images))
            return detector.detect_batch(images)

    counts = align_folder(photos, out, detector=Counting(), batch_size=2, progress=False)
    assert counts["skipped"] == 2 and sum(seen) == 3  # 6 photos, 2 done, 1 corrupt
    assert len(_report(out)) == 6


def test_landmarks_mode_needs_no_detector(tmp_path, monkeypatch, capsys):
    for name in ("facenet_pytorch", "facenet_pytorch.models", "facenet_pytorch.models.mtcnn"):
        monkeypatch.setitem(sys.modules, name, None)  # no detector available at all
    faces = SyntheticFaces(3, 2, size=96, seed=5)
    raw = tmp_path / "raw"
    lines = ["path,x1,y1,x2,y2,x3,y3,x4,y4,x5,y5,score"]
    for i in range(3):
        img, lm = faces.render_with_landmarks(i, 0)
        _write(raw / f"id{i}" / "a.png", img)
        lines.append(f"id{i}/a.png," + ",".join(f"{v:.4f}" for v in lm.reshape(-1)) + ",0.9")
    lines.append("id9/missing.png," + ",".join(["10"] * 10))
    (tmp_path / "lm.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "aligned"
    argv = ["align", "--in", str(raw), "--out", str(out), "--landmarks", str(tmp_path / "lm.csv")]
    assert cli.main([*argv, "--size", "112", "96", "--no-progress"]) == 0
    assert "aligned 3 of 4 images" in capsys.readouterr().out
    given = read_landmarks(tmp_path / "lm.csv")
    for i in range(3):
        crop = read_image(out / f"id{i}" / "a.png")
        img = read_image(raw / f"id{i}" / "a.png")
        np.testing.assert_array_equal(
            crop, align_face(img, given[f"id{i}/a.png"][0].landmarks, (112, 96))
        )
    assert {r["path"]: r["status"] for r in _report(out)}["id9/missing.png"] == "unreadable"
    # without --landmarks the detector is needed: one line naming the extra, exit 2
    assert cli.main(["align", "--in", str(raw), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'facerec[align]'" in err


def test_landmark_files(tmp_path):
    ijb = tmp_path / "ijb.txt"  # IJB's *_name_5pts_score.txt: space separated, score last
    ijb.write_text("1.jpg 1 2 3 4 5 6 7 8 9 10 0.95\n1.jpg 11 12 13 14 15 16 17 18 19 20 0.5\n")
    got = read_landmarks(ijb)
    assert list(got) == ["1.jpg"] and len(got["1.jpg"]) == 2
    np.testing.assert_array_equal(got["1.jpg"][0].landmarks, np.arange(1, 11).reshape(5, 2))
    assert got["1.jpg"][0].score == pytest.approx(0.95)
    pts68 = np.zeros((68, 2))
    pts68[[36, 39]] = [[10, 20], [20, 20]]
    lm68 = tmp_path / "68.csv"
    lm68.write_text("a.png," + ",".join(str(v) for v in pts68.reshape(-1)) + "\n")
    np.testing.assert_array_equal(read_landmarks(lm68)["a.png"][0].landmarks[0], [15, 20])
    bad = tmp_path / "bad.csv"
    bad.write_text("path,x1\na.png,1,2,3\n")
    with pytest.raises(DataError, match=r"bad.csv, line 2: expected an image path then 10"):
        read_landmarks(bad)
    with pytest.raises(DataError, match="landmark file not found"):
        read_landmarks(tmp_path / "nope.csv")
    outside = tmp_path / "outside.csv"
    outside.write_text("../x.png," + ",".join(["1"] * 10) + "\n")
    with pytest.raises(DataError, match="leaves the image root"):
        align_folder(tmp_path, tmp_path / "o", landmarks=outside, progress=False)


def test_bad_arguments_are_one_line(tmp_path, capsys, photos):
    assert cli.main(["align", "--in", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "photo folder (--in)" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["align", "--in", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "holds no image files" in capsys.readouterr().err
    assert cli.main(["align", "--in", str(photos), "--out", str(photos / "crops")]) == 2
    assert "inside --in" in capsys.readouterr().err
    out = tmp_path / "o"
    assert cli.main(["align", "--in", str(photos), "--out", str(out), "--size", "112", "80"]) == 2
    assert "no alignment template for a 112x80 crop" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def test_flat_folder(tmp_path, monkeypatch, capsys):
    """Photos directly in --in (no identity folders) come out directly in --out."""
    faces = SyntheticFaces(2, 1, size=80, seed=2)
    raw = tmp_path / "flat"
    lines = []
    for i in range(2):
        img, lm = faces.render_with_landmarks(i, 0)
        _write(raw / f"photo{i}.jpg", img)
        lines.append(f"photo{i}.jpg " + " ".join(f"{v:.3f}" for v in lm.reshape(-1)))
    (tmp_path / "lm.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    counts = align_folder(raw, out, landmarks=tmp_path / "lm.txt", ext=".jpg", progress=False)
    assert counts["ok"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["align_report.csv", "photo0.jpg", "photo1.jpg"]
    assert read_image(out / "photo1.jpg").shape == (112, 112, 3)
