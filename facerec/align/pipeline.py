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
from facerec.align.transform import DEFAULT_TEMPLATE, align_face
from facerec.errors import ConfigError

#: one-face rules: how the face of an image with several is chosen (:func:`face_values`)
FACE_RULES = ("framed", "insightface", "largest", "center")
#: which face(s) of an image with several to keep: a rule, or ``all``
KEEP_POLICIES = (*FACE_RULES, "all")
#: the default rule: the one that picked the subject most often (tools/bench/align_choice.py)
DEFAULT_KEEP = "framed"


@dataclass(frozen=True)
class FaceChoice:
    """The outcome for one image: ``status`` (``ok``, ``multiple``: ``keep`` picked,
    ``no_face``), ``found`` (faces at least ``min_face`` pixels), the ``kept`` detections and,
    with several faces and a one-face rule, the ``margin`` of the chosen face's value over the
    runner-up's (:func:`face_values`; NaN otherwise)."""

    status: str
    found: int
    kept: Detections
    margin: float = float("nan")

    def crops(
        self,
        image: np.ndarray,
        size: int | Sequence[int] = (112, 112),
        template: str = DEFAULT_TEMPLATE,
    ) -> list[np.ndarray]:
        """The kept faces of ``image`` aligned onto ``template``: K crops (h, w, 3) uint8."""
        return [align_face(image, lm, size, template) for lm in self.kept.landmarks]


def face_values(boxes: np.ndarray, image_shape: Sequence[int], rule: str) -> np.ndarray:
    """How much each face box looks like the photo's subject under ``rule`` (higher: more), in
    units of the image area (H * W).

    ``largest``: the box area; ``center``: minus the squared distance of the box centre from the
    image centre; ``insightface``: area minus twice that (insightface's ``FaceAnalysis.get``,
    facenet's ``align_dataset_mtcnn``); ``framed``: the box area inside the frame minus the
    squared distance, so a face cut by the frame counts only what the photo shows (BENCHMARKS.md:
    which face ``facerec align`` keeps).
    """
    if rule not in FACE_RULES:
        raise ConfigError(f"unknown --keep {rule!r}; expected one of {', '.join(KEEP_POLICIES)}")
    h, w = float(image_shape[0]), float(image_shape[1])
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    inside = np.clip(b, 0.0, [w, h, w, h]) if rule == "framed" else b
    area = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
    dist2 = ((b[:, 0] + b[:, 2]) / 2 - w / 2) ** 2 + ((b[:, 1] + b[:, 3]) / 2 - h / 2) ** 2
    weight = {"largest": 0.0, "insightface": 2.0, "framed": 1.0}.get(rule)
    value = -dist2 if weight is None else area - weight * dist2
    return value / (h * w)


def choose_faces(
    det: Detections,
    image_shape: Sequence[int],
    keep: str = DEFAULT_KEEP,
    min_face: float = 0.0,
) -> FaceChoice:
    """Pick the face(s) to keep among an image's detections (best score first).

    ``keep``: a rule of :func:`face_values` (the highest value; ties: the better score) or
    ``all``; faces whose box side is below ``min_face`` pixels are ignored.
    """
    if keep not in KEEP_POLICIES:
        raise ConfigError(f"unknown --keep {keep!r}; expected one of {', '.join(KEEP_POLICIES)}")
    b = det.boxes
    side = np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) if len(det) else np.zeros(0)
    idx = np.flatnonzero(side >= min_face)
    n = int(idx.size)
    if n == 0:
        return FaceChoice("no_face", 0, Detections.empty())
    margin = float("nan")
    if keep == "all":
        pick = idx
    else:
        values = face_values(b[idx], image_shape, keep)
        order = np.argsort(-values, kind="stable")  # stable: equal values keep score order
        pick = idx[order[:1]]
        if n > 1:
            margin = float(values[order[0]] - values[order[1]])
    kept = Detections(det.boxes[pick], det.scores[pick], det.landmarks[pick])
    return FaceChoice("ok" if n == 1 else "multiple", n, kept, margin)


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
            size = (max(1, round(w * s)), max(1, round(h * s)))
            im = cv2.resize(im, size, interpolation=cv2.INTER_AREA)
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
