"""Face alignment: 5-point similarity warp onto the ArcFace template, detectors, ``facerec align``.

Light to import (numpy + OpenCV only); the detector (torch, facenet-pytorch) loads on demand from
:mod:`facerec.align.detect`.
"""

from facerec.align.transform import (
    ARCFACE_TEMPLATE_112,
    align_face,
    arcface_template,
    estimate_alignment,
    reduce_68_to_5,
    transform_points,
    umeyama,
)

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "align_face",
    "arcface_template",
    "estimate_alignment",
    "reduce_68_to_5",
    "transform_points",
    "umeyama",
]
