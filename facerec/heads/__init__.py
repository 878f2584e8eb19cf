"""Margin heads: ``head(embeddings (B, D), labels (B,)) -> logits (B, C)``; cross-entropy outside.

Config: ``class_path: facerec.heads.ArcFaceHead`` (the module passes ``embedding_dim`` and
``num_classes``); add ``head.regularizer(x)`` to the loss when not None. Margins in radians.
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
