"""Head and CenterLoss state inside FaceRecognitionModule: updated by Lightning training steps,
frozen by validation, saved in a Lightning checkpoint and restored by ``load_from_checkpoint``."""

import io

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from facerec.training.module import FaceRecognitionModule

BACKBONE = {
    "class_path": "facerec.models.IResNet",
    "init_args": {"depth": 18, "width": 0.0625, "embedding_dim": 8, "input_size": [16, 16]},
}
C = 4

# head -> (buffer names, value at construction)
STATEFUL = {
    "SphereFaceHead": {"iteration": 0},
    "CurricularFaceHead": {"t": 0.0},
    "AdaFaceHead": {"batch_mean": 20.0, "batch_std": 100.0},
}


def _module(head: str) -> FaceRecognitionModule:
    torch.manual_seed(0)
    return FaceRecognitionModule.from_config(
        backbone=BACKBONE,
        head={"class_path": f"facerec.heads.{head}"},
        num_classes=C,
        center_loss={"weight": 0.01, "alpha": 0.5},
        optim={"lr_reference_batch": None, "warmup_epochs": 0.0},
    )


def _buffers(m: FaceRecognitionModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items() if k.startswith(("head.", "center"))}


@pytest.mark.parametrize("head", sorted(STATEFUL))
def test_state_updates_in_training_steps_and_survives_state_dict(head):
    m = _module(head).train()
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % C
    for _ in range(2):
        m.compute_losses(m(x), y)
    for name, initial in STATEFUL[head].items():
        assert m.head.margin.get_buffer(name).item() != pytest.approx(initial), name
    before = _buffers(m)
    m.eval()
    with torch.no_grad():  # evaluation moves none of the state
        m.compute_losses(m(x), y)
    for k, v in _buffers(m).items():
        assert torch.equal(v, before[k]), k
    fresh = _module(head)
    fresh.load_state_dict(torch.load(_save(m.state_dict())), strict=True)
    for k, v in _buffers(fresh).items():
        assert torch.equal(v, before[k]), k


def _save(obj) -> io.BytesIO:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


def test_state_updates_in_lightning_fit_and_survives_lightning_checkpoint(tmp_path):
    head = "AdaFaceHead"
    m = _module(head)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(16, 3, 16, 16, generator=g)
    labels = torch.arange(16) % C
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(m, loader)
    assert trainer.global_step == 3
    for name, initial in STATEFUL[head].items():
        assert m.head.margin.get_buffer(name).item() != pytest.approx(initial), name
    assert m.center_loss.centers.abs().sum() > 0

    # evaluation (no_grad, eval mode) moves none of the state
    before = _buffers(m)
    m.eval()
    with torch.no_grad():
        m.compute_losses(m(images[:8]), labels[:8])
    for k, v in _buffers(m).items():
        assert torch.equal(v, before[k]), k

    path = tmp_path / "state.ckpt"
    trainer.save_checkpoint(path)
    restored = FaceRecognitionModule.load_from_checkpoint(path)
    after = _buffers(restored)
    assert set(after) == set(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert type(restored.head).__name__ == head


def test_magface_regularizer_is_added_to_the_loss():
    torch.manual_seed(0)
    m = FaceRecognitionModule.from_config(
        backbone=BACKBONE, head={"class_path": "facerec.heads.MagFaceHead"}, num_classes=C
    )
    emb = torch.randn(6, 8) * 20
    y = torch.arange(6) % C
    out = m.compute_losses(emb, y)
    torch.testing.assert_close(out["head_reg"], m.head.regularizer(emb))
    torch.testing.assert_close(out["loss"], out["ce"] + out["head_reg"])


def test_center_loss_is_weighted_into_the_loss():
    m = _module("SoftmaxHead")
    emb = torch.randn(6, 8)
    y = torch.arange(6) % C
    out = m.eval().compute_losses(emb, y)
    expected = 0.5 * (emb**2).sum(1).mean()  # centres start at zero
    torch.testing.assert_close(out["center"], expected)
    torch.testing.assert_close(out["loss"], out["ce"] + 0.01 * expected)
