"""Alignment against ground truth: the synthetic generator knows where it drew each landmark.

Faces are drawn by the renderer under a random in-plane rotation, scale and shift (not warped
after drawing), then pasted into a larger frame under a second random similarity. Warped onto the
template with their landmarks, they must land where the same face drawn upright lands: the
residual motion between the two crops, measured from the pixels by ECC image registration, is
under half a pixel at the template points (a landmark set 1 pixel off measures about 1 pixel).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from facerec.align import align_face, arcface_template, estimate_alignment, transform_points
from facerec.data.synthetic.render import SyntheticFaces, _Nuisance

ROI = (slice(36, 100), slice(26, 86))  # eyes to chin in the 112x112 crop


class _Posed(SyntheticFaces):
    """Canonical faces (difficulty 0: neutral, frontal) drawn at a pose chosen by the test."""

    pose: tuple[float, float, tuple[float, float]] = (0.0, 1.0, (0.0, 0.0))

    def _nuisance(self, r, p):
        super()._nuisance(r, p)  # consume the same random draws as the real generator
        angle, scale, shift = self.pose
        return _Nuisance(angle, scale, shift, 0.0, 0.0, 0.0, 0.0, 1.0, False)


def _grey(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.GaussianBlur(g, (0, 0), 1.0)


def _residual_px(ref: np.ndarray, crop: np.ndarray) -> float:
    """Largest displacement at the template points of the rigid motion between two crops."""
    mask = np.zeros(ref.shape[:2], np.uint8)
    mask[ROI] = 1
    warp = np.eye(2, 3, dtype=np.float32)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6)
    _, warp = cv2.findTransformECC(
        _grey(ref), _grey(crop), warp, cv2.MOTION_EUCLIDEAN, crit, mask, 5
    )
    t = arcface_template().astype(np.float64)
    return float(np.abs(transform_points(warp, t) - t).max())


def _paste(img: np.ndarray, lm: np.ndarray, rng: np.random.Generator):
    """The image under a random similarity in a 240x240 frame, and its landmarks moved with it."""
    a = math.radians(rng.uniform(-45, 45))
    s = rng.uniform(0.7, 1.8)
    m = np.array([[s * math.cos(a), -s * math.sin(a), 0.0], [s * math.sin(a), s * math.cos(a), 0]])
    centre = transform_points(m, np.array([[56.0, 56.0]]))[0]
    m[:, 2] = rng.uniform(90, 150, 2) - centre
    frame = cv2.warpAffine(img, m, (240, 240), flags=cv2.INTER_LINEAR, borderValue=(70, 90, 60))
    return frame, transform_points(m, lm)


def test_landmarks_are_those_of_the_drawn_image():
    faces = SyntheticFaces(6, 3, size=96, seed=4)
    for i, j in [(0, 0), (3, 2), (5, 1)]:
        img, lm = faces.render_with_landmarks(i, j)
        assert lm.shape == (5, 2) and lm.dtype == np.float32
        np.testing.assert_array_equal(lm, faces.landmarks(i, j))
        np.testing.assert_array_equal(img, faces.render(i, j))
        # anatomical order: eyes above the nose above the mouth, left before right
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
        assert max(lm[0, 1], lm[1, 1]) < lm[2, 1] < min(lm[3, 1], lm[4, 1])


def test_upright_canonical_face_is_symmetric_about_its_landmarks():
    """Difficulty 0 draws a left-right symmetric face: its mirror axis (measured from the
    pixels) is the landmarks' midline, which checks the supersampling offset to 0.1 pixel."""
    faces = SyntheticFaces(4, 1, size=112, seed=1, difficulty=0.0)
    for i in range(4):
        img, lm = faces.render_with_landmarks(i, 0)
        mid = float((lm[0, 0] + lm[1, 0]) / 2)
        assert abs(lm[2, 0] - mid) < 1e-4 and abs((lm[3, 0] + lm[4, 0]) / 2 - mid) < 1e-4
        g = _grey(img)[20:100]
        # a mirror about x = c maps column x to 2c - x: find c by ECC on the flipped image
        flipped = g[:, ::-1].copy()  # mirror about x = (W - 1) / 2
        warp = np.eye(2, 3, dtype=np.float32)
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
        _, warp = cv2.findTransformECC(g, flipped, warp, cv2.MOTION_TRANSLATION, crit, None, 5)
        axis = (111 - warp[0, 2]) / 2  # flipped(x + t) = g(W - 1 - x - t): axis (W - 1 - t) / 2
        assert abs(axis - mid) < 0.1, (i, axis, mid)


@pytest.mark.parametrize("seed", [0, 1])
def test_posed_faces_land_where_the_upright_face_lands(seed):
    rng = np.random.default_rng(seed)
    faces = _Posed(200, 1, size=112, seed=seed, difficulty=0.0)
    ids = rng.choice(200, 8, replace=False)
    residual, off_by_one = [], []
    for i in ids:
        faces.pose = (0.0, 1.0, (0.0, 0.0))
        upright, lm0 = faces.render_with_landmarks(int(i), 0)
        ref = align_face(upright, lm0)
        faces.pose = (rng.uniform(-30, 30), rng.uniform(0.8, 1.15), tuple(rng.uniform(-5, 5, 2)))
        posed, lm1 = faces.render_with_landmarks(int(i), 0)
        frame, lm2 = _paste(posed, lm1, rng)
        residual.append(_residual_px(ref, align_face(frame, lm2)))
        # the same landmarks moved by 1 crop pixel (1 / scale frame pixels) to the right
        scale = float(np.hypot(*estimate_alignment(lm2)[:, 0]))
        off_by_one.append(_residual_px(ref, align_face(frame, lm2 + np.array([1.0 / scale, 0.0]))))
    # Mean under 0.3 px, no face past 0.75 px. The ECC measurement of two separately rendered
    # faces is itself noisy: one face in eight measures 0.4-0.56 px with OpenCV 5.1 (0.53 broke
    # the old bound "every face under 0.5" there, 4.10 and 4.13); the mean stays 0.13-0.2.
    assert np.mean(residual) < 0.3 and max(residual) < 0.75, residual
    # a 1-pixel landmark error measures about 0.9 on average, so both bounds are real
    assert np.mean(off_by_one) > 0.6, off_by_one
