"""facerec.align.transform: Umeyama vs known transforms and a slow reference; templates; warp."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from facerec.align import (
    ARCFACE_TEMPLATE_112,
    align_face,
    arcface_template,
    reduce_68_to_5,
    transform_points,
    umeyama,
)
from facerec.errors import ConfigError, DataError


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.concatenate([scale * r, [[tx], [ty]]], axis=1)


def _umeyama_slow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The formula of Umeyama (1991), written out with plain Python loops over the points."""
    n = len(src)
    mx = [sum(p[k] for p in src) / n for k in range(2)]
    my = [sum(p[k] for p in dst) / n for k in range(2)]
    xc = [[p[0] - mx[0], p[1] - mx[1]] for p in src]
    yc = [[p[0] - my[0], p[1] - my[1]] for p in dst]
    sigma2 = sum(p[0] ** 2 + p[1] ** 2 for p in xc) / n
    cov = [[sum(yc[i][a] * xc[i][b] for i in range(n)) / n for b in range(2)] for a in range(2)]
    u, d, vt = np.linalg.svd(np.array(cov))
    s = [1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) >= 0 else -1.0]
    r = [[sum(u[a][k] * s[k] * vt[k][b] for k in range(2)) for b in range(2)] for a in range(2)]
    c = (d[0] * s[0] + d[1] * s[1]) / sigma2
    t = [my[a] - c * (r[a][0] * mx[0] + r[a][1] * mx[1]) for a in range(2)]
    return np.array([[c * r[0][0], c * r[0][1], t[0]], [c * r[1][0], c * r[1][1], t[1]]])


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"),
    [(1.0, 0.0, 0.0, 0.0), (0.5, 30.0, 10.0, -4.0), (2.7, -75.0, -120.0, 33.0), (0.1, 179.0, 5, 5)],
)
def test_umeyama_recovers_known_similarity(scale, angle, tx, ty):
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (7, 2))
    m = _similarity(scale, angle, tx, ty)
    dst = transform_points(m, src)
    est = umeyama(src, dst)
    assert est.shape == (2, 3) and est.dtype == np.float64
    np.testing.assert_allclose(est, m, atol=1e-9)


def test_umeyama_matches_slow_reference_on_noisy_points():
    rng = np.random.default_rng(1)
    for _ in range(20):
        src = rng.uniform(-50, 300, (5, 2))
        dst = rng.uniform(0, 112, (5, 2))  # no exact similarity: a least-squares fit
        np.testing.assert_allclose(umeyama(src, dst), _umeyama_slow(src, dst), atol=1e-9)


def test_umeyama_is_least_squares_optimal():
    """Any perturbation of the estimate's scale, angle or shift increases the squared error."""
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, (5, 2))
    dst = transform_points(_similarity(1.3, 12, 4, 9), src) + rng.normal(0, 2.0, (5, 2))
    m = umeyama(src, dst)
    best = ((transform_points(m, src) - dst) ** 2).sum()
    c = math.hypot(m[0, 0], m[1, 0])
    a = math.degrees(math.atan2(m[1, 0], m[0, 0]))
    for dc, da, dt in [(0.01, 0, 0), (-0.01, 0, 0), (0, 0.5, 0), (0, -0.5, 0), (0, 0, 0.2)]:
        other = _similarity(c + dc, a + da, m[0, 2] + dt, m[1, 2])
        assert ((transform_points(other, src) - dst) ** 2).sum() > best


