"""Five-point face alignment: the templates (ArcFace, dlib's face chip), Umeyama's similarity
estimate and the warp (numpy + OpenCV).

Landmark order everywhere: left eye, right eye, nose tip, left and right mouth corner (as seen
in the image), (x, y) pixels. The estimate is Umeyama (1991), as scikit-image's
``SimilarityTransform.estimate`` that insightface uses (:func:`umeyama`).

A model declares its template (:data:`TEMPLATES`, ``Preprocess.align_template``): ``arcface``,
insightface's ``arcface_dst`` scaled to the crop; ``dlib``, dlib's face chip
(``get_face_chip_details(shape, 150, 0.25)``), with MTCNN's five points placed where they sit
on dlib's 68-point mean face (:func:`dlib_template`; dlib's own 5 points are
:func:`dlib_chip_points`). Measured against dlib's chips by ``tools/bench/align_dlib_chip.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from facerec.errors import ConfigError, DataError

#: insightface's ``arcface_dst``: the 5 landmarks of an aligned 112x112 ArcFace crop.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)

#: the alignment templates a model can declare (``Preprocess.align_template``)
TEMPLATES = ("arcface", "dlib")
#: the template of a model that declares none
DEFAULT_TEMPLATE = "arcface"

#: dlib's 5-point template (``shape_predictor_5_face_landmarks``: outer and inner corner of the
#: eye on the image's right, of the other eye, base of the nose), unit square before padding
DLIB_TEMPLATE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
#: dlib's mean face (``mean_face_shape_x/y``) at MTCNN's five points: eye centres (68-point
#: corners 36 and 39, 42 and 45), nose tip (30), mouth corners (48, 54); same unit square
DLIB_MEAN_FACE_5 = np.array(
    [
        [(0.121737 + 0.334606) / 2, (0.216423 + 0.231733) / 2],
        [(0.645647 + 0.858516) / 2, (0.231733 + 0.216423) / 2],
        [0.490127, 0.515625],
        [0.254149, 0.780233],
        [0.726104, 0.780233],
    ]
)
#: dlib's chip: 150x150, padding 0.25 (``dnn_face_recognition_ex.cpp``)
DLIB_CHIP_SIZE, DLIB_CHIP_PADDING = 150, 0.25


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``112`` or ``(112, 112)`` or ``(112, 96)`` -> (height, width); checks it is positive."""
    if isinstance(size, int | np.integer):
        h = w = int(size)
    else:
        vals = tuple(int(v) for v in size)
        if len(vals) != 2:
            raise ConfigError(f"an output size is (height, width), got {tuple(size)!r}")
        h, w = vals
    if h < 8 or w < 8:
        raise ConfigError(f"the aligned crop must be at least 8x8 pixels, got {h}x{w}")
    return h, w


def crop_size(values: Sequence[int], flag: str = "--size") -> tuple[int, int]:
    """A command line's crop ``HEIGHT [WIDTH]`` (one or two numbers) as (height, width)."""
    if len(values) not in (1, 2):
        raise ConfigError(f"{flag} takes HEIGHT [WIDTH], got {len(values)} numbers")
    return values[0], values[-1]


def arcface_template(size: int | Sequence[int] = (112, 112)) -> np.ndarray:
    """The 5-point template (5, 2) float32 (x, y) for a crop of ``size`` = (height, width).

    Square crops scale insightface's 112x112 template by ``side / 112``. A crop of height:width
    112:96 (SphereFace's) is the 112x112 crop with 8/112 of the width cut on each side. Other
    aspect ratios are refused (no published template).
    """
    h, w = _size_hw(size)
    if w != h and w * 112 != h * 96:
        raise ConfigError(
            f"no alignment template for a {h}x{w} crop; expected a square size (e.g. 112x112, "
            "64x64) or the SphereFace height:width of 112:96 (e.g. 112x96)"
        )
    s = h / 112.0
    out = ARCFACE_TEMPLATE_112 * np.float32(s)
    if w != h:
        out[:, 0] -= np.float32(8.0 * s)
    return out.astype(np.float32)


def _dlib_pad(unit: np.ndarray, size: int, padding: float) -> np.ndarray:
    return (padding + unit) / (2 * padding + 1) * size


def dlib_chip_points(size: int = DLIB_CHIP_SIZE, padding: float = DLIB_CHIP_PADDING) -> np.ndarray:
    """dlib's own 5 chip points (its 5-point predictor's landmarks) in chip pixels, (5, 2)
    float64 (x, y): where ``get_face_chip_details(shape, size, padding)`` puts them."""
    return _dlib_pad(DLIB_TEMPLATE_5, size, padding)


