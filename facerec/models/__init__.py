"""Embedding networks: IResNet and MobileFaceNet (insightface), torchvision ResNets."""

from facerec.models.base import Backbone
from facerec.models.embedding import EmbeddingHead
from facerec.models.iresnet import IResNet, iresnet18, iresnet34, iresnet50, iresnet100
from facerec.models.mobilefacenet import MobileFaceNet, mbf, mbf_large
from facerec.models.torchvision_resnet import TorchvisionResNet

__all__ = [
    "Backbone",
    "EmbeddingHead",
    "IResNet",
    "MobileFaceNet",
    "TorchvisionResNet",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "mbf",
    "mbf_large",
]
