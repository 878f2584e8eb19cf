"""``facerec doctor`` without a model uses dlib-r29 when its package is installed, and each model
gets its own thresholds (issue 22)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from facerec.eval.doctor import MODEL_THRESHOLDS, THRESHOLD_KEYS, DoctorOptions, model_thresholds
from facerec.eval.doctor_cli import build_parser, resolve_options
from facerec.eval.doctor_cli import main as doctor_main

installed = pytest.mark.skipif(
    importlib.util.find_spec("face_recognition_models") is None,
    reason="face-recognition-models (facerec[pretrained]) not installed",
)


def test_each_model_gets_its_thresholds() -> None:
    from facerec.models import DlibResNet, IResNet

    dlib, why = model_thresholds("dlib-r29")
    assert dlib == MODEL_THRESHOLDS["dlib-r29"] and "dlib-r29's own" in why
    # dlib's cone: its near-duplicate and split bars sit far above facerec's defaults
    d = DoctorOptions()
    assert dlib["near_duplicate"] > d.near_duplicate and dlib["split"] > d.split
    tuned, why = model_thresholds("runs/x/last.ckpt", DlibResNet())  # fine-tuned from dlib
    assert tuned == dlib and "DlibResNet" in why
    for model, net in (("runs/x/last.ckpt", IResNet(depth=18, width=0.0625)), ("m.onnx", None)):
        own, why = model_thresholds(model, net)
        assert own == {k: getattr(d, k) for k in THRESHOLD_KEYS} and "defaults" in why


def test_flags_override_the_model_thresholds_one_by_one(capsys) -> None:
    args = build_parser().parse_args(["--data", "d", "--checkpoint", "dlib-r29", "--split", "0.5"])
    opt = resolve_options(args)
    want = MODEL_THRESHOLDS["dlib-r29"]
    assert opt.split == 0.5
    assert (opt.near_duplicate, opt.overlap) == (want["near_duplicate"], want["overlap"])
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("thresholds: near duplicate 0.998, mislabel margin 0, split 0.5,")
    assert line.endswith("(dlib-r29's own (measured on ORL); given: split)")
    plain = resolve_options(build_parser().parse_args(["--data", "d", "--onnx", "m.onnx"]))
    assert plain.near_duplicate == DoctorOptions().near_duplicate


def test_no_model_without_the_package_says_what_to_do(tmp_path: Path, monkeypatch, capsys) -> None:
    import facerec.models.dlib_resnet as dr
    from facerec.data.synthetic import write_synthetic_folder

    monkeypatch.setattr(dr, "PACKAGE", "no_such_weights_package_here")
    data = write_synthetic_folder(tmp_path / "data", 2, 2, size=32)
    rc = doctor_main(["--data", str(data), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "no --checkpoint or --onnx given" in err[0]
    assert 'pip install "facerec[pretrained]"' in err[0] and "--checkpoint CKPT" in err[0]
    assert not (tmp_path / "o").exists()  # nothing written


@installed
def test_no_model_uses_dlib_r29_with_its_thresholds(tmp_path: Path, capsys) -> None:
    import json

    from facerec.data.synthetic import write_synthetic_folder

    data = write_synthetic_folder(tmp_path / "data", 3, 3, size=32)
    out = tmp_path / "o"
    rc = doctor_main(["--data", str(data), "--out", str(out), "--workers", "1", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    lines = text.splitlines()
    assert lines[0].startswith("facerec doctor: no --checkpoint or --onnx: using dlib-r29 (dlib")
    assert lines[1].startswith("thresholds: near duplicate 0.998,")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 9
    for k in THRESHOLD_KEYS:
        assert summary["options"][k] == MODEL_THRESHOLDS["dlib-r29"][k]


def test_photos_not_cropped_for_the_model_get_one_warning_line(tmp_path):
    """The doctor's thresholds assume the model's own crops: photos of another size are named
    with the `facerec align` call that makes the right ones (measured on ORL, module doc)."""
    from types import SimpleNamespace

    import cv2
    import numpy as np

    from facerec.eval.doctor_cli import crop_hint, read_training_images

    for who in ("a", "b"):
        (tmp_path / who).mkdir()
        cv2.imwrite(str(tmp_path / who / "1.png"), np.zeros((112, 96, 3), np.uint8))
    data = read_training_images(tmp_path)
    dlib_like = SimpleNamespace(
        input_size=(150, 150), preprocess=SimpleNamespace(align_template="dlib")
    )
    hint = crop_hint(data, dlib_like)
    assert hint is not None and "the photos are 112x96" in hint
    assert "`facerec align --template dlib --size 150`" in hint
    same = SimpleNamespace(
        input_size=(112, 96), preprocess=SimpleNamespace(align_template="arcface")
    )
    assert crop_hint(data, same) is None
