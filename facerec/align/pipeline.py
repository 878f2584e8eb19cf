"""From one image's detections to aligned crops: pick the face(s), warp onto the template.

The one path from detections to crops, shared by ``facerec align`` and the on-the-fly aligning
image source of ``facerec embed/eval --align``, so both produce the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from facerec.align.detect import Detections, FaceDetector
from facerec.align.transform import align_face
from facerec.errors import ConfigError

__all__ = ["KEEP_POLICIES", "STATUSES", "FaceChoice", "choose_faces", "detect_images"]

#: which face(s) of an image with several to keep
KEEP_POLICIES = ("largest", "center", "all")
#: per-image outcome written to align_report.csv
STATUSES = ("ok", "no_face", "multiple", "unreadable")


@dataclass(frozen=True)
class FaceChoice:
    """The outcome for one image.

    Attributes:
        status: ``ok`` (one face), ``multiple`` (several found; ``keep`` picked), ``no_face``.
        found: number of faces found at least ``min_face`` pixels tall/wide.
        kept: the kept faces' detections (boxes (K, 4), scores (K,), landmarks (K, 5, 2)).
    """

    status: str
    found: int
    kept: Detections

    def crops(self, image: np.ndarray, size: int | Sequence[int] = (112, 112)) -> list[np.ndarray]:
        """The kept faces of ``image`` (H, W, 3) aligned: K crops (h, w, 3) uint8."""
        return [align_face(image, lm, size) for lm in self.kept.landmarks]


def choose_faces(
    det: Detections,
    image_shape: Sequence[int],
    keep: str = "largest",
    min_face: float = 0.0,
) -> FaceChoice:
    """Pick the face(s) to keep among an image's detections.

    Args:
        det: the image's detections (best score first).
        image_shape: (H, W, ...) of the image (``center`` measures from its centre).
        keep: ``largest`` (largest box area), ``center`` (box centre nearest the image centre)
            or ``all`` (every face, best score first).
        min_face: faces whose box is smaller than this (min of width and height, pixels) are
            ignored.
    """
    if keep not in KEEP_POLICIES:
        raise ConfigError(f"unknown --keep {keep!r}; expected one of {', '.join(KEEP_POLICIES)}")
    b = det.boxes
    wh = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1) if len(det) else np.zeros((0, 2))
    idx = np.flatnonzero(wh.min(axis=1) >= min_face) if len(det) else np.zeros(0, np.int64)
    n = int(idx.size)
    if n == 0:
        return FaceChoice("no_face", 0, Detections.empty())
    if keep == "largest":
        area = wh[idx, 0] * wh[idx, 1]
        pick = idx[[int(np.argmax(area))]]
    elif keep == "center":
        h, w = float(image_shape[0]), float(image_shape[1])
        cx, cy = (b[idx, 0] + b[idx, 2]) / 2, (b[idx, 1] + b[idx, 3]) / 2
        pick = idx[[int(np.argmin((cx - w / 2) ** 2 + (cy - h / 2) ** 2))]]
    else:
        pick = idx
    kept = Detections(det.boxes[pick], det.scores[pick], det.landmarks[pick])
    return FaceChoice("ok" if n == 1 else "multiple", n, kept)


def detect_images(
    detector: FaceDetector, images: Sequence[np.ndarray], max_side: int = 1024
) -> list[Detections]:
    """Run ``detector`` on RGB uint8 (H, W, 3) images, each first shrunk (INTER_AREA) so its
    longer side is at most ``max_side`` pixels (0: never); boxes and landmarks are returned in
    the original image's pixels. Big photos are searched as fast as small ones."""
    small, scales = [], []
    for im in images:
        s = max_side / max(im.shape[:2]) if max_side and max(im.shape[:2]) > max_side else 1.0
        if s < 1.0:
            h, w = im.shape[:2]
            im = cv2.resize(im, (max(1, round(w * s)), max(1, round(h * s))), cv2.INTER_AREA)
        small.append(im)
        scales.append(s)
    out = []
    for det, s in zip(detector.detect_batch(small), scales, strict=True):
        if s < 1.0 and len(det):
            # pixel centres: x_small + 0.5 = (x + 0.5) * s
            det = Detections(
                ((det.boxes + 0.5) / s - 0.5).astype(np.float32),
                det.scores,
                ((det.landmarks + 0.5) / s - 0.5).astype(np.float32),
            )
        out.append(det)
    return out
