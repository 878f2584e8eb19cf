"""Embedding networks: IResNet, MobileFaceNet, ViT (insightface), torchvision ResNets."""

from facerec.models.base import Backbone
from facerec.models.dlib_resnet import DlibResNet
from facerec.models.embedding import EmbeddingHead
from facerec.models.iresnet import IResNet
from facerec.models.mobilefacenet import MobileFaceNet, mbf, mbf_large
from facerec.models.torchvision_resnet import TorchvisionResNet
from facerec.models.vit import ViT, vit_b, vit_l, vit_s, vit_t

__all__ = [
    "Backbone",
    "DlibResNet",
    "EmbeddingHead",
    "IResNet",
    "MobileFaceNet",
    "TorchvisionResNet",
    "ViT",
    "mbf",
    "mbf_large",
    "vit_b",
    "vit_l",
    "vit_s",
    "vit_t",
]
