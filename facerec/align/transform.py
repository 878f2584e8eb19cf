"""Five-point face alignment: the ArcFace template, Umeyama's similarity estimate and the warp.

Pure numpy + OpenCV (always installed). Landmark order everywhere: left eye, right eye, nose tip,
left mouth corner, right mouth corner, "left"/"right" as seen in the image. Points are (x, y) in
pixels.

The estimate is Umeyama (1991), as scikit-image's ``SimilarityTransform.estimate`` which
insightface uses: for source X and destination Y (N, 2) with means mx, my and centred Xc, Yc,
``sigma2 = mean |Xc|^2``, ``Sigma = Yc^T Xc / N = U D V^T``, ``S = diag(1, det(U) det(V))``,
``R = U S V^T``, ``c = tr(D S) / sigma2``, ``t = my - c R mx``; the warp matrix is ``[c R | t]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from facerec.errors import ConfigError, DataError

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "align_face",
    "arcface_template",
    "reduce_68_to_5",
    "transform_points",
    "umeyama",
]

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
    """The 5-point template (5, 2) float32 (x, y) for an output crop of ``size`` = (height, width).

    Square crops scale insightface's 112x112 template by ``side / 112``. A crop 8/7 times as tall
    as wide (the SphereFace 112x96 crop, or e.g. 64x56) is the 112x112 crop with 8/112 of the
    width cut on each side: the template scaled by ``height / 112`` with x shifted left by
    ``8 * height / 112`` (x - 8 at 112x96). Other aspect ratios are refused (no published template).
    """
    h, w = _size_hw(size)
    s = h / 112.0
    if w == h:
        return (ARCFACE_TEMPLATE_112 * np.float32(s)).astype(np.float32)
    if w * 112 == h * 96:
        out = ARCFACE_TEMPLATE_112 * np.float32(s)
        out[:, 0] -= np.float32(8.0 * s)
        return out.astype(np.float32)
    raise ConfigError(
        f"no alignment template for a {h}x{w} crop; expected a square size (e.g. 112x112, 64x64) "
        "or the SphereFace height:width of 112:96 (e.g. 112x96)"
    )


def _points(pts: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(pts, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 2 or (n is not None and a.shape[0] != n):
        want = f"({n}, 2)" if n is not None else "(N, 2)"
        raise DataError(f"{name} must be an array of shape {want} (x, y), got {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or infinite coordinates")
    return a


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform mapping ``src`` onto ``dst``.

    Args:
        src: (N, 2) source points (x, y), N >= 2 (e.g. detected landmarks).
        dst: (N, 2) destination points (e.g. :func:`arcface_template`).

    Returns:
        (2, 3) float64 matrix ``[c R | t]`` with ``dst ~ c R src + t`` (reflection excluded),
        ready for ``cv2.warpAffine``.
    """
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
    out = np.stack(
        [(p[36] + p[39]) / 2.0, (p[42] + p[45]) / 2.0, p[30], p[48], p[54]],
        axis=0,
    )
    return out.astype(np.float32)


def estimate_alignment(landmarks: np.ndarray, size: int | Sequence[int] = (112, 112)) -> np.ndarray:
    """The (2, 3) float64 warp from an image's (5, 2) landmarks to the template of ``size``."""
    return umeyama(_points(landmarks, "landmarks", 5), arcface_template(size))


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int | Sequence[int] = (112, 112),
) -> np.ndarray:
    """Warp a face onto the ArcFace template.

    Args:
        image: (H, W, 3) uint8 image (any channel order; kept as given) or (H, W) grey.
        landmarks: (5, 2) landmarks in image pixels (left eye, right eye, nose, mouth L, mouth R).
        size: output (height, width) or one side; see :func:`arcface_template`.

    Returns:
        (h, w, 3) uint8 aligned crop (same channels as ``image``); pixels from outside the
        image are 0 (``cv2.warpAffine``, bilinear, constant border 0).
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise DataError(f"an image must be (H, W, 3) or (H, W), got shape {img.shape}")
    h, w = _size_hw(size)
    m = estimate_alignment(landmarks, (h, w))
    return cv2.warpAffine(
        img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
