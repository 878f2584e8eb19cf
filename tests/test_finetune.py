"""Fine-tuning: init_from of insightface / torchvision state dicts, freezing, LR multipliers."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torchvision

from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.errors import ConfigError, DataError
from facerec.models import IResNet, MobileFaceNet, TorchvisionResNet
from facerec.training.finetune import FreezeOptions, LrMultipliers, param_groups
from facerec.training.module import FaceRecognitionModule, load_init_weights

IRES = {
    "class_path": "facerec.models.IResNet",
    "init_args": {"depth": 18, "width": 0.0625, "embedding_dim": 16, "input_size": [32, 32]},
}
MBF = {
    "class_path": "facerec.models.MobileFaceNet",
    "init_args": {"embedding_dim": 16, "scale": 1, "input_size": [32, 32]},
}


def _module(backbone=IRES, **kw) -> FaceRecognitionModule:
    torch.manual_seed(0)
    return FaceRecognitionModule.from_config(
        backbone=backbone, head={"class_path": "facerec.heads.ArcFaceHead"}, num_classes=8, **kw
    )


def _fit(module: FaceRecognitionModule, tmp: Path, steps: int = 3) -> pl.Trainer:
    dm = FaceDataModule(
        image_size=(32, 32), num_workers=0, augment=[], val_identities=0, batch_size=8,
        synthetic=SyntheticOptions(identities=8, images_per_identity=4, size=32),
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=tmp,
    )  # fmt: skip
    module.attach_data(dm)
    trainer.fit(module, datamodule=dm)
    return trainer


def _insightface_iresnet_state(net: IResNet) -> dict[str, torch.Tensor]:
    """insightface's key names: the embedding head's bn2/fc/features at the top level."""
    return {k.removeprefix("head."): v.clone() for k, v in net.state_dict().items()}


# ---------------------------------------------------------------------------------- init_from


def test_init_from_insightface_iresnet_equals_loading_it_directly(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = IResNet(18, width=0.0625, embedding_dim=16, input_size=(32, 32))
    with torch.no_grad():
        for t in src.state_dict().values():
            if t.dtype.is_floating_point:
                t.add_(torch.randn_like(t) * 0.05)
    state = _insightface_iresnet_state(src)
    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    direct = IResNet(18, width=0.0625, embedding_dim=16, input_size=(32, 32))
    direct.load_insightface_state_dict(state)
    m = _module()
    copied = load_init_weights(m, str(path))
    assert len(copied) == len(direct.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(m.backbone.eval()(x), direct.eval()(x), rtol=0, atol=0)


def test_init_from_insightface_mbf_and_ddp_prefix(tmp_path: Path) -> None:
    src = MobileFaceNet(embedding_dim=16, scale=1, input_size=(32, 32))
    state = {
        f"module.{k.replace('head.', 'features.', 1) if k.startswith('head.') else k}": v
        for k, v in src.state_dict().items()
    }
    torch.save(state, tmp_path / "mbf.pth")
    m = _module(MBF)
    load_init_weights(m, str(tmp_path / "mbf.pth"))
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(m.backbone.eval()(x), src.eval()(x), rtol=0, atol=0)


def test_init_from_another_architecture_names_the_expected_one(tmp_path: Path) -> None:
    r34 = IResNet(34, width=0.0625, embedding_dim=16, input_size=(32, 32))
    torch.save(_insightface_iresnet_state(r34), tmp_path / "r34.pth")
    with pytest.raises(
        ConfigError, match=r"IResNet-34 .*expected model.backbone to be .*depth: 34"
    ):
        load_init_weights(_module(), str(tmp_path / "r34.pth"))  # an IResNet-18
    with pytest.raises(ConfigError, match="but model.backbone is MobileFaceNet"):
        load_init_weights(_module(MBF), str(tmp_path / "r34.pth"))
    wide = IResNet(18, width=0.125, embedding_dim=16, input_size=(32, 32))
    torch.save(_insightface_iresnet_state(wide), tmp_path / "wide.pth")
    with pytest.raises(ConfigError, match=r"does not fit.*width: 0.125"):
        load_init_weights(_module(), str(tmp_path / "wide.pth"))
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(DataError, match="known layout"):
        load_init_weights(_module(), str(tmp_path / "other.pth"))
    with pytest.raises(ConfigError, match="missing.pth: checkpoint not found"):
        load_init_weights(_module(), str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match=r"init_from: .*: is a folder \(it holds wide.pth"):
        load_init_weights(_module(), str(tmp_path))  # a folder is not "not found"


def test_init_from_torchvision_imagenet_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(2)
    tv = torchvision.models.resnet18(weights=None)  # the layout of resnet18-f37072fd.pth
    torch.save(tv.state_dict(), tmp_path / "resnet18.pth")
    backbone = {
        "class_path": "facerec.models.TorchvisionResNet",
        "init_args": {"arch": "resnet18", "embedding_dim": 16, "input_size": [32, 32],
                      "face_stem": False},
    }  # fmt: skip
    m = _module(backbone)
    copied = load_init_weights(m, str(tmp_path / "resnet18.pth"))
    assert isinstance(m.backbone, TorchvisionResNet)
    assert torch.equal(m.backbone.trunk[0].weight, tv.conv1.weight)
    assert torch.equal(m.backbone.trunk[7][1].conv2.weight, tv.layer4[1].conv2.weight)
    assert len(copied) == len(tv.state_dict()) - 2  # all but fc.weight, fc.bias
    face = _module({**backbone, "init_args": {**backbone["init_args"], "face_stem": True}})
    with pytest.warns(UserWarning, match="7×7 stem"):
        load_init_weights(face, str(tmp_path / "resnet18.pth"))
    assert torch.equal(face.backbone.trunk[4][0].conv1.weight, tv.layer1[0].conv1.weight)
    r34 = {**backbone, "init_args": {**backbone["init_args"], "arch": "resnet34"}}
    with pytest.raises(ConfigError, match="arch: resnet18"):
        load_init_weights(_module(r34), str(tmp_path / "resnet18.pth"))


# ----------------------------------------------------------------------- freezing, LR groups


def test_frozen_trunk_stays_bit_identical_while_the_rest_trains(tmp_path: Path) -> None:
    m = _module(freeze=FreezeOptions(stages=2))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    _fit(m, tmp_path, steps=3)
    after = m.state_dict()
    frozen = ("backbone.conv1.", "backbone.bn1.", "backbone.prelu.", "backbone.layer1.",
              "backbone.layer2.")  # fmt: skip
    for k, v in before.items():
        if k.startswith(frozen):  # weights and BatchNorm statistics alike
            assert torch.equal(after[k], v), k
    assert not torch.equal(
        after["backbone.layer4.0.conv1.weight"], before["backbone.layer4.0.conv1.weight"]
    )
    assert not torch.equal(after["head.weight"], before["head.weight"])
    assert not m.backbone.layer1[0].conv1.weight.requires_grad  # whole run: no backward there


def test_freeze_for_the_first_steps_then_train(tmp_path: Path) -> None:
    m = _module(
        freeze=FreezeOptions(stages=None, embedding=True, steps=2),
        optim={"warmup_epochs": 0.0},
    )
    before = {k: v.clone() for k, v in m.state_dict().items()}
    snapshots = []

    class Snap(pl.Callback):
        def on_train_batch_end(self, trainer, module, *args) -> None:
            snapshots.append(module.backbone.layer3[0].conv2.weight.detach().clone())

    dm = FaceDataModule(
        image_size=(32, 32), num_workers=0, augment=[], val_identities=0, batch_size=8,
        synthetic=SyntheticOptions(identities=8, images_per_identity=4, size=32),
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=4, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[Snap()],
    )  # fmt: skip
    m.attach_data(dm)
    trainer.fit(m, datamodule=dm)
    ref = before["backbone.layer3.0.conv2.weight"]
    assert torch.equal(snapshots[0], ref) and torch.equal(snapshots[1], ref)  # steps 0, 1
    assert not torch.equal(snapshots[3], ref)  # trains from step 2 on
    assert m.backbone.layer3[0].conv2.weight.requires_grad


def test_lr_multipliers_reach_the_optimiser_groups(tmp_path: Path) -> None:
    mult = LrMultipliers(backbone=0.1, embedding=0.5, head=10.0)
    m = _module(
        lr_multipliers=mult, optim={"lr": 0.2, "lr_reference_batch": None, "warmup_epochs": 0.0}
    )
    trainer = _fit(m, tmp_path, steps=1)
    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    assert set(groups) == {"backbone", "embedding", "head"}
    assert groups["backbone"]["initial_lr"] == pytest.approx(0.02)
    assert groups["embedding"]["initial_lr"] == pytest.approx(0.1)
    assert groups["head"]["initial_lr"] == pytest.approx(2.0)
    ids = {id(p) for p in groups["embedding"]["params"]}
    assert ids == {id(p) for p in m.backbone.head.parameters() if p.requires_grad}
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in m.head.parameters()}


def test_bad_fine_tuning_options_are_clear() -> None:
    with pytest.raises(ConfigError, match="freeze.stages is 5"):
        _module(freeze={"stages": 5}).setup("fit")
    net = IResNet(18, width=0.0625, embedding_dim=16, input_size=(32, 32))
    with pytest.raises(ConfigError, match="model.freeze"):
        FaceRecognitionModule(backbone=net, num_classes=8, freeze={"stage": 1})
    with pytest.raises(ConfigError, match="lr_multipliers.head is negative"):
        param_groups(_module(), LrMultipliers(head=-1.0), 0.1)