def dlib_template(
    size: int | Sequence[int] = DLIB_CHIP_SIZE, padding: float = DLIB_CHIP_PADDING
) -> np.ndarray:
    """MTCNN's 5 points (left eye, right eye, nose tip, mouth corners) where dlib's chip of
    ``size`` (square) and ``padding`` puts them on dlib's mean face, (5, 2) float32."""
    h, w = _size_hw(size)
    if h != w:
        raise ConfigError(f"dlib's face chip is square; got a {h}x{w} crop (expected e.g. 150x150)")
    return _dlib_pad(DLIB_MEAN_FACE_5, h, padding).astype(np.float32)


def template_points(template: str, size: int | Sequence[int]) -> np.ndarray:
    """The (5, 2) float32 points of ``template`` (:data:`TEMPLATES`) for a crop of ``size``;
    ConfigError for an unknown name or a size the template has no form for."""
    make = {"arcface": arcface_template, "dlib": dlib_template}.get(template)
    if make is not None:
        return make(size)
    raise ConfigError(
        f"unknown alignment template {template!r}; expected one of {', '.join(TEMPLATES)}"
    )


def template_of(model: Any) -> str:
    """The template ``model`` declares: its ``align_template`` (a ``Preprocess``, a backbone) or
    its ``preprocess``'s (an embedder); :data:`DEFAULT_TEMPLATE` when it declares none."""
    pre = getattr(model, "preprocess", model)
    return getattr(pre, "align_template", None) or DEFAULT_TEMPLATE


def _points(pts: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(pts, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or (n is not None and a.shape[0] != n):
        want = f"({n}, 2)" if n is not None else "(N, 2)"
        raise DataError(f"{name} must be an array of shape {want} (x, y), got {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or infinite coordinates")
    return a


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform mapping ``src`` onto ``dst`` ((N, 2) (x, y),
    N >= 2): a (2, 3) float64 ``[c R | t]`` with ``dst ~ c R src + t`` (no reflection)."""
    x = _points(src, "source landmarks")
    y = _points(dst, "destination landmarks", x.shape[0])
    n = x.shape[0]
    if n < 2:
        raise DataError(f"a similarity transform needs at least 2 points, got {n}")
    mx, my = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mx, y - my
    sigma2 = float((xc**2).sum() / n)
    if sigma2 <= 1e-12:
        raise DataError("the source landmarks all coincide; no similarity transform exists")
    cov = yc.T @ xc / n
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[1] = -1.0
    r = u @ np.diag(s) @ vt
    c = float((d * s).sum() / sigma2)
    t = my - c * r @ mx
    return np.concatenate([c * r, t[:, None]], axis=1)


def transform_points(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points; returns (N, 2) float64."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (2, 3):
        raise DataError(f"an affine matrix must have shape (2, 3), got {m.shape}")
    p = _points(pts, "points")
    return p @ m[:, :2].T + m[:, 2]


def reduce_68_to_5(pts: np.ndarray) -> np.ndarray:
    """68-point (iBUG/dlib) landmarks (68, 2) -> the 5 points (5, 2) float32, as insightface does:
    mean of 36 and 39 (left eye), mean of 42 and 45 (right eye), 30 (nose tip), 48 and 54 (mouth
    corners), 0-based indices."""
    p = _points(pts, "68-point landmarks", 68)
    out = np.stack([(p[36] + p[39]) / 2.0, (p[42] + p[45]) / 2.0, p[30], p[48], p[54]])
    return out.astype(np.float32)


def estimate_alignment(
    landmarks: np.ndarray,
    size: int | Sequence[int] = (112, 112),
    template: str = DEFAULT_TEMPLATE,
) -> np.ndarray:
    """The (2, 3) float64 warp from an image's (5, 2) landmarks to ``template`` at ``size``."""
    return umeyama(_points(landmarks, "landmarks", 5), template_points(template, size))


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int | Sequence[int] = (112, 112),
    template: str = DEFAULT_TEMPLATE,
) -> np.ndarray:
    """Warp the face of ``image`` ((H, W, 3) uint8, any channel order, or (H, W) grey) with
    (5, 2) ``landmarks`` onto ``template`` at ``size`` (h, w) or one side: an (h, w, 3) uint8
    crop (bilinear; pixels from outside the image are 0)."""
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise DataError(f"an image must be (H, W, 3) or (H, W), got shape {img.shape}")
    h, w = _size_hw(size)
    m = estimate_alignment(landmarks, (h, w), template)
    return cv2.warpAffine(
        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
