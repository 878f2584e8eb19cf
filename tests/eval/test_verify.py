"""``facerec verify`` and the calibration a checkpoint or ONNX model carries."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_checkpoint import make_checkpoint

from facerec.cli import main
from facerec.eval.verify_cli import (
    read_calibration,
    write_checkpoint_calibration,
    write_onnx_calibration,
)
from facerec.metrics.calibration import ONNX_KEY, Calibration, fit_calibration

SIZE = 32


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("verify")


@pytest.fixture(scope="module")
def ckpt(work: Path) -> Path:
    return make_checkpoint(work / "model.ckpt", 32, 6, images_per_identity=2, size=SIZE)


@pytest.fixture(scope="module")
def cal() -> Calibration:
    rng = np.random.default_rng(5)
    s = np.r_[rng.normal(0.6, 0.1, 1000), rng.normal(0.1, 0.1, 2000)]
    y = np.r_[np.ones(1000, bool), np.zeros(2000, bool)]
    return fit_calibration(s, y, "isotonic", benchmark="synthetic")


@pytest.fixture(scope="module")
def calibrated(ckpt: Path, cal: Calibration, work: Path) -> Path:
    return write_checkpoint_calibration(ckpt, cal, work / "calibrated.ckpt")


@pytest.fixture(scope="module")
def images(work: Path) -> tuple[Path, Path]:
    from facerec.export.check import synthetic_face_batch

    faces = synthetic_face_batch(2, (SIZE, SIZE), seed=1)
    out = []
    for i, face in enumerate(faces):
        p = work / f"face{i}.png"
        cv2.imwrite(str(p), np.ascontiguousarray(face[:, :, ::-1]))
        out.append(p)
    return out[0], out[1]


FAST = ("--exporter", "torchscript")  # the metadata is written after either exporter


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["verify", *map(str, argv), "--device", "cpu"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_checkpoint_copy_carries_the_calibration(ckpt, calibrated, cal, work):
    assert read_calibration(checkpoint=ckpt) is None  # the original is untouched
    assert read_calibration(checkpoint=calibrated).to_dict() == cal.to_dict()
    inplace = work / "inplace.ckpt"
    inplace.write_bytes(ckpt.read_bytes())
    assert write_checkpoint_calibration(inplace, cal) == inplace
    assert read_calibration(checkpoint=inplace).thresholds == cal.thresholds
    from facerec.inference import load_facerec_checkpoint

    assert load_facerec_checkpoint(inplace).input_size == (SIZE, SIZE)  # still a model


def test_thresholds_round_trip_through_onnx_export(calibrated, cal, work, capsys):
    import onnx

    out = work / "calibrated.onnx"
    rc = main(["export", "--checkpoint", str(calibrated), "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    assert "facerec.calibration" in capsys.readouterr().out
    props = {m.key: m.value for m in onnx.load(str(out)).metadata_props}
    stored = json.loads(props[ONNX_KEY])
    assert {t["far"]: t["threshold"] for t in stored["thresholds"]} == cal.thresholds
    assert read_calibration(onnx=out).to_dict() == cal.to_dict()
    # the preprocessing metadata is still read as before
    from facerec.inference import read_onnx_metadata

    assert read_onnx_metadata(out).input_size == (SIZE, SIZE)
    # a calibration written into an exported model afterwards, in a copy
    plain = work / "plain.onnx"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(calibrated.parent / "model.ckpt"),
                "--out",
                str(plain),
                *FAST,
            ]
        )
        == 0
    )
    assert read_calibration(onnx=plain) is None
    copy = write_onnx_calibration(plain, cal, work / "plain_cal.onnx")
    assert read_calibration(onnx=plain) is None
    assert read_calibration(onnx=copy).thresholds == cal.thresholds


def test_verify_with_calibration(calibrated, images, cal, capsys):
    from facerec.inference import FileImages, embed_images, load_checkpoint_embedder

    a, b = images
    rc, out, _ = _run(capsys, a, b, "--checkpoint", calibrated, "--far", "1e-2", "--json")
    assert rc == 0
    r = json.loads(out)
    emb = embed_images(load_checkpoint_embedder(calibrated), FileImages([a, b]), 2, False, 1)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert r["score"] == pytest.approx(float(emb[0] @ emb[1]), abs=1e-5)
    assert r["probability"] == pytest.approx(float(cal.probability(r["score"])))
    assert r["threshold"] == cal.thresholds[1e-2]
    assert r["same"] == (r["score"] >= cal.thresholds[1e-2])
    # an image against itself: cosine 1, certainly the same person
    rc, out, _ = _run(capsys, a, a, "--checkpoint", calibrated)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("score 1.0000")
    assert "match probability 1.0000 (isotonic calibration fitted on synthetic" in lines[1]
    assert "decision at FAR 1e-3" in lines[2] and lines[2].endswith("same person")


def test_verify_onnx_equals_checkpoint(calibrated, images, work, capsys):
    onnx_path = work / "calibrated.onnx"
    if not onnx_path.exists():
        assert (
            main(["export", "--checkpoint", str(calibrated), "--out", str(onnx_path), *FAST]) == 0
        )
    a, b = images
    got = []
    for flag, model in (("--checkpoint", calibrated), ("--onnx", onnx_path)):
        rc, out, err = _run(capsys, a, b, flag, model, "--json")
        assert rc == 0, err
        got.append(json.loads(out))
    assert got[0]["score"] == pytest.approx(got[1]["score"], abs=1e-4)
    assert got[0]["threshold"] == got[1]["threshold"]


def test_verify_without_calibration(ckpt, images, capsys):
    a, b = images
    rc, out, _ = _run(capsys, a, b, "--checkpoint", ckpt)
    assert rc == 0
    assert "carries no calibration" in out and "--calibrate" in out
    assert "decision: none without a threshold" in out
    rc, out, _ = _run(capsys, a, a, "--checkpoint", ckpt, "--threshold", "0.5")
    assert rc == 0 and "decision at --threshold (threshold 0.5000): same person" in out


def test_verify_errors_are_one_line(calibrated, ckpt, images, cal, work, capsys):
    a, _ = images
    cases = [
        ((a, work / "missing.png", "--checkpoint", calibrated), "missing.png: no such file"),
        ((a, work, "--checkpoint", calibrated), "a folder; expected an image file"),
        ((a, a, "--checkpoint", work / "none.ckpt"), "none.ckpt"),
        ((a, a, "--checkpoint", calibrated, "--far", "2"), "--far 2.0: expected"),
        ((a, a, "--checkpoint", calibrated, "--far", "1e-6"), "no threshold at FAR 1e-6"),
    ]
    notimg = work / "notimg.png"
    notimg.write_text("not an image")
    cases.append(((a, notimg, "--checkpoint", calibrated), "notimg.png"))
    bad = work / "bad_cal.ckpt"
    write_checkpoint_calibration(ckpt, cal, bad)
    import torch

    d = torch.load(str(bad), weights_only=True)
    d["facerec"]["calibration"]["method"] = "__import__('os').system('x')"
    torch.save(d, str(bad))
    cases.append(((a, a, "--checkpoint", bad), "bad calibration entry 'method'"))
    for argv, msg in cases:
        rc, out, err = _run(capsys, *argv)
        assert rc == 2, (argv, out, err)
        assert msg in err, (msg, err)
        assert err.startswith("facerec verify: error: ") and err.count("\n") == 1, err


def test_verify_align_refuses_an_image_without_a_face(calibrated, images, work, capsys):
    pytest.importorskip("facenet_pytorch")
    blank = work / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 120, 3), 128, np.uint8))
    rc, _, err = _run(capsys, blank, images[0], "--checkpoint", calibrated, "--align")
    assert rc == 2
    assert "blank.png: no face found" in err.splitlines()[-1]
