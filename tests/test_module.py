import itertools
import math

import pytest
import pytorch_lightning as pl
import torch

from facerec.errors import ConfigError
from facerec.training.module import FaceRecognitionModule
from facerec.training.optim import lr_factor

BACKBONE = {
    "class_path": "facerec.models.IResNet",
    "init_args": {"depth": 18, "width": 0.125, "embedding_dim": 16, "input_size": [32, 32]},
}


def test_lr_schedule_warmup_then_decay():
    f = [lr_factor(s, 100, 10, "poly", 2.0) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0)
    assert f[55] == pytest.approx((1 - 45 / 90) ** 2)
    assert all(a < b for a, b in itertools.pairwise(f[:10]))  # warm-up rises
    assert all(a >= b for a, b in itertools.pairwise(f[9:]))  # then decays
    c = lr_factor(55, 100, 10, "cosine")
    assert c == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(99, 100, 10, "constant") == 1.0


def test_from_config_losses_and_gradients():
    m = FaceRecognitionModule.from_config(
        backbone=BACKBONE,
        head={"class_path": "facerec.heads.ArcFaceHead", "init_args": {"scale": 16.0}},
        num_classes=5,
    )
    assert m.hparams["backbone"]["class_path"] == "facerec.models.IResNet"
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out = m.compute_losses(m(x), y)
    assert set(out) >= {"loss", "ce", "acc"} and out["loss"] > 0
    out["loss"].backward()
    assert m.backbone.conv1.weight.grad is not None
    assert m.head.weight.grad is not None


def test_margin_head_needs_classes():
    with pytest.raises(ConfigError, match="num_classes"):
        FaceRecognitionModule.from_config(backbone=BACKBONE, num_classes=0)


def test_skipped_count_is_distinct_bad_files_over_epochs(tmp_path):
    """Two unreadable files met in every one of 3 epochs (and more than once per epoch by
    replacement draws) are reported as 2 distinct files, not as the number of attempts."""
    import warnings

    import cv2
    import numpy as np
    import pytorch_lightning as pl

    from facerec.data.datamodule import FaceDataModule
    from facerec.models import IResNet

    rng = np.random.default_rng(0)
    for i in range(3):
        (tmp_path / f"p{i}").mkdir()
        for j in range(4):
            cv2.imwrite(str(tmp_path / f"p{i}" / f"{j}.png"), rng.integers(0, 255, (24, 24, 3)))
    (tmp_path / "p0" / "1.png").write_bytes(b"bad")
    (tmp_path / "p2" / "3.png").write_bytes(b"bad")
    dm = FaceDataModule(root=str(tmp_path), image_size=(24, 24), batch_size=4, num_workers=0,
                        val_identities=0, augment=[])  # fmt: skip
    backbone = IResNet(depth=18, width=0.125, embedding_dim=8, input_size=(24, 24))
    m = FaceRecognitionModule(backbone=backbone, num_classes=3)
    trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.attach_data(dm)
        trainer.fit(m, dm)
    counts = [str(w.message) for w in caught if "distinct corrupt" in str(w.message)]
    assert len(counts) == 3 and all(c.startswith("skipped 2 distinct") for c in counts), counts
    assert len(m._bad_images) == 2


def _count_in_rank(rank: int, port: int, out: str) -> None:
    import warnings

    import torch.distributed as dist

    from facerec.models import IResNet

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        backbone = IResNet(depth=18, width=0.125, embedding_dim=8, input_size=(24, 24))
        m = FaceRecognitionModule(backbone=backbone, num_classes=3)
        m._bad_images = [{1, 2}, {2, 3, 7}][rank]  # file 2 met by both ranks
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m.on_train_epoch_end()
        with open(f"{out}.{rank}", "w") as f:
            f.write("\n".join(str(w.message) for w in caught))
    finally:
        dist.destroy_process_group()


def test_skipped_count_is_the_union_over_ranks(tmp_path):
    """Under DDP each rank meets its own bad files; rank 0 reports the union once."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "warn")
    mp.spawn(_count_in_rank, args=(port, out), nprocs=2, join=True)
    assert (tmp_path / "warn.0").read_text().startswith("skipped 4 distinct")
    assert (tmp_path / "warn.1").read_text() == ""


def test_validation_scores_only_pairs_whose_images_were_embedded():
    """Lightning's sanity check embeds two batches; the pairs reach every image (issue 21 §1)."""
    import numpy as np

    from facerec.metrics.verification import best_threshold_accuracy
    from facerec.training.module import score_embedded_pairs

    emb = torch.nn.functional.normalize(torch.randn(10, 4), dim=1)
    i1 = np.array([0, 1, 2, 8, 3, 9])
    i2 = np.array([1, 2, 3, 9, 7, 0])
    same = np.array([True, False, True, False, True, False])
    seen = torch.tensor([3, 0, 1, 2, 7, 3])  # image 3 twice (two ranks), 8 and 9 never embedded
    acc, thr, n = score_embedded_pairs(emb[seen], seen, (i1, i2, same))
    keep = np.array([True, True, True, False, True, False])
    e = emb.numpy()
    want = best_threshold_accuracy((e[i1[keep]] * e[i2[keep]]).sum(1), same[keep])
    assert n == 4 and (acc, thr) == pytest.approx(want)
    # pairs past every embedded image: nothing to score, no IndexError
    assert score_embedded_pairs(emb[:2], torch.tensor([0, 1]), (i1, i2, same)) is None
    # only genuine pairs covered: no accuracy from one class
    assert (
        score_embedded_pairs(emb[:4], torch.arange(4), (i1[[0, 2]], i2[[0, 2]], same[[0, 2]]))
        is None
    )


