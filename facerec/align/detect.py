"""Face detectors with 5-point landmarks: the :class:`FaceDetector` interface and MTCNN from
``facenet-pytorch==2.5.3`` (MIT; its weights ship in the wheel), the optional extra
``facerec[align]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from facerec.errors import ConfigError, DataError

INSTALL_HINT = "pip install 'facerec[align]'"


@dataclass(frozen=True)
class Detections:
    """The faces found in one image, best score first: ``boxes`` (N, 4) float32 (x1, y1, x2, y2)
    pixels, ``scores`` (N,) float32 descending, ``landmarks`` (N, 5, 2) float32 (x, y) pixels
    (left eye, right eye, nose, left and right mouth corner)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty() -> Detections:
        z = np.zeros
        return Detections(z((0, 4), np.float32), z((0,), np.float32), z((0, 5, 2), np.float32))


@runtime_checkable
class FaceDetector(Protocol):
    """The detector interface: a batch of RGB uint8 (H, W, 3) images -> one Detections each."""

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


class MTCNNDetector:
    """MTCNN (Zhang et al. 2016) as packaged by facenet-pytorch 2.5.3, batched.

    Args:
        min_face: smallest face side searched for, pixels (MTCNN's ``min_face_size``).
        threshold: minimum final (O-net) face probability kept, 0..1.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: the GPU when there is one.
        batch_size: images run through the networks together (grouped by size).
        threads: torch CPU threads while detecting (restored after; None: torch's setting).
            On a shared 2-vCPU machine one thread ran 3x faster than two (BENCHMARKS.md).
    """

    def __init__(
        self,
        min_face: int = 20,
        threshold: float = 0.7,
        device: str | None = None,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        if min_face < 12:
            raise ConfigError(f"min_face must be at least 12 pixels (MTCNN's cell), got {min_face}")
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold must be a probability in (0, 1), got {threshold}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        try:
            from facenet_pytorch.models.mtcnn import MTCNN
        except ImportError as e:
            raise ConfigError(
                f"the face detector needs facenet-pytorch==2.5.3, which is not installed ({e.name} "
                f"is missing); install the extra: {INSTALL_HINT}"
            ) from None
        import torch

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.min_face = int(min_face)
        self.threshold = float(threshold)
        self.batch_size = int(batch_size)
        self.threads = threads if self.device.type == "cpu" else None
        # keep_all: every face; select_largest=False: facenet's order is by probability
        self._mtcnn = MTCNN(
            min_face_size=self.min_face,
            thresholds=[0.6, 0.7, self.threshold],
            keep_all=True,
            select_largest=False,
            device=self.device,
        ).eval()

    def detect(self, image: np.ndarray) -> Detections:
        """One RGB uint8 (H, W, 3) image -> its :class:`Detections`."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """RGB uint8 (H, W, 3) images (any sizes) -> one :class:`Detections` per image."""
        imgs = [np.asarray(im) for im in images]
        for a in imgs:
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
                raise DataError(
                    f"a detector takes RGB uint8 images (H, W, 3), got {a.dtype} {a.shape}"
                )
        found: dict[int, Detections] = {}
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(imgs):
            if min(im.shape[:2]) >= self.min_face:  # a smaller image holds no face searched for
                groups.setdefault(im.shape[:2], []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                found.update(zip(chunk, self._run(np.stack([imgs[i] for i in chunk])), strict=True))
        return [found[i] if i in found else Detections.empty() for i in range(len(imgs))]

    def _run(self, batch: np.ndarray) -> list[Detections]:
        """(B, H, W, 3) uint8 of one size -> B Detections (facenet's object arrays cast)."""
        import torch

        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            boxes, probs, points = self._mtcnn.detect(batch, landmarks=True)
        finally:
            torch.set_num_threads(before)
        dets = []
        for b, p, pt in zip(boxes, probs, points, strict=True):
            if b is None or len(b) == 0:
                dets.append(Detections.empty())
                continue
            b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
            p = np.asarray(p, dtype=np.float32).reshape(-1)
            pt = np.asarray(pt, dtype=np.float32).reshape(-1, 5, 2)
            order = np.argsort(-p, kind="stable")
            dets.append(Detections(b[order], p[order], pt[order]))
        return dets
