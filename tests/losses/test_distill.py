"""Embedding distillation: the loss against its formula, gradients, the frozen teacher, errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.errors import ConfigError, DataError
from facerec.losses.distill import distill_loss
from facerec.training.distill import DistillOptions, FrozenTeacher
from facerec.training.module import FaceRecognitionModule

TEACHER = {
    "class_path": "facerec.models.IResNet",
    "init_args": {"depth": 18, "width": 0.0625, "embedding_dim": 24, "input_size": [40, 40]},
}
STUDENT = {
    "class_path": "facerec.models.MobileFaceNet",
    "init_args": {"embedding_dim": 16, "scale": 1, "input_size": [32, 32]},
}


def test_loss_matches_its_formula() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    l2 = sum(((s[i] - t[i]) ** 2).sum() for i in range(5)) / (5 * 7)
    torch.testing.assert_close(distill_loss(s, t, "l2"), l2)
    cos = sum(1 - (s[i] @ t[i]) / (s[i].norm() * t[i].norm()) for i in range(5)) / 5
    torch.testing.assert_close(distill_loss(s, t, "cosine"), cos)
    assert distill_loss(t, t, "cosine").abs() < 1e-6 and distill_loss(t, t, "l2") == 0
    assert distill_loss(s.bfloat16(), t, "l2").dtype == torch.float32


def test_gradient_reaches_only_the_student() -> None:
    s = torch.randn(4, 6, requires_grad=True)
    t = torch.randn(4, 6, requires_grad=True)
    for kind in ("l2", "cosine"):
        s.grad = t.grad = None
        distill_loss(s, t, kind).backward()
        assert s.grad is not None and s.grad.abs().sum() > 0
        assert t.grad is None
    with pytest.raises(ConfigError, match="expected the same"):
        distill_loss(s, t[:, :5], "l2")
    with pytest.raises(ConfigError, match="expected one of"):
        distill_loss(s, t, "kl")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A facerec checkpoint of an IResNet teacher at another input size and embedding size."""
    torch.manual_seed(3)
    m = FaceRecognitionModule.from_config(backbone=TEACHER, num_classes=8)
    path = tmp_path_factory.mktemp("teacher") / "teacher.ckpt"
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.strategy.connect(m)
    trainer.save_checkpoint(path)
    return path


def _dm() -> FaceDataModule:
    return FaceDataModule(
        image_size=(32, 32), num_workers=0, augment=[], val_identities=0, batch_size=8,
        synthetic=SyntheticOptions(identities=8, images_per_identity=4, size=32),
    )  # fmt: skip


def _trainer(steps: int) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip


def test_teacher_uses_its_own_preprocessing_and_stays_frozen(teacher_ckpt: Path) -> None:
    teacher = FrozenTeacher(str(teacher_ckpt))
    assert teacher.input_size == (40, 40) and teacher.embedding_dim == 24
    x = torch.rand(2, 3, 32, 32) * 2 - 1  # student-normalised
    out = teacher(x)
    assert out.shape == (2, 24) and not out.requires_grad
    # the same: pixels, resized to the teacher's 40x40, normalised its way, through its net
    pix = torch.nn.functional.interpolate(
        (x * 127.5 + 127.5), size=(40, 40), mode="bilinear", antialias=True
    )
    with torch.no_grad():
        ref = teacher.net((pix - 127.5) / 127.5)
    torch.testing.assert_close(out, ref)
    assert not teacher.net.training
    assert all(not p.requires_grad for p in teacher.net.parameters())


def test_distillation_fits_with_a_projection_and_no_margin_head(teacher_ckpt: Path) -> None:
    torch.manual_seed(0)
    m = FaceRecognitionModule.from_config(
        backbone=STUDENT, head=None, num_classes=8, optim={"lr": 0.05, "lr_reference_batch": None},
        distill={"teacher": str(teacher_ckpt), "weight": 1.0, "loss": "cosine"},
    )  # fmt: skip
    assert m.head is None
    teacher_before = None
    trainer = _trainer(4)
    trainer.fit(m, datamodule=_dm())
    assert m.distill_proj is not None and tuple(m.distill_proj.weight.shape) == (24, 16)
    teacher_before = {k: v.clone() for k, v in m._teacher.net.state_dict().items()}
    assert "distill_proj.weight" in m.state_dict()
    assert not any(k.startswith("_teacher") for k in m.state_dict())
    names = {g["name"] for g in trainer.optimizers[0].param_groups}
    assert names == {"backbone", "embedding", "other"}  # the projection trains with "other"
    # the teacher was never updated: one more step, its weights and statistics unchanged
    trainer2 = _trainer(1)
    trainer2.fit(m, datamodule=_dm())
    for k, v in m._teacher.net.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    logged = trainer.callback_metrics
    assert "train/distill" in logged and torch.isfinite(logged["train/distill"])


