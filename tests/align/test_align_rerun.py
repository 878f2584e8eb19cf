"""``facerec align`` re-runs and names: photos that share a name keep their extension, images
unreadable before are tried again (no-face results are kept), the report's margin column, and
the detector's device defaults to ``auto``. A stand-in detector with known boxes keeps it fast."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from facerec import cli
from facerec.align import ARCFACE_TEMPLATE_112
from facerec.align.cli import align_folder, summary
from facerec.align.detect import Detections
from facerec.align.pipeline import face_values
from facerec.data.image import read_image
from facerec.errors import DataError


def _face(box) -> tuple[np.ndarray, np.ndarray]:
    """A box and the template's 5 points scaled into it."""
    x1, y1, x2, y2 = box
    lm = ARCFACE_TEMPLATE_112 / 112 * [x2 - x1, y2 - y1] + [x1, y1]
    return np.array(box, np.float32), lm.astype(np.float32)


class Boxes:
    """Detects the faces given for each image's mean grey level (photos are flat colours);
    records how many images it was asked about."""

    def __init__(self, faces: dict[int, list]) -> None:
        self.faces, self.seen = faces, 0

    def detect_batch(self, images):
        self.seen += len(images)
        out = []
        for im in images:
            got = [_face(b) for b in self.faces.get(int(im.mean().round()), [])]
            if not got:
                out.append(Detections.empty())
                continue
            boxes, lms = zip(*got, strict=True)
            scores = np.linspace(0.99, 0.9, len(got)).astype(np.float32)
            out.append(Detections(np.stack(boxes), scores, np.stack(lms)))
        return out


def _photo(path: Path, grey: int, size=(120, 160)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((*size, 3), grey, np.uint8))


