"""Mixed precision (bf16, fp16) on CPU, the NaN/inf guard, channels_last: one-step fits.

CPU notes (measured with this torch/Lightning): ``--trainer.precision bf16-mixed`` runs CPU autocast
in bfloat16. ``--trainer.precision 16-mixed`` with ``accelerator cpu`` is turned into bf16-mixed
by Lightning (with a warning); float16 autocast with a GradScaler on CPU runs when the
MixedPrecision plugin is given explicitly (tested below), but GPUs are where fp16 is meant to run.
The margin heads, the sharded head and CenterLoss compute in float32 under autocast.
"""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.plugins import MixedPrecision

from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.errors import FacerecError
from facerec.training.module import FaceRecognitionModule

SHARDED = "facerec.heads.sharded.ShardedMarginHead"
BACKBONE = {
    "class_path": "facerec.models.IResNet",
    "init_args": {"depth": 18, "width": 0.0625, "embedding_dim": 16, "input_size": [32, 32]},
}


def data() -> FaceDataModule:
    return FaceDataModule(
        image_size=(32, 32), batch_size=8, num_workers=0, augment=[], val_identities=0,
        synthetic=SyntheticOptions(identities=8, images_per_identity=4, size=32),
    )  # fmt: skip


def model(head: str = "facerec.heads.ArcFaceHead", **kw) -> FaceRecognitionModule:
    return FaceRecognitionModule.from_config(
        backbone=BACKBONE, head={"class_path": head}, num_classes=8,
        optim={"lr": 0.01, "lr_reference_batch": None, "warmup_epochs": 0, "schedule": "constant"},
        **kw,
    )  # fmt: skip


def fit(m: FaceRecognitionModule, steps: int = 2, **trainer_kw) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        **trainer_kw,
    )  # fmt: skip
    trainer.fit(m, data())
    return trainer


def spy(module: torch.nn.Module, seen: dict, key: str, fn) -> None:
    """Record ``fn(inputs, output)`` of the first forward of ``module`` in ``seen[key]``."""

    def hook(mod, inputs, output) -> None:
        seen.setdefault(key, fn(inputs, output))

    module.register_forward_hook(hook)


class Record(pl.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.dtypes: list[torch.dtype] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.mark.parametrize("head", ["facerec.heads.ArcFaceHead", SHARDED])
def test_bf16_mixed_trains_with_float32_master_weights(head):
    torch.manual_seed(0)
    m = model(head, center_loss={"weight": 0.01})
    seen = {}
    spy(m.backbone, seen, "emb", lambda i, out: out.dtype)
    before = [p.detach().clone() for p in m.parameters()]
    rec = Record()
    fit(m, precision="bf16-mixed", callbacks=[rec])
    assert seen["emb"] == torch.bfloat16  # the backbone ran under bf16 autocast
    assert all(torch.isfinite(torch.tensor(v)) for v in rec.losses) and len(rec.losses) == 2
    assert all(p.dtype == torch.float32 for p in m.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, m.parameters(), strict=True))


def test_fp16_mixed_on_cpu():
    # the flag: Lightning falls back to bf16 on CPU
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = pl.Trainer(accelerator="cpu", precision="16-mixed", logger=False)
    assert t.precision == "bf16-mixed"
    # float16 autocast with loss scaling, through the plugin
    torch.manual_seed(0)
    m = model()
    seen = {}
    spy(m.backbone, seen, "emb", lambda i, out: out.dtype)
    rec = Record()
    plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))
    fit(m, plugins=[plugin], callbacks=[rec])
    assert seen["emb"] == torch.float16 and len(rec.losses) == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in rec.losses)


class InfAt(torch.nn.Module):
    """Wraps a loss-like module: from call ``at`` on, its output becomes inf."""

    def __init__(self, inner: torch.nn.Module, at: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, *args):
        self.calls += 1
        out = self.inner(*args)
        return out * float("inf") if self.calls >= self.at else out

    def __getattr__(self, name: str):  # the rest of the wrapped head's interface (returns_loss...)
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "inner":
                raise
            return getattr(self.inner, name)


@pytest.mark.parametrize(("part", "term"), [("head", "ce"), ("center_loss", "center")])
def test_non_finite_loss_names_the_step_and_the_term(part, term):
    torch.manual_seed(0)
    m = model(center_loss={"weight": 0.01})
    setattr(m, part, InfAt(getattr(m, part), at=3))  # the third training step goes bad
    m.head.regularizer = lambda x: None
    with pytest.raises(FacerecError, match=rf"non-finite loss at global step 2: {term}, loss\b"):
        fit(m, steps=5)


def test_channels_last_one_step():
    torch.manual_seed(0)
    m = model(channels_last=True)
    conv = next(c for c in m.backbone.modules() if isinstance(c, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    seen = {}
    spy(conv, seen, "in", lambda i, out: i[0].is_contiguous(memory_format=torch.channels_last))
    rec = Record()
    fit(m, steps=1, callbacks=[rec])
    assert seen["in"] and len(rec.losses) == 1 and torch.isfinite(torch.tensor(rec.losses[0]))
