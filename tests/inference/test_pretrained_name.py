"""``--checkpoint dlib-r29``: dlib's public-domain face ResNet by name, through the one loader
that eval, embed, export and doctor use (issue 22)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from facerec.inference.checkpoint import PRETRAINED, load_checkpoint_embedder

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("face_recognition_models") is None,
    reason="face-recognition-models (facerec[pretrained]) not installed",
)


def test_dlib_r29_loads_by_name_and_equals_the_dat(tmp_path, monkeypatch):
    from facerec.models.dlib_resnet import DlibResNet, load_dlib_resnet

    monkeypatch.chdir(tmp_path)  # no file called dlib-r29 here: the name is the packaged model
    assert "dlib-r29" in PRETRAINED
    emb = load_checkpoint_embedder("dlib-r29")
    assert isinstance(emb.backbone, DlibResNet) and emb.input_size == (150, 150)
    faces = np.random.default_rng(0).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    direct = load_dlib_resnet()
    x = (torch.from_numpy(faces).permute(0, 3, 1, 2).float() - 127.5) / 127.5
    with torch.no_grad():
        want = direct(x).numpy()
    np.testing.assert_allclose(emb(faces), want, rtol=1e-5, atol=1e-6)


def test_a_file_of_that_name_wins(tmp_path, monkeypatch):
    from facerec.errors import DataError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dlib-r29").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="dlib-r29: not a PyTorch checkpoint"):
        load_checkpoint_embedder("dlib-r29")


def test_init_from_dlib_r29_loads_the_trunk_and_refuses_another_backbone(tmp_path, monkeypatch):
    from facerec.errors import ConfigError
    from facerec.models import DlibResNet, IResNet
    from facerec.models.dlib_resnet import load_dlib_resnet
    from facerec.training.module import FaceRecognitionModule, load_init_weights

    monkeypatch.chdir(tmp_path)
    module = FaceRecognitionModule(backbone=DlibResNet(), num_classes=5)
    names = load_init_weights(module, "dlib-r29")
    assert names and all(n.startswith("backbone.") for n in names)
    x = torch.rand(2, 3, 150, 150) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(module.backbone.eval()(x), load_dlib_resnet()(x))
    other = FaceRecognitionModule(backbone=IResNet(depth=18, embedding_dim=128), num_classes=5)
    with pytest.raises(ConfigError, match=r"dlib-r29 .*expected model.backbone to be .*DlibResNet"):
        load_init_weights(other, "dlib-r29")