def _report(out: Path) -> dict[str, list[dict[str, str]]]:
    rows: dict[str, list[dict[str, str]]] = {}
    with open(out / "align_report.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["path"], []).append(r)
    return rows


ONE = {100: [(40, 20, 100, 90)], 150: [(30, 10, 110, 100)]}


def test_photos_with_one_name_keep_their_extension(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    _photo(raw / "p" / "a.jpg", 100)
    _photo(raw / "p" / "a.png", 150)  # a.jpg and a.png both made p/a.png, one crop was lost
    _photo(raw / "p" / "b.png", 100)
    counts = align_folder(raw, out, detector=Boxes(ONE), progress=False)
    assert (counts["ok"], counts["crops"], counts["renamed"]) == (3, 3, 2)
    assert sorted(p.name for p in (out / "p").iterdir()) == ["a.jpg.png", "a.png.png", "b.png"]
    rows = _report(out)
    assert rows["p/a.jpg"][0]["output"] == "p/a.jpg.png"
    assert rows["p/a.png"][0]["output"] == "p/a.png.png"
    # each crop is its own photo's: the two photos differ in grey level
    assert read_image(out / "p" / "a.jpg.png").mean() == pytest.approx(100, abs=1)
    assert read_image(out / "p" / "a.png.png").mean() == pytest.approx(150, abs=1)
    assert "2 crops keep their photo's extension" in summary(counts, out, "framed")
    # with --keep all too: a.jpg_0.png would clash with a_0's from a.png
    every = align_folder(raw, tmp_path / "every", keep="all", detector=Boxes(ONE), progress=False)
    assert every["crops"] == 3
    assert sorted(p.name for p in (tmp_path / "every" / "p").iterdir()) == [
        "a.jpg_0.png", "a.png_0.png", "b_0.png",
    ]  # fmt: skip
    # names that still collide after keeping the extension are refused, one line, nothing written
    _photo(raw / "p" / "a.jpg.png", 100)
    with pytest.raises(DataError, match=r"'p/a.jpg' and 'p/a.jpg.png' would write the same crop"):
        align_folder(raw, tmp_path / "o2", detector=Boxes(ONE), progress=False)
    assert not (tmp_path / "o2").exists()


def test_rerun_redoes_crops_an_earlier_version_shared(tmp_path):
    """A report of the version before wrote both photos to p/a.png: both are aligned again."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    _photo(raw / "p" / "a.jpg", 100)
    _photo(raw / "p" / "a.png", 150)
    _photo(raw / "p" / "b.png", 100)
    align_folder(raw, out, detector=Boxes(ONE), progress=False)
    report = out / "align_report.csv"
    with open(report, newline="") as f:
        old = list(csv.DictReader(f))
    columns = [c for c in old[0] if c != "margin"]  # the earlier version had no margin column
    for r in old:
        r["output"] = r["output"].replace(".jpg.png", ".png").replace("a.png.png", "a.png")
    with open(report, "w", newline="") as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(old)
    (out / "p" / "a.png").write_bytes((out / "p" / "a.png.png").read_bytes())
    det = Boxes(ONE)
    counts = align_folder(raw, out, detector=det, progress=False)
    assert det.seen == 2 and counts["skipped"] == 1  # b.png's old row is still good
    assert {r[0]["output"] for r in _report(out).values()} == {
        "p/a.jpg.png", "p/a.png.png", "p/b.png",
    }  # fmt: skip


def test_unreadable_images_are_tried_again_no_face_kept(tmp_path, capsys):
    raw, out = tmp_path / "raw", tmp_path / "out"
    _photo(raw / "x" / "good.png", 100)
    _photo(raw / "x" / "wall.png", 60)  # no face
    (raw / "x" / "late.jpg").write_bytes(b"\xff\xd8 half copied")
    counts = align_folder(raw, out, detector=Boxes(ONE), progress=False)
    assert (counts["ok"], counts["no_face"], counts["unreadable"]) == (1, 1, 1)
    _photo(raw / "x" / "late.jpg", 150)  # the copy finished
    det = Boxes(ONE)
    counts = align_folder(raw, out, detector=det, progress=False)
    assert det.seen == 1  # only the formerly unreadable photo; the no-face one is kept
    assert (counts["retried"], counts["skipped"], counts["ok"], counts["no_face"]) == (1, 2, 2, 1)
    assert (out / "x" / "late.png").is_file()
    assert _report(out)["x/late.jpg"][0]["status"] == "ok"
    assert "1 unreadable before tried again" in summary(counts, out, "framed")
    det = Boxes(ONE)  # --redo: every photo again, the no-face one too
    assert align_folder(raw, out, detector=det, redo=True, progress=False)["skipped"] == 0
    assert det.seen == 3


def test_report_lists_several_faces_with_the_margin(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    # a face near the centre, a bigger one cut by the left edge (largest would take it)
    boxes = [(70, 30, 120, 90), (-40, 10, 40, 100)]
    _photo(raw / "two.png", 100)
    _photo(raw / "one.png", 150)
    align_folder(raw, out, detector=Boxes({100: boxes, **{150: ONE[150]}}), progress=False)
    rows = _report(out)
    (two,) = rows["two.png"]
    assert (two["status"], two["faces"], two["face"]) == ("multiple", "2", "0")
    v = face_values(np.array(boxes, np.float32), (120, 160), "framed")
    assert float(two["x1"]) == 70 and float(two["margin"]) == pytest.approx(v[0] - v[1], abs=1e-4)
    assert rows["one.png"][0]["margin"] == ""  # one face: no runner-up


def test_device_defaults_to_auto(tmp_path, monkeypatch, capsys):
    import torch

    import facerec.align.cli as align_cli

    asked = {}

    def fake_build(**kw):
        asked.update(kw)
        return Boxes(ONE)

    monkeypatch.setattr(align_cli, "MTCNNDetector", fake_build)
    _photo(tmp_path / "raw" / "a.png", 100)
    argv = ["align", "--in", str(tmp_path / "raw"), "--out", str(tmp_path / "o"), "--no-progress"]
    assert cli.main(argv) == 0
    assert asked["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert cli.main([*argv, "--device", "cuda:9", "--redo"]) == (
        0 if torch.cuda.is_available() else 2
    )
    if not torch.cuda.is_available():
        assert "CUDA is not available" in capsys.readouterr().err
