import itertools
import math

import pytest
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
