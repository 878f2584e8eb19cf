"""Align any image source on the fly: ``facerec embed/eval --align`` and IJB's given landmarks.

:func:`locate_faces` detects the faces of an :class:`~facerec.data.sources.ImageSource` once
and keeps one per image (as ``facerec align`` chooses); :class:`AlignedImages` serves each image
warped onto a template at a size, so several models share one detection pass. An image without
a face is centre-cropped (the verification protocols' fallback: the pair is kept) and counted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from facerec.align.detect import FaceDetector
from facerec.align.pipeline import DEFAULT_KEEP, FACE_RULES, choose_faces, detect_images
from facerec.align.transform import DEFAULT_TEMPLATE, align_face, template_points
from facerec.data.image import fit_to_size
from facerec.data.sources import ImageSource
from facerec.errors import ConfigError, DataError


@dataclass(frozen=True)
class FaceTable:
    """One face per image of a source: ``landmarks`` (M, 5, 2) float32 (NaN rows: none) and
    ``status`` (M,) str: ``ok``, ``multiple`` (the ``keep`` choice), ``no_face``, ``unreadable``."""

    landmarks: np.ndarray
    status: np.ndarray

    def __len__(self) -> int:
        return int(self.status.shape[0])

    @classmethod
    def given(cls, landmarks: np.ndarray) -> FaceTable:
        """The table of landmarks that come with the images ((M, 5, 2); NaN rows: no face)."""
        lm = np.asarray(landmarks, np.float32)
        if lm.ndim != 3 or lm.shape[1:] != (5, 2):
            raise DataError(f"landmarks of shape {lm.shape}; expected (M, 5, 2) (x, y) pixels")
        ok = np.isfinite(lm).all(axis=(1, 2))
        return cls(lm, np.where(ok, "ok", "no_face").astype(str))

    def count(self, status: str) -> int:
        """How many images have ``status``."""
        return int((self.status == status).sum())

    def summary(self) -> dict[str, int]:
        """Counts for the report: images, ok, multiple, no_face (centre-cropped), unreadable."""
        return {"images": len(self)} | {
            s: self.count(s) for s in ("ok", "multiple", "no_face", "unreadable")
        }


def _read(images: ImageSource, i: int) -> np.ndarray | None:
    try:
        return images[i]
    except DataError:
        return None


def locate_faces(
    images: ImageSource,
    detector: FaceDetector,
    keep: str = DEFAULT_KEEP,
    min_face: int = 20,
    max_side: int = 1024,
    batch_size: int = 16,
    num_workers: int = 2,
    progress: bool = False,
    desc: str = "detecting faces",
) -> FaceTable:
    """Detect the faces of the M images and keep one each (``keep``: a rule of
    :data:`~facerec.align.pipeline.FACE_RULES`). Images that do not read are marked
    ``unreadable``; reading them again when embedding raises their error, so the caller's
    bad-image policy applies."""
    if keep not in FACE_RULES:
        raise ConfigError(
            f"--align-keep must be one of {', '.join(FACE_RULES)} (one face per image), "
            f"got {keep!r}"
        )
    m = len(images)
    landmarks = np.full((m, 5, 2), np.nan, np.float32)
    status = np.full(m, "unreadable", dtype=object)  # until the image is read
    from tqdm import tqdm

    bar = tqdm(total=m, unit="img", desc=desc, file=sys.stderr, disable=not progress)
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        for start in range(0, m, batch_size):
            idx = range(start, min(start + batch_size, m))
            loaded = list(pool.map(lambda i: _read(images, i), idx))
            good = [k for k, im in enumerate(loaded) if im is not None]
            dets = detect_images(detector, [loaded[k] for k in good], max_side=max_side)
            for k, det in zip(good, dets, strict=True):
                choice = choose_faces(det, loaded[k].shape, keep, min_face)
                status[start + k] = choice.status
                if len(choice.kept):
                    landmarks[start + k] = choice.kept.landmarks[0]
            bar.update(len(idx))
    bar.close()
    return FaceTable(landmarks, status.astype(str))


class AlignedImages:
    """An :class:`ImageSource` of aligned crops: image ``i`` warped with ``faces.landmarks[i]``
    onto ``template`` at ``size`` (h, w), RGB uint8; where no face was found, the image
    centre-cropped to ``size`` (aspect kept). Used by ``--align`` and IJB."""

    def __init__(
        self,
        images: ImageSource,
        faces: FaceTable,
        size: Sequence[int],
        template: str = DEFAULT_TEMPLATE,
    ) -> None:
        if len(faces) != len(images):
            raise ConfigError(
                f"the face table has {len(faces)} rows for {len(images)} images; locate the faces "
                "of this image source"
            )
        self.images, self.faces = images, faces
        self.size = (int(size[0]), int(size[1]))
        self.template = template
        template_points(template, self.size)  # an unknown template or crop size fails here

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> np.ndarray:
        img, lm = self.images[i], self.faces.landmarks[i]
        if np.isfinite(lm).all():
            return align_face(img, lm, self.size, self.template)
        return fit_to_size(img, self.size, "center_crop")