def test_umeyama_excludes_reflections():
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    mirrored = src.copy()
    mirrored[:, 0] = 112 - mirrored[:, 0]
    m = umeyama(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0  # a rotation times a positive scale, never a flip


def test_umeyama_bad_input_is_one_clear_error():
    with pytest.raises(DataError, match=r"shape \(N, 2\)"):
        umeyama(np.zeros((5, 3)), np.zeros((5, 2)))
    with pytest.raises(DataError, match=r"shape \(5, 2\)"):
        umeyama(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(DataError, match="coincide"):
        umeyama(np.ones((5, 2)), ARCFACE_TEMPLATE_112)
    with pytest.raises(DataError, match="NaN"):
        umeyama(np.full((5, 2), np.nan), ARCFACE_TEMPLATE_112)


def test_template_scaling():
    t112 = arcface_template()
    assert t112.dtype == np.float32 and t112.shape == (5, 2)
    np.testing.assert_array_equal(t112, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(arcface_template(64), ARCFACE_TEMPLATE_112 * 64 / 112, rtol=1e-6)
    np.testing.assert_allclose(arcface_template((224, 224)), ARCFACE_TEMPLATE_112 * 2, rtol=1e-6)
    sphere = arcface_template((112, 96))
    np.testing.assert_allclose(sphere[:, 0], ARCFACE_TEMPLATE_112[:, 0] - 8, atol=1e-5)
    np.testing.assert_allclose(sphere[:, 1], ARCFACE_TEMPLATE_112[:, 1])
    # the same crop at half resolution: 56x48 is the 112x96 template halved
    np.testing.assert_allclose(arcface_template((56, 48)), sphere / 2, atol=1e-5)
    with pytest.raises(ConfigError, match="no alignment template for a 112x80 crop"):
        arcface_template((112, 80))


def test_reduce_68_to_5():
    pts = np.zeros((68, 2))
    pts[36], pts[39], pts[42], pts[45] = (10, 20), (20, 22), (40, 20), (50, 22)
    pts[30], pts[48], pts[54] = (30, 40), (18, 60), (42, 61)
    np.testing.assert_allclose(
        reduce_68_to_5(pts), [[15, 21], [45, 21], [30, 40], [18, 60], [42, 61]]
    )
    with pytest.raises(DataError, match=r"\(68, 2\)"):
        reduce_68_to_5(np.zeros((5, 2)))


def _dots(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    img = np.zeros((*shape, 3), np.uint8)
    for x, y in pts:
        cv2.circle(img, (round(x * 16), round(y * 16)), 4 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
    return img


def _centroids(img: np.ndarray, near: np.ndarray, radius: float = 7.0) -> np.ndarray:
    g = img[:, :, 0].astype(np.float64)
    yy, xx = np.mgrid[: g.shape[0], : g.shape[1]]
    out = []
    for x, y in near:
        w = g * (((xx - x) ** 2 + (yy - y) ** 2) < radius**2)
        out.append([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    return np.array(out)


@pytest.mark.parametrize("size", [(112, 112), (64, 64), (112, 96)])
def test_warp_moves_landmarks_onto_the_template(size):
    """Dots drawn at landmarks of a rotated, scaled, shifted face land on the template."""
    m = _similarity(2.3, 25.0, 140.0, 60.0)
    lm = transform_points(m, ARCFACE_TEMPLATE_112)
    img = _dots((400, 420), lm)
    crop = align_face(img, lm, size)
    assert crop.shape == (*size, 3) and crop.dtype == np.uint8
    tmpl = arcface_template(size)
    np.testing.assert_allclose(_centroids(crop, tmpl, radius=0.06 * size[0] + 1), tmpl, atol=0.5)


def test_warp_border_is_zero_and_keeps_channels():
    img = np.full((50, 60, 3), 200, np.uint8)
    img[..., 1] = 10
    lm = ARCFACE_TEMPLATE_112 * (50 / 112) - [15, 0]  # crop x < 15*112/50 lies left of the image
    crop = align_face(img, lm, 112)
    assert crop[50, 0].tolist() == [0, 0, 0]  # outside the source image: border value 0
    assert crop[56, 56].tolist() == [200, 10, 200]  # channel order is kept
    grey = align_face(img[..., 0], lm, 64)
    assert grey.shape == (64, 64)


def test_align_face_rejects_bad_shapes():
    with pytest.raises(DataError, match=r"shape \(5, 2\)"):
        align_face(np.zeros((10, 10, 3), np.uint8), np.zeros((4, 2)))
    with pytest.raises(DataError, match="image must be"):
        align_face(np.zeros((10,), np.uint8), ARCFACE_TEMPLATE_112)
