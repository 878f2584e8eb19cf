"""Margin heads: ``head(embeddings (B, D), labels (B,)) -> logits (B, C)``; cross-entropy outside.

Select one in a config with ``class_path: facerec.heads.ArcFaceHead`` and its ``init_args``
(``embedding_dim`` and ``num_classes`` are passed by the module). Add ``head.regularizer(x)``
to the loss when it is not None (MagFace). All margins are in radians. A head is class centres
with a :class:`Margin` (``ArcFaceMargin``, ...), which the sharded head takes too.
"""

from facerec.heads.adaface import AdaFaceHead, AdaFaceMargin
from facerec.heads.arcface import ArcFaceHead, ArcFaceMargin, SubCenterArcFaceHead
from facerec.heads.base import ClassCentres, CosineMarginHead, Margin, MarginHead
from facerec.heads.combined import CombinedMargin, CombinedMarginHead
from facerec.heads.cosface import CosFaceHead, CosFaceMargin
from facerec.heads.curricularface import CurricularFaceHead, CurricularFaceMargin
from facerec.heads.magface import MagFaceHead, MagFaceMargin
from facerec.heads.softmax import NormFaceHead, NormFaceMargin, SoftmaxHead
from facerec.heads.sphereface import SphereFaceHead, SphereFaceMargin

__all__ = [
    "AdaFaceHead",
    "AdaFaceMargin",
    "ArcFaceHead",
    "ArcFaceMargin",
    "ClassCentres",
    "CombinedMargin",
    "CombinedMarginHead",
    "CosFaceHead",
    "CosFaceMargin",
    "CosineMarginHead",
    "CurricularFaceHead",
    "CurricularFaceMargin",
    "MagFaceHead",
    "MagFaceMargin",
    "Margin",
    "MarginHead",
    "NormFaceHead",
    "NormFaceMargin",
    "SoftmaxHead",
    "SphereFaceHead",
    "SphereFaceMargin",
    "SubCenterArcFaceHead",
]
