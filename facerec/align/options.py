"""The ``--align`` options of ``facerec embed`` and ``facerec eval``, and the aligner they build.

``--align`` detects and aligns raw photos on the fly with the code of ``facerec align`` (MTCNN,
the ``facerec[align]`` extra): each image source is searched once (:func:`locate_faces`) and
served as the crops ``facerec align --size`` would write (:class:`AlignedImages`, default
112x112), which the embedding loop then brings to each model's input size with the model's
resize mode, exactly as it does with crops read from disk. So ``--align`` gives what aligning
first and evaluating the crops gives. Images without a face are centre-cropped, counted,
printed and stored in the report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from facerec.align.detect import FaceDetector, build_detector
from facerec.align.pipeline import DEFAULT_KEEP, FACE_RULES
from facerec.align.source import AlignedImages, FaceTable, locate_faces
from facerec.align.transform import arcface_template, crop_size
from facerec.data.sources import ImageSource
from facerec.errors import ConfigError

__all__ = ["Aligner", "add_align_arguments"]


def add_align_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--align``, ``--align-size``, ``--align-keep``, ``--align-min-face``,
    ``--align-threshold``."""
    g = parser.add_argument_group("alignment of raw photos (needs facerec[align])")
    g.add_argument(
        "--align",
        action="store_true",
        help="detect and align each image onto the 5-point template first (as facerec align); "
        "images without a face are centre-cropped and counted",
    )
    g.add_argument(
        "--align-size",
        nargs="+",
        type=int,
        default=[112, 112],
        metavar="PX",
        help="aligned crop HEIGHT [WIDTH] before the model's resize, as facerec align --size "
        "(default 112 112; 112 96 for SphereFace-style models)",
    )
    g.add_argument(
        "--align-keep",
        choices=FACE_RULES,
        default=DEFAULT_KEEP,
        help=f"face to use when a photo has several, as facerec align --keep (default "
        f"{DEFAULT_KEEP})",
    )
    g.add_argument(
        "--align-min-face", type=int, default=20, metavar="PX", help="smallest face (default 20)"
    )
    g.add_argument(
        "--align-threshold",
        type=float,
        default=0.7,
        metavar="P",
        help="minimum face probability (default 0.7)",
    )


class Aligner:
    """Finds the faces of image sources once and aligns them for any model input size.

    Args:
        detector: a :class:`FaceDetector`.
        size: the aligned crop (height, width), as ``facerec align --size``.
        keep: a one-face rule of :data:`~facerec.align.pipeline.FACE_RULES`.
        min_face: smallest face kept, pixels.
        batch_size: images per detector call.
        progress: show a progress bar while detecting.
    """

    def __init__(
        self,
        detector: FaceDetector,
        size: Sequence[int] = (112, 112),
        keep: str = DEFAULT_KEEP,
        min_face: int = 20,
        batch_size: int = 16,
        progress: bool = True,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.detector, self.keep, self.min_face = detector, keep, min_face
        self.size = (int(size[0]), int(size[1]))
        arcface_template(self.size)  # an unsupported crop size fails before any work
        self.batch_size, self.progress = batch_size, progress
        self.settings = settings or {"size": list(self.size), "keep": keep, "min_face": min_face}
        self._tables: dict[str, FaceTable] = {}

    @classmethod
    def from_args(cls, args: argparse.Namespace, device: str | None = None) -> Aligner | None:
        """The aligner the parsed ``--align*`` options ask for (None without ``--align``)."""
        if not getattr(args, "align", False):
            return None
        size = crop_size(args.align_size, "--align-size")
        if args.align_min_face < 12:
            raise ConfigError(f"--align-min-face must be at least 12, got {args.align_min_face}")
        det_device = None if device in (None, "auto") else device
        detector = build_detector(
            "mtcnn",
            min_face=args.align_min_face,
            threshold=args.align_threshold,
            device=det_device,
        )
        settings = {
            "detector": "mtcnn (facenet-pytorch 2.5.3)",
            "size": list(size),
            "keep": args.align_keep,
            "min_face": args.align_min_face,
            "threshold": args.align_threshold,
            "no_face": "center_crop",
        }
        progress = not getattr(args, "no_progress", False)
        return cls(
            detector,
            size,
            args.align_keep,
            args.align_min_face,
            progress=progress,
            settings=settings,
        )

    def faces(self, key: str, images: ImageSource) -> FaceTable:
        """The faces of ``images`` (searched the first time ``key`` is asked for)."""
        if key not in self._tables:
            table = locate_faces(
                images,
                self.detector,
                keep=self.keep,
                min_face=self.min_face,
                batch_size=self.batch_size,
                progress=self.progress,
                desc=f"detecting faces ({key})",
            )
            self._tables[key] = table
            n = table.count("no_face")
            if n:
                print(
                    f"{key}: no face found in {n} of {len(table)} images; they are centre-cropped",
                    file=sys.stderr,
                )
        return self._tables[key]

    def wrap(self, key: str, images: ImageSource) -> AlignedImages:
        """``images`` as aligned crops of :attr:`size`; faces found once per ``key``."""
        return AlignedImages(images, self.faces(key, images), self.size)

    def report(self, key: str) -> dict[str, Any]:
        """What ``results.json`` stores for source ``key``: the settings and the counts."""
        return {**self.settings, **self._tables[key].summary()}
