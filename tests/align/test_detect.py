"""The detector interface and MTCNN (facenet-pytorch) on real faces; the missing extra's error."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from facerec.align.detect import Detections, FaceDetector, MTCNNDetector
from facerec.align.pipeline import choose_faces, detect_images
from facerec.data.image import read_image
from facerec.errors import ConfigError, DataError


def _anatomical(lm: np.ndarray, box: np.ndarray) -> bool:
    """Left eye left of the right eye, eyes above the nose above the mouth, all in the box."""
    (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = lm
    inside = (
        (lm[:, 0] >= box[0]) & (lm[:, 0] <= box[2]) & (lm[:, 1] >= box[1]) & (lm[:, 1] <= box[3])
    )
    return bool(inside.all() and lex < rex and lmx < rmx and max(ley, rey) < ny < min(lmy, rmy))


def test_mtcnn_on_real_faces(orl_root, detector):
    """Each ORL person's first photo (40 people, one image each keeps this test about 2 s;
    `facerec align` over all 400 finds exactly one face in each, see README)."""
    images = [read_image(orl_root / f"s{i}" / "1.pgm") for i in range(1, 41)]
    assert isinstance(detector, FaceDetector)
    dets = detector.detect_batch(images)
    assert len(dets) == 40
    one = [d for d in dets if len(d) == 1]
    assert len(one) >= 38, [len(d) for d in dets]  # at least 95 %
    for d in one:
        assert d.boxes.shape == (1, 4) and d.boxes.dtype == np.float32
        assert d.scores.shape == (1,) and 0.9 < d.scores[0] <= 1.0
        assert d.landmarks.shape == (1, 5, 2) and d.landmarks.dtype == np.float32
        assert _anatomical(d.landmarks[0], d.boxes[0]), (d.landmarks[0], d.boxes[0])


def test_batches_of_mixed_sizes_equal_one_by_one(orl_root, detector):
    a = read_image(orl_root / "s5" / "3.pgm")
    b = cv2.resize(read_image(orl_root / "s9" / "2.pgm"), (150, 170))
    c = read_image(orl_root / "s7" / "4.pgm")
    batch = detector.detect_batch([a, b, c, np.zeros((8, 8, 3), np.uint8)])
    assert len(batch[3]) == 0  # smaller than the smallest face searched for
    for img, d in zip([a, b, c], batch, strict=False):
        single = detector.detect(img)
        assert len(single) == len(d) == 1
        np.testing.assert_allclose(d.landmarks, single.landmarks, atol=1e-3)
        np.testing.assert_allclose(d.boxes, single.boxes, atol=1e-3)


def test_big_photos_are_searched_shrunk_and_mapped_back(orl_root, detector):
    img = read_image(orl_root / "s2" / "1.pgm")
    big = cv2.resize(img, (92 * 8, 112 * 8), interpolation=cv2.INTER_CUBIC)
    (full,) = detect_images(detector, [img], max_side=0)
    (shrunk,) = detect_images(detector, [big], max_side=112)
    assert len(full) == len(shrunk) == 1
    # the same face, in the big photo's pixels: within a pixel of the small photo's (x8)
    np.testing.assert_allclose((shrunk.landmarks + 0.5) / 8 - 0.5, full.landmarks, atol=1.0)


def test_no_face_in_noise_or_flat_images(detector):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    flat = np.full((100, 100, 3), 128, np.uint8)
    assert [len(d) for d in detector.detect_batch([noise, flat])] == [0, 0]


def test_detector_rejects_non_rgb_uint8(detector):
    with pytest.raises(DataError, match=r"RGB uint8 images \(H, W, 3\)"):
        detector.detect(np.zeros((50, 50), np.uint8))


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    # a Python without facenet-pytorch: importing it raises ImportError
    for name in ("facenet_pytorch", "facenet_pytorch.models", "facenet_pytorch.models.mtcnn"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"pip install 'facerec\[align\]'") as err:
        MTCNNDetector()
    assert "\n" not in str(err.value)


def _dets(boxes) -> Detections:
    b = np.array(boxes, np.float32)
    lm = np.repeat(((b[:, :2] + b[:, 2:]) / 2)[:, None, :], 5, axis=1)
    return Detections(b, np.linspace(0.99, 0.9, len(b)).astype(np.float32), lm)


def test_choose_faces_policies():
    # scores descending: a small face at the centre, then a big one in a corner, then a tiny one
    det = _dets([[90, 90, 110, 110], [0, 0, 60, 60], [150, 150, 160, 160]])
    largest = choose_faces(det, (200, 200, 3), "largest", min_face=15)
    assert (largest.status, largest.found) == ("multiple", 2)  # the 10 px face is ignored
    np.testing.assert_array_equal(largest.kept.boxes, det.boxes[[1]])
    centre = choose_faces(det, (200, 200, 3), "center", min_face=15)
    np.testing.assert_array_equal(centre.kept.boxes, det.boxes[[0]])
    every = choose_faces(det, (200, 200, 3), "all", min_face=0)
    assert every.found == 3 and len(every.kept) == 3
    one = choose_faces(_dets([[0, 0, 50, 50]]), (100, 100), "largest")
    assert (one.status, len(one.kept)) == ("ok", 1)
    none = choose_faces(Detections.empty(), (100, 100), "largest")
    assert (none.status, none.found, len(none.kept)) == ("no_face", 0, 0)
    with pytest.raises(ConfigError, match="unknown --keep 'biggest'"):
        choose_faces(det, (200, 200), "biggest")


def test_big_photos_are_shrunk_by_area_averaging():
    """The detector sees the photo shrunk with INTER_AREA (an average over each output pixel's
    footprint), not bilinear sampling, which aliases fine texture at large factors."""

    class Recorder:
        def detect_batch(self, images):
            self.seen = images
            return [Detections.empty() for _ in images]

    big = np.random.default_rng(0).integers(0, 256, (301, 457, 3), dtype=np.uint8)
    rec = Recorder()
    detect_images(rec, [big], max_side=100)
    want = cv2.resize(big, (100, 66), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(rec.seen[0], want)
