"""Margin heads: ``head(embeddings (B, D), labels (B,)) -> logits (B, C)``; cross-entropy outside.

Select one in a config with ``class_path: facerec.heads.ArcFaceHead`` and its ``init_args``
(``embedding_dim`` and ``num_classes`` are passed by the module). Add ``head.regularizer(x)``
to the loss when it is not None (MagFace). All margins are in radians.
"""

from facerec.heads.adaface import AdaFaceHead
from facerec.heads.arcface import ArcFaceHead
from facerec.heads.base import CosineMarginHead, MarginHead
from facerec.heads.combined import CombinedMarginHead
from facerec.heads.cosface import CosFaceHead
from facerec.heads.curricularface import CurricularFaceHead
from facerec.heads.magface import MagFaceHead
from facerec.heads.softmax import NormFaceHead, SoftmaxHead
from facerec.heads.sphereface import SphereFaceHead
from facerec.heads.subcenter import SubCenterArcFaceHead

__all__ = [
    "AdaFaceHead",
    "ArcFaceHead",
    "CombinedMarginHead",
    "CosFaceHead",
    "CosineMarginHead",
    "CurricularFaceHead",
    "MagFaceHead",
    "MarginHead",
    "NormFaceHead",
    "SoftmaxHead",
    "SphereFaceHead",
    "SubCenterArcFaceHead",
]
