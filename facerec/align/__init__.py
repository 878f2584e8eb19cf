"""Face alignment: 5-point similarity warp onto a template (ArcFace's, dlib's face chip),
detectors, ``facerec align`` and the :class:`Aligner` of ``--align``. Light to import (numpy +
OpenCV); the detector (torch, facenet-pytorch) loads on demand."""

from facerec.align.options import Aligner
from facerec.align.source import AlignedImages, FaceTable
from facerec.align.transform import (
    ARCFACE_TEMPLATE_112,
    DEFAULT_TEMPLATE,
    TEMPLATES,
    align_face,
    arcface_template,
    dlib_chip_points,
    dlib_template,
    estimate_alignment,
    reduce_68_to_5,
    template_of,
    template_points,
    transform_points,
    umeyama,
)

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "DEFAULT_TEMPLATE",
    "TEMPLATES",
    "AlignedImages",
    "Aligner",
    "FaceTable",
    "align_face",
    "arcface_template",
    "dlib_chip_points",
    "dlib_template",
    "estimate_alignment",
    "reduce_68_to_5",
    "template_of",
    "template_points",
    "transform_points",
    "umeyama",
]
