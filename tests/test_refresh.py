"""The refresh callbacks (FAISS neighbourhoods, offline pools) and model.init_from, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mining_reference import brute_force_neighbours

from facerec.cli import main
from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.data.hard_identity import HardIdentityBatches, HardIdentityOptions
from facerec.data.image import to_tensor_array
from facerec.data.offline_triplets import OfflineTripletBatches, OfflineTripletOptions
from facerec.data.samplers import Batches, PKBatches
from facerec.errors import ConfigError
from facerec.mining.offline import select_triplets
from facerec.training.module import FaceRecognitionModule, load_init_weights
from facerec.training.refresh import HardIdentityRefresh, OfflineTripletRefresh

ROOT = Path(__file__).resolve().parents[1]
BACKBONE = {
    "class_path": "facerec.models.IResNet",
    "init_args": {"depth": 18, "width": 0.0625, "embedding_dim": 16, "input_size": [32, 32]},
}


def data(sampler: Batches) -> FaceDataModule:
    dm = FaceDataModule(
        image_size=(32, 32), num_workers=0, augment=[], val_identities=0, sampler=sampler,
        synthetic=SyntheticOptions(identities=12, images_per_identity=5, size=32),
    )  # fmt: skip
    dm.setup("fit")
    dm.train_dataloader()
    return dm


def model(head: bool) -> FaceRecognitionModule:
    torch.manual_seed(0)
    extra = {"head": {"class_path": "facerec.heads.ArcFaceHead"}} if head else {}
    loss = {"class_path": "facerec.losses.TripletLoss"}
    return FaceRecognitionModule.from_config(
        backbone=BACKBONE, num_classes=12, metric_loss=loss, **extra
    ).train()


def embed_all(module, dm, idx) -> torch.Tensor:
    x = torch.stack([torch.from_numpy(to_tensor_array(dm.train_set.load(int(i)))) for i in idx])
    module.eval()
    with torch.no_grad():
        return module(x)


def test_head_centres_give_brute_force_neighbours() -> None:
    dm, m = data(HardIdentityBatches(p=4, k=2)), model(head=True)
    cb = HardIdentityRefresh(dm, HardIdentityOptions(neighbours=3, centres="auto"))
    table = cb.refresh(None, m)
    np.testing.assert_array_equal(table, brute_force_neighbours(m.head.weight.detach(), 3))
    assert dm.train_batch_sampler.neighbours is not None and m.training


def test_mean_embedding_centres_in_eval_mode_without_augmentation() -> None:
    dm, m = data(HardIdentityBatches(p=4, k=2)), model(head=False)
    cb = HardIdentityRefresh(dm, HardIdentityOptions(neighbours=4, images_per_identity=99))
    centres = cb.class_centres(m)
    assert m.training  # restored after the embedding pass
    labels = dm.train_set.labels
    emb = F.normalize(embed_all(m, dm, np.arange(len(labels))), dim=1)
    ref = torch.stack([emb[torch.from_numpy(labels == c)].sum(0) for c in range(12)])
    torch.testing.assert_close(centres, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="no margin head"):
        HardIdentityRefresh(dm, HardIdentityOptions(centres="head")).class_centres(m)


def test_offline_pool_is_the_selection_on_the_embedded_subset() -> None:
    opts = OfflineTripletOptions(identities=6, images_per_identity=3)
    dm, m = data(OfflineTripletBatches(4, mining=opts)), model(head=False)
    cb = OfflineTripletRefresh(dm, opts)
    idx = cb.subset()
    assert len(idx) == 18 and len(np.unique(dm.train_set.labels[idx])) == 6
    pool = cb.refresh(None, m)
    local = select_triplets(embed_all(m, dm, idx), dm.train_set.labels[idx], "semi_hard", 0.2)
    np.testing.assert_array_equal(pool, idx[local])
    np.testing.assert_array_equal(dm.train_batch_sampler.pool, pool)
    assert cb.subset().tolist() != idx.tolist()  # the next refresh embeds another subset


def test_init_from_loads_the_backbone_through_the_finetune_recipe(tmp_path: Path) -> None:
    src = model(head=True)
    with torch.no_grad():  # not what seed_everything(0) would build anyway
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    ckpt = tmp_path / "src.ckpt"
    torch.save({"state_dict": src.state_dict(), "facerec": {}}, ckpt)
    tiny = [
        "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
        "--trainer.max_steps", "1", "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps",
        "0", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
        "--checkpoint_every_n_steps", "0", "--data.root", "null", "--data.num_workers", "0",
        "--data.synthetic.identities", "12", "--data.synthetic.images_per_identity", "5",
        "--data.synthetic.size", "32", "--data.image_size", "[32,32]", "--data.val_identities",
        "0", "--data.augment", "[]", "--data.pin_memory", "false", "--data.sampler.init_args.p",
        "4", "--data.sampler.init_args.k", "2", "--model.backbone.init_args.depth", "18",
        "--model.backbone.init_args.width", "0.0625", "--model.backbone.init_args.embedding_dim",
        "16", "--model.backbone.init_args.input_size", "[32,32]", "--model.optim.lr", "0",
        "--model.optim.weight_decay", "0", "--model.init_from", str(ckpt),
    ]  # fmt: skip
    cfg = str(ROOT / "configs/arcface_triplet_finetune.yaml")
    assert main(["fit", "--config", cfg, *tiny]) == 0
    out = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=False)["state_dict"]
    for k, v in src.state_dict().items():
        if k.startswith(("backbone.", "head.")) and "running" not in k and "batches" not in k:
            torch.testing.assert_close(out[k], v, msg=k)  # lr 0: the loaded weights, unchanged
    with pytest.raises(ConfigError, match="init_from"):
        load_init_weights(src, str(tmp_path / "missing.ckpt"))
    other = FaceRecognitionModule.from_config(
        backbone={**BACKBONE, "init_args": {**BACKBONE["init_args"], "embedding_dim": 8}},
        num_classes=12,
    )
    with pytest.raises(ConfigError, match="does not match"):
        load_init_weights(other, str(ckpt))


def test_data_callbacks_are_what_the_sampler_needs_and_fit_refuses_without_them() -> None:
    from types import SimpleNamespace

    from facerec.training.refresh import check_data_callbacks, data_callbacks

    mining = HardIdentityOptions(neighbours=3)
    hard = FaceDataModule(sampler=HardIdentityBatches(4, 2, mining=mining), val_identities=0)
    offline = FaceDataModule(sampler=OfflineTripletBatches(), val_identities=0)
    assert [type(c) for c in data_callbacks(hard)] == [HardIdentityRefresh]
    assert data_callbacks(hard)[0].options is mining  # the sampler's own mining options
    assert [type(c) for c in data_callbacks(offline)] == [OfflineTripletRefresh]
    assert data_callbacks(FaceDataModule(sampler=PKBatches(), val_identities=0)) == []
    assert data_callbacks(FaceDataModule(val_identities=0)) == []
    check_data_callbacks(SimpleNamespace(callbacks=data_callbacks(hard)), hard)
    with pytest.raises(
        ConfigError, match="OfflineTripletBatches needs facerec.training.refresh.Off"
    ):
        check_data_callbacks(SimpleNamespace(callbacks=[]), offline)
