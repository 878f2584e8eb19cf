"""Given landmarks: read a landmark file (``facerec align --landmarks``), no detector needed.

One face per line: an image path (relative to the image root), then 10 numbers ``x1 y1 ... x5 y5``
(left eye, right eye, nose, left mouth corner, right mouth corner) or 136 numbers (68-point
landmarks, reduced to 5 as insightface does); anything after them (a detector score, as the IJB
``*_name_5pts_score.txt`` files carry) is read as the face's score. Fields are separated by commas
(CSV) or white space (IJB). A first line whose second field is not a number is a header. An image
on several lines has several faces.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from facerec.align.detect import Detections
from facerec.align.transform import reduce_68_to_5
from facerec.errors import DataError

_SPLIT = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class _Face:
    landmarks: np.ndarray  # (5, 2) float32
    score: float


def _rows(path: str | os.PathLike[str]) -> Iterator[tuple[int, list[str]]]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    yield n, [x for x in _SPLIT.split(line) if x != ""]
    except FileNotFoundError:
        raise DataError(f"{path}: landmark file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; expected lines 'path,x1,y1,...,x5,y5'") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_landmarks(path: str | os.PathLike[str]) -> dict[str, list[_Face]]:
    """Image path (as written in the file) -> its faces in file order (landmarks (5, 2)
    float32, score: 1.0 where the file gives none)."""
    out: dict[str, list[_Face]] = {}
    for row, (n, fields) in enumerate(_rows(path)):
        if row == 0 and len(fields) > 1 and not _is_number(fields[1]):
            continue  # a header line
        nums = fields[1:]
        k = {10: 10, 11: 10, 136: 136, 137: 136}.get(len(nums))
        if k is None:
            raise DataError(
                f"{path}, line {n}: expected an image path then 10 numbers x1,y1,...,x5,y5 "
                f"(or 136 for 68 points), optionally a score; got {len(nums)} values"
            )
        try:
            vals = np.array([float(v) for v in nums], dtype=np.float64)
        except ValueError:
            raise DataError(f"{path}, line {n}: landmark coordinates must be numbers") from None
        if not np.isfinite(vals).all():
            raise DataError(f"{path}, line {n}: landmark coordinates must be finite")
        pts = vals[:k].reshape(-1, 2)
        lm = reduce_68_to_5(pts) if k == 136 else pts.astype(np.float32)
        score = float(vals[k]) if len(vals) > k else 1.0
        out.setdefault(fields[0], []).append(_Face(lm, score))
    if not out:
        raise DataError(f"{path}: no landmark lines; expected 'path,x1,y1,...,x5,y5' per face")
    return out


def detections_from_landmarks(faces: list[_Face]) -> Detections:
    """Given faces as :class:`Detections`; each box is its landmarks' bounding box (the size
    and centre the ``--keep`` rules compare)."""
    if not faces:
        return Detections.empty()
    lm = np.stack([f.landmarks for f in faces]).astype(np.float32)
    boxes = np.concatenate([lm.min(axis=1), lm.max(axis=1)], axis=1)
    scores = np.array([f.score for f in faces], np.float32)
    order = np.argsort(-scores, kind="stable")
    return Detections(boxes[order], scores[order], lm[order])
