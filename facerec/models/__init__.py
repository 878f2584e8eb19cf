"""Embedding networks: IResNet (insightface) and torchvision ResNets, with the embedding head."""

from facerec.models.base import Backbone
from facerec.models.embedding import EmbeddingHead
from facerec.models.iresnet import IResNet, iresnet18, iresnet34, iresnet50, iresnet100
from facerec.models.torchvision_resnet import TorchvisionResNet

__all__ = [
    "Backbone",
    "EmbeddingHead",
    "IResNet",
    "TorchvisionResNet",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
]
