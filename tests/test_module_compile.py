"""``model.compile: true``: the backbone is compiled for the fit, the checkpoint keeps plain
weight names and loads into an uncompiled model (what evaluation and export use).

TorchDynamo captures the real graphs here, but with the ``eager`` backend: inductor's C++ build
of the same two steps took 180 s on this 2-vCPU machine (it passes: run with
FACEREC_TEST_INDUCTOR=1). tools/bench/gpu_suite.py measures inductor on a GPU.
"""

import os

import pytest
import pytorch_lightning as pl
import torch

from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.errors import ConfigError
from facerec.models import IResNet
from facerec.training.module import FaceRecognitionModule

BACKBONE = {
    "class_path": "facerec.models.IResNet",
    "init_args": {"depth": 18, "width": 0.0625, "embedding_dim": 8, "input_size": [16, 16]},
}


def test_compiled_fit_saves_plain_checkpoint(tmp_path, monkeypatch) -> None:
    calls = []
    compile_ = torch.compile

    def fast_compile(fn, *args, mode=None, **kwargs):  # what nn.Module.compile calls
        calls.append(mode)
        if os.environ.get("FACEREC_TEST_INDUCTOR") != "1":
            kwargs["backend"] = "eager"
            mode = None
        return compile_(fn, *args, mode=mode, **kwargs)

    monkeypatch.setattr(torch, "compile", fast_compile)
    dm = FaceDataModule(
        image_size=(16, 16),
        batch_size=8,
        num_workers=0,
        synthetic=SyntheticOptions(identities=4, images_per_identity=4, size=16),
        val_identities=0,
    )
    m = FaceRecognitionModule.from_config(
        backbone=BACKBONE,
        num_classes=dm.num_classes,
        compile=True,
        compile_mode="default",
        optim={"warmup_epochs": 0},
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    m.attach_data(dm)
    trainer.fit(m, dm)
    assert calls == ["default"]  # the backbone, once, with the configured mode
    assert m._compiled and m.backbone._compiled_call_impl is not None  # compiled, in place
    ckpt = tmp_path / "c.ckpt"
    trainer.save_checkpoint(ckpt)
    keys = torch.load(ckpt, weights_only=True)["state_dict"].keys()
    assert "backbone.conv1.weight" in keys and not any("_orig_mod" in k for k in keys)
    loaded = FaceRecognitionModule.load_from_checkpoint(ckpt).eval()
    assert loaded.hparams["compile"] is True and not loaded._compiled  # eval/export: eager
    assert loaded.backbone._compiled_call_impl is None
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        eager = m.backbone._call_impl  # the trained weights, not through the compiled graph
        m.eval()
        torch.testing.assert_close(loaded.backbone(x), eager(x))


def test_unknown_compile_mode_is_one_clear_error() -> None:
    backbone = IResNet(depth=18, width=0.0625, embedding_dim=8, input_size=(16, 16))
    with pytest.raises(ConfigError, match="model.compile_mode is 'fast'; expected one of default"):
        FaceRecognitionModule(backbone=backbone, num_classes=4, compile_mode="fast")
