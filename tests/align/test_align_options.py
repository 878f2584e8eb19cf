"""``facerec eval --align`` and ``facerec embed --align``: raw photos aligned on the fly give what
aligning first (``facerec align``) and then evaluating the crops gives. The model's input (64x64)
differs from the crops' (112x112): both paths bring the crop to the model with its resize."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_checkpoint import make_checkpoint

from facerec import cli
from facerec.align.source import AlignedImages, FaceTable, locate_faces
from facerec.data.image import read_image
from facerec.data.sources import FileImages

SIZE = 64  # the tiny model's input


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An IResNet-18 x0.25 (64x64, D=32) after one training step on synthetic faces."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    return make_checkpoint(path, embedding_dim=32, num_classes=4, images_per_identity=2, size=SIZE)


@pytest.fixture(scope="module")
def raw(tmp_path_factory, orl_root) -> Path:
    """LFW-style raw photos: 6 ORL people x 2, each face at a random place and size in a 180x200
    frame (raw/sN/k.jpg), a pairs CSV over them, and a photo of a wall (raw/wall/1.png)."""
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("raw")
    people, names = [1, 4, 9, 15, 22, 31], []
    for p in people:
        for k in (1, 6):
            face = read_image(orl_root / f"s{p}" / f"{k}.pgm")
            s = rng.uniform(0.9, 1.5)
            face = cv2.resize(face, (round(92 * s), round(112 * s)))
            frame = np.empty((200, 180, 3), np.uint8)
            frame[:] = rng.integers(40, 200, 3)
            y = rng.integers(0, 200 - face.shape[0] + 1)
            x = rng.integers(0, 180 - face.shape[1] + 1)
            frame[y : y + face.shape[0], x : x + face.shape[1]] = face
            name = f"s{p}/{k}.jpg"
            (root / f"s{p}").mkdir(exist_ok=True)
            cv2.imwrite(str(root / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            names.append(name)
    rows = []
    for i in range(6):  # genuine pairs and impostor pairs, alternating (both in each fold)
        rows.append(f"{names[2 * i]},{names[2 * i + 1]},1")
        rows.append(f"{names[2 * i]},{names[(2 * i + 3) % 12]},0")
    (root / "pairs.csv").write_text("path1,path2,same\n" + "\n".join(rows) + "\n")
    wall = np.full((150, 150, 3), (150, 170, 190), np.uint8)
    (root / "wall").mkdir()
    cv2.imwrite(str(root / "wall" / "1.png"), wall)
    return root


@pytest.fixture(scope="module")
def aligned(raw, tmp_path_factory) -> Path:
    """``facerec align`` of the raw photos: 112x112 crops, the default (the wall has no face)."""
    out = tmp_path_factory.mktemp("aligned")
    argv = ["align", "--in", str(raw), "--out", str(out), "--no-progress", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert len(list(out.rglob("*.png"))) == 12
    return out


def _eval(tmp: Path, name: str, ckpt: Path, pairs: Path, *extra: str) -> dict:
    out = tmp / name
    argv = ["eval", "--checkpoint", str(ckpt), "--pairs-csv", str(pairs), "--folds", "2"]
    assert cli.main([*argv, "--device", "cpu", "--out", str(out), *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_eval_align_equals_align_then_eval(raw, aligned, checkpoint, tmp_path):
    crops_csv = aligned / "pairs.csv"
    crops_csv.write_text((raw / "pairs.csv").read_text().replace(".jpg", ".png"))

    on_the_fly = _eval(tmp_path, "fly", checkpoint, raw / "pairs.csv", "--align")
    first = _eval(tmp_path, "first", checkpoint, crops_csv)
    a = next(iter(on_the_fly["models"].values()))["verification"]["pairs"]
    b = next(iter(first["models"].values()))["verification"]["pairs"]
    assert a["num_pairs"] == b["num_pairs"] == 12
    assert a["accuracy_mean"] == b["accuracy_mean"]
    assert a["auc"] == b["auc"]
    np.testing.assert_allclose(a["roc"]["thresholds"][1:], b["roc"]["thresholds"][1:], atol=1e-4)
    assert a["align"]["no_face"] == 0 and a["align"]["images"] == 12
    assert on_the_fly["settings"]["align"]["keep"] == "framed"
    assert on_the_fly["settings"]["align"]["size"] == [112, 112]  # then resized to the model's
    assert first["settings"]["align"] is None and "align" not in b


def test_eval_align_keeps_pairs_without_a_face(raw, checkpoint, tmp_path, capsys):
    csv_path = raw / "with_wall.csv"
    text = (raw / "pairs.csv").read_text()
    csv_path.write_text(text + "wall/1.png,s1/1.jpg,0\ns1/6.jpg,wall/1.png,0\n")
    res = _eval(tmp_path, "wall", checkpoint, csv_path, "--align")
    rep = next(iter(res["models"].values()))["verification"]["with_wall"]
    assert rep["num_pairs"] == 14  # the pairs with the wall are scored, not dropped
    assert rep["align"]["no_face"] == 1 and rep["align"]["images"] == 13
    err = capsys.readouterr().err
    assert "with_wall: no face found in 1 of 13 images; they are centre-cropped" in err


def test_embed_align_equals_embedding_the_crops(raw, aligned, checkpoint, tmp_path, capsys):
    ck = ["--checkpoint", str(checkpoint), "--no-progress"]
    fly, crops = tmp_path / "fly.npy", tmp_path / "crops.npy"
    assert (
        cli.main(["embed", *ck, "--align", str(raw / "s1"), str(raw / "wall"), "--out", str(fly)])
        == 0
    )
    assert "1 without a face centre-cropped" in capsys.readouterr().out
    assert cli.main(["embed", *ck, str(aligned / "s1"), "--out", str(crops)]) == 0
    e_fly, e_crops = np.load(fly), np.load(crops)
    assert e_fly.shape == (3, 32) and e_crops.shape == (2, 32)
    np.testing.assert_allclose(e_fly[:2], e_crops, atol=1e-4)


def test_aligned_images_fall_back_to_a_centre_crop(raw):
    images = FileImages([raw / "s1" / "1.jpg", raw / "wall" / "1.png", raw / "nope.jpg"])

    class OneFace:
        def detect_batch(self, imgs):
            from facerec.align.detect import Detections

            lm = np.array([[[60, 80], [100, 80], [80, 100], [65, 120], [95, 120]]], np.float32)
            out = [
                Detections(np.array([[40, 50, 120, 150]], np.float32), np.ones(1, np.float32), lm)
            ]
            return out + [Detections.empty()] * (len(imgs) - 1)

    table = locate_faces(images, OneFace())
    assert table.status.tolist() == ["ok", "no_face", "unreadable"]
    assert isinstance(table, FaceTable) and table.summary()["no_face"] == 1
    src = AlignedImages(images, table, (SIZE, SIZE))
    assert src[0].shape == src[1].shape == (SIZE, SIZE, 3)
    assert (src[1] == [190, 170, 150]).all()  # the wall (written as BGR), centre-cropped
    with pytest.raises(Exception, match="image file not found"):
        src[2]  # an unreadable image raises when read, as without --align


def test_eval_align_identification(raw, checkpoint, tmp_path):
    """Gallery, probe and distractor folders of raw photos, aligned on the fly and counted."""
    import shutil

    root = tmp_path / "ident"
    for part, k in (("gallery", "1"), ("probe", "6")):
        for person in ("s1", "s4", "s9"):
            (root / part / person).mkdir(parents=True)
            shutil.copy(raw / person / f"{k}.jpg", root / part / person / f"{k}.jpg")
    (root / "distractors").mkdir()
    shutil.copy(raw / "s15" / "1.jpg", root / "distractors" / "a.jpg")
    shutil.copy(raw / "wall" / "1.png", root / "distractors" / "wall.png")
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", str(checkpoint), "--device", "cpu", "--out", str(out)]
    argv += ["--gallery", str(root / "gallery"), "--probe", str(root / "probe")]
    assert cli.main([*argv, "--distractors", str(root / "distractors"), "--align"]) == 0
    res = json.loads((out / "results.json").read_text())
    ident = next(iter(res["models"].values()))["identification"]
    assert ident["num_probes"] == 3 and ident["num_gallery_images"] == 3
    counts = {k: (v["images"], v["ok"], v["no_face"]) for k, v in ident["align"].items()}
    assert counts == {"gallery": (3, 3, 0), "probe": (3, 3, 0), "distractors": (2, 1, 1)}
