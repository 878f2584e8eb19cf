"""The ``--align`` options of ``facerec embed`` and ``facerec eval``, and the aligner they build."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from facerec.align.detect import FaceDetector, MTCNNDetector
from facerec.align.pipeline import DEFAULT_KEEP, FACE_RULES
from facerec.align.source import AlignedImages, FaceTable, locate_faces
from facerec.align.transform import DEFAULT_TEMPLATE, arcface_template, crop_size, template_of
from facerec.data.sources import ImageSource
from facerec.errors import ConfigError


def add_align_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--align`` and ``--align-{size,keep,min-face,threshold}``."""
    g = parser.add_argument_group("alignment of raw photos (needs facerec[align])")
    add = g.add_argument
    add(
        "--align",
        action="store_true",
        help="detect and align each image onto the 5-point template first (as facerec align); "
        "images without a face are centre-cropped and counted",
    )
    add(
        "--align-size",
        nargs="+",
        type=int,
        default=[112, 112],
        metavar="PX",
        help="aligned crop HEIGHT [WIDTH] before the model's resize, as facerec align --size "
        "(default 112 112; 112 96 for SphereFace-style models)",
    )
    keep_help = (
        f"face to use when a photo has several, as facerec align --keep (default {DEFAULT_KEEP})"
    )
    add("--align-keep", choices=FACE_RULES, default=DEFAULT_KEEP, help=keep_help)
    add("--align-min-face", type=int, default=20, metavar="PX", help="smallest face (default 20)")
    add(
        "--align-threshold",
        type=float,
        default=0.7,
        metavar="P",
        help="minimum face probability (default 0.7)",
    )


class Aligner:
    """Finds the faces of image sources once and aligns them as each model expects.

    Args:
        size: the ArcFace crop (height, width), as ``facerec align --size``; a model declaring
            another template is aligned at its own input size.
        keep: a one-face rule of :data:`~facerec.align.pipeline.FACE_RULES`.
        min_face, threshold: smallest face kept (pixels, at least 12), face probability.
        device: the detector's device (None: the GPU when there is one).
        detector: a :class:`FaceDetector` to use instead of building MTCNN.
    """

    def __init__(
        self,
        size: Sequence[int] = (112, 112),
        keep: str = DEFAULT_KEEP,
        min_face: int = 20,
        threshold: float = 0.7,
        device: str | None = None,
        detector: FaceDetector | None = None,
        batch_size: int = 16,
        progress: bool = True,
    ) -> None:
        if keep not in FACE_RULES:
            raise ConfigError(
                f"align keep must be one of {', '.join(FACE_RULES)} (one face per image), "
                f"got {keep!r}"
            )
        if min_face < 12:
            raise ConfigError(f"align min_face must be at least 12 pixels, got {min_face}")
        self.size = (int(size[0]), int(size[1]))
        arcface_template(self.size)  # an unsupported crop size fails before any work
        self.keep, self.min_face = keep, int(min_face)
        self.batch_size, self.progress = batch_size, progress
        name = "mtcnn (facenet-pytorch 2.5.3)" if detector is None else type(detector).__name__
        self.detector = MTCNNDetector(min_face, threshold, device) if detector is None else detector
        #: what ``results.json`` records of the alignment (``report`` adds the counts)
        self.settings: dict[str, Any] = {
            "detector": name,
            "size": list(self.size),
            "keep": keep,
            "min_face": self.min_face,
            "threshold": threshold,
            "no_face": "center_crop",
        }
        self._tables: dict[str, FaceTable] = {}
        self._templates: dict[str, dict[str, list[int]]] = {}

    def faces(self, key: str, images: ImageSource) -> FaceTable:
        """The faces of ``images`` (searched the first time ``key`` is asked for)."""
        if key not in self._tables:
            table = self._tables[key] = locate_faces(
                images,
                self.detector,
                keep=self.keep,
                min_face=self.min_face,
                batch_size=self.batch_size,
                progress=self.progress,
                desc=f"detecting faces ({key})",
            )
            if n := table.count("no_face"):
                print(
                    f"{key}: no face found in {n} of {len(table)} images; they are centre-cropped",
                    file=sys.stderr,
                )
        return self._tables[key]

    def wrap(self, key: str, images: ImageSource, model: Any = None) -> AlignedImages:
        """``images`` aligned as ``model`` (a :class:`~facerec.inference.Preprocess`, an embedder
        or None) expects: the ArcFace template cut at :attr:`size` (then the model's resize),
        another template at the model's input size. Faces are found once per ``key``."""
        template, size = template_of(model), self.size
        if template != DEFAULT_TEMPLATE:
            h, w = getattr(model, "preprocess", model).input_size[:2]
            size = (int(h), int(w))
        self._templates.setdefault(key, {})[template] = list(size)
        return AlignedImages(images, self.faces(key, images), size, template)

    def report(self, key: str) -> dict[str, Any]:
        """What ``results.json`` stores for source ``key``: the settings, the template(s) the
        images were warped onto (name -> crop size) and the counts."""
        out = {**self.settings, **self._tables[key].summary()}
        if self._templates.get(key):
            out["templates"] = dict(self._templates[key])
        return out


def aligner_from_args(args: argparse.Namespace, device: str | None = None) -> Aligner | None:
    """The :class:`Aligner` the parsed ``--align*`` options ask for (None without ``--align``);
    ``device``: the detector's (``auto``/None: the GPU when there is one)."""
    if not getattr(args, "align", False):
        return None
    if args.align_min_face < 12:
        raise ConfigError(f"--align-min-face must be at least 12, got {args.align_min_face}")
    try:
        return Aligner(
            size=crop_size(args.align_size, "--align-size"),
            keep=args.align_keep,
            min_face=args.align_min_face,
            threshold=args.align_threshold,
            device=None if device in (None, "auto") else device,
            progress=not getattr(args, "no_progress", False),
        )
    except ConfigError as e:
        raise ConfigError(f"--align: {e}") from None
