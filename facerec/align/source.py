"""Align any image source on the fly: ``facerec embed/eval --align`` and IJB's given landmarks.

:func:`locate_faces` detects the faces of an :class:`~facerec.data.sources.ImageSource` once
and keeps one per image (as ``facerec align`` chooses); :class:`AlignedImages` serves each image
warped onto a template at a size, so several models share one detection pass. An image without
a face is centre-cropped (the verification protocols' fallback: the pair is kept) and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np

from facerec.align.detect import Detections, FaceDetector
from facerec.align.pipeline import DEFAULT_KEEP, FACE_RULES, FaceChoice, choose_faces, detect_images
from facerec.align.transform import DEFAULT_TEMPLATE, align_face, template_points
from facerec.data.image import fit_to_size, image_bar, read_ahead, read_or_error
from facerec.data.sources import ImageSource
from facerec.errors import ConfigError, DataError

T = TypeVar("T")


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
        return int((self.status == status).sum())

    def summary(self) -> dict[str, int]:
        """Counts for the report: images, ok, multiple, no_face (centre-cropped), unreadable."""
        return {"images": len(self)} | {
            s: self.count(s) for s in ("ok", "multiple", "no_face", "unreadable")
        }


def choose_in_batches(
    read: Callable[[T], np.ndarray],
    items: Sequence[T],
    detect: Callable[[list[np.ndarray], list[T]], list[Detections]],
    keep: str,
    min_face: float,
    batch_size: int,
    num_workers: int = 1,
) -> Iterator[list[tuple[T, np.ndarray | DataError, FaceChoice | None]]]:
    """Read ``items`` in batches (``num_workers`` threads, one batch ahead), ``detect(images,
    items)`` those that read and :func:`choose_faces`: per batch, ``(item, image or DataError,
    FaceChoice or None)`` for each item."""
    chunks = [items[s : s + batch_size] for s in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max(1, num_workers)) as pool:

        def load(chunk: Sequence[T]) -> list[np.ndarray | DataError]:
            return list(pool.map(partial(read_or_error, read), chunk))

        for chunk, loaded in read_ahead(load, chunks):
            good = [i for i, im in enumerate(loaded) if not isinstance(im, DataError)]
            found = detect([loaded[i] for i in good], [chunk[i] for i in good])
            det_of = dict(zip(good, found, strict=True))
            yield [
                (x, im, choose_faces(det_of[i], im.shape, keep, min_face) if i in det_of else None)
                for i, (x, im) in enumerate(zip(chunk, loaded, strict=True))
            ]


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
    bar = image_bar(m, desc, progress)

    def detect(ims: list[np.ndarray], _: list[int]) -> list[Detections]:
        return detect_images(detector, ims, max_side=max_side)

    for batch in choose_in_batches(
        images.__getitem__, range(m), detect, keep, min_face, batch_size, num_workers
    ):
        for i, _, choice in batch:
            if choice is not None:
                status[i] = choice.status
                landmarks[i] = choice.kept.landmarks[0] if len(choice.kept) else np.nan
        bar.update(len(batch))
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