def test_distilled_checkpoint_reloads_without_the_teacher(
    teacher_ckpt: Path, tmp_path: Path
) -> None:
    m = FaceRecognitionModule.from_config(
        backbone=STUDENT, num_classes=8,
        head={"class_path": "facerec.heads.CosFaceHead"},
        distill={"teacher": str(teacher_ckpt), "weight": 0.5, "loss": "l2"},
    )  # fmt: skip
    trainer = _trainer(1)
    dm = _dm()
    m.attach_data(dm)
    trainer.fit(m, datamodule=dm)
    path = tmp_path / "student.ckpt"
    trainer.save_checkpoint(path)
    moved = tmp_path / "gone.ckpt"
    teacher_ckpt.rename(moved)  # the teacher is not needed to rebuild the student
    try:
        back = FaceRecognitionModule.load_from_checkpoint(str(path), map_location="cpu")
    finally:
        moved.rename(teacher_ckpt)
    assert torch.equal(back.distill_proj.weight, m.distill_proj.weight)


def test_bad_teachers_get_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="teacher: .*missing.ckpt: teacher model not found"):
        FrozenTeacher(str(tmp_path / "missing.ckpt"))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"run: is a folder \(it holds checkpoints/last.ckpt"):
        FrozenTeacher(str(tmp_path / "run"))  # a folder is not "not found"
    other = tmp_path / "state.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(DataError, match="state.pth"):
        FrozenTeacher(str(other))
    with pytest.raises(ConfigError, match="teacher is empty"):
        DistillOptions(teacher="").validate()
    with pytest.raises(ConfigError, match="distill.loss"):
        DistillOptions(teacher="x.ckpt", loss="kl").validate()  # type: ignore[arg-type]


def test_onnx_teacher(teacher_ckpt: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from facerec.export.onnx import export_onnx
    from facerec.inference.checkpoint import load_facerec_checkpoint

    loaded = load_facerec_checkpoint(teacher_ckpt)
    path = tmp_path / "teacher.onnx"
    path.write_bytes(export_onnx(loaded.backbone, loaded.preprocess, exporter="torchscript"))
    onnx_t = FrozenTeacher(str(path))
    torch_t = FrozenTeacher(str(teacher_ckpt))
    assert onnx_t.embedding_dim == 24 and onnx_t.input_size == (40, 40)
    x = (torch.randint(0, 256, (2, 3, 32, 32)).float() - 127.5) / 127.5
    a, b = onnx_t(x), torch_t(x)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.99


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a POSIX system")
def test_distillation_and_freezing_under_ddp_equal_one_process(
    teacher_ckpt: Path, tmp_path: Path
) -> None:
    """Two gloo processes (batch 8 each) give one process's (batch 16) losses and weights, with
    a teacher, a projection, the trunk frozen for 2 of the 4 steps and LR multipliers."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lightning_probe import REPO, fit
    from test_ddp import TINY

    extra = [
        "--model.distill.teacher", str(teacher_ckpt), "--model.distill.weight", "2.0",
        "--model.backbone.init_args.embedding_dim", "20",  # != the teacher's 24: a projection
        "--model.freeze.stages", "2", "--model.freeze.steps", "2",
        "--model.lr_multipliers.backbone", "0.5", "--model.lr_multipliers.head", "2.0",
    ]  # fmt: skip
    runs = {}
    for devices, batch in ((1, 16), (2, 8)):
        out = tmp_path / f"devices{devices}"
        proc = fit(
            out, "--config", str(REPO / "configs/quickstart.yaml"), *TINY, *extra,
            "--trainer.devices", str(devices), "--data.batch_size", str(batch),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        probe = json.loads((out / "probe.json").read_text())
        runs[devices] = (probe["steps"], torch.load(out / "weights.pt"))
    (one, w1), (two, w2) = runs[1], runs[2]
    for a, b in zip(one, two, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * abs(a["loss"]), (a, b)
    assert "distill_proj.weight" in w1 and w1.keys() == w2.keys()
    for k in w1:
        scale = max(1.0, float(w1[k].abs().max())) if w1[k].is_floating_point() else 1.0
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5 * scale, msg=k)