# ------------------------------------------------------------- issue 23: optim record, data in
def test_optim_record_from_a_dict_and_bad_values_name_the_key():
    from facerec.training.optim import OptimOptions

    m = FaceRecognitionModule.from_config(
        backbone=BACKBONE, num_classes=4, optim={"name": "adamw", "lr": 0.01, "schedule": "cosine"}
    )
    assert m.optim == OptimOptions(name="adamw", lr=0.01, schedule="cosine")
    assert m.hparams["optim"] == {"name": "adamw", "lr": 0.01, "schedule": "cosine"}
    with pytest.raises(ConfigError, match=r"model.optim.lr is -1.0; expected a number >= 0"):
        FaceRecognitionModule.from_config(backbone=BACKBONE, num_classes=4, optim={"lr": -1.0})
    from facerec.base.options import coerce

    with pytest.raises(ConfigError, match="model.optim: .*'lr_schedule'.*OptimOptions"):
        coerce({"lr_schedule": "poly"}, OptimOptions, "model.optim")
    assert OptimOptions(lr=0.1, lr_reference_batch=128).scaled_lr(256) == pytest.approx(0.2)
    assert OptimOptions(lr=0.1, lr_reference_batch=None).scaled_lr(256) == 0.1


def test_a_checkpoint_with_the_old_flat_optimiser_keys_loads_them_as_the_record(tmp_path):
    m = FaceRecognitionModule.from_config(backbone=BACKBONE, num_classes=4)
    path = tmp_path / "old.ckpt"
    hp = {k: v for k, v in dict(m.hparams).items() if k != "optim"}
    hp.update(optimizer="adamw", lr=0.03, lr_schedule="constant", warmup_epochs=0.0)
    torch.save({"state_dict": m.state_dict(), "hyper_parameters": hp,
                "pytorch-lightning_version": pl.__version__}, path)  # fmt: skip
    old = FaceRecognitionModule.load_from_checkpoint(path)
    assert (old.optim.name, old.optim.lr, old.optim.schedule) == ("adamw", 0.03, "constant")


def test_attach_data_gives_names_and_pairs_and_checks_the_class_count():
    from types import SimpleNamespace

    m = FaceRecognitionModule.from_config(backbone=BACKBONE, num_classes=3)
    data = SimpleNamespace(class_names=["a", "b", "c"], pairs=None, batch_size=4,
                           image_size=(32, 32), raw_pixel_accuracy=lambda: None)  # fmt: skip
    m.attach_data(data)
    assert m.class_names == ["a", "b", "c"] and m.training_data is data
    assert m.batch_size == 4  # the learning-rate scaling's batch comes with the data
    given = FaceRecognitionModule.from_config(backbone=BACKBONE, num_classes=3, batch_size=8)
    given.attach_data(data)
    assert given.batch_size == 8  # a batch size given (or linked by the CLI) is kept
    with pytest.raises(ConfigError, match="the data have 2 identities but the model was built"):
        m.attach_data(SimpleNamespace(**{**vars(data), "class_names": ["a", "b"]}))


def test_images_of_another_size_than_the_backbone_are_one_line():

    m = FaceRecognitionModule.from_config(backbone=BACKBONE, num_classes=3)
    with pytest.raises(
        ConfigError, match=r"images are \(24, 24\) but the backbone takes \(32, 32\)"
    ):
        m.on_after_batch_transfer([torch.zeros(2, 3, 24, 24, dtype=torch.uint8)], 0)


def test_an_unscalable_learning_rate_is_one_line_not_a_silent_change():
    """Without the batch size (no attach_data, no batch_size=) the rate for lr_reference_batch
    images cannot be scaled: refused, rather than training at a rate 512/batch times too high."""
    m = FaceRecognitionModule.from_config(backbone=BACKBONE, num_classes=3)
    m.trainer = pl.Trainer(accelerator="cpu", logger=False, max_steps=1)
    with pytest.raises(ConfigError, match=r"model.batch_size is not set.*attach_data"):
        m.configure_optimizers()
    m.batch_size = 16
    opt = m.configure_optimizers()["optimizer"]
    assert opt.param_groups[0]["initial_lr"] == pytest.approx(0.1 * 16 / 512)
