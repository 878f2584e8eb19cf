"""facerec.training.callbacks: atomic checkpoint saves that clean up after a kill, safe resume
reads that name the newest intact checkpoint, and the summary's "best" over a resumed run."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from facerec.errors import DataError
from facerec.training.callbacks import (
    AtomicCheckpointIO,
    VerificationSummary,
    newest_intact_checkpoint,
    read_resume,
    remove_stale_temporaries,
)


def _ckpt(step: int) -> dict:
    return {"state_dict": {"w": torch.full((2,), float(step))}, "loops": {}, "global_step": step}


def test_save_removes_temporaries_a_killed_save_left(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    # what a save killed before its rename leaves: a half-written temporary beside last.ckpt
    stale = tmp_path / ".last.ckpt.k1ll3d.tmp"
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    stale_other = tmp_path / ".epoch000-step000010-acc0.5000.ckpt.x9.tmp"
    stale_other.write_bytes(b"half")
    old = time.time() - 60
    os.utime(stale, (old, old))
    os.utime(stale_other, (old, old))
    unrelated = tmp_path / ".notes.txt.tmp"
    unrelated.write_text("not a checkpoint temporary")
    io.save_checkpoint(_ckpt(5), tmp_path / "last.ckpt")
    assert not stale.exists() and not stale_other.exists() and unrelated.exists()
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == [unrelated.name]


def test_a_save_in_progress_is_not_removed(tmp_path: Path) -> None:
    fresh = tmp_path / ".last.ckpt.inflight.tmp"
    fresh.write_bytes(b"being written")
    assert remove_stale_temporaries(tmp_path, before=time.time() - 30) == []
    assert fresh.exists()


def test_damaged_last_ckpt_names_the_newest_intact_checkpoint(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    io.save_checkpoint(_ckpt(10), tmp_path / "epoch000-step000010.ckpt")
    time.sleep(0.01)
    io.save_checkpoint(_ckpt(20), tmp_path / "epoch001-step000020.ckpt")
    time.sleep(0.01)
    io.save_checkpoint(_ckpt(30), tmp_path / "last.ckpt")
    last = tmp_path / "last.ckpt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    newest = tmp_path / "epoch001-step000020.ckpt"
    assert newest_intact_checkpoint(tmp_path, exclude=last) == newest
    with pytest.raises(DataError) as e:
        io.load_checkpoint(last)
    msg = str(e.value)
    assert "\n" not in msg and str(last) in msg and "not a PyTorch checkpoint" in msg
    assert f"newest intact checkpoint beside it is {newest}" in msg
    assert f"--ckpt_path {newest}" in msg
    # a newer checkpoint that is itself damaged is passed over
    newest.write_bytes(b"\x00" * 64)
    other = tmp_path / "epoch000-step000010.ckpt"
    assert newest_intact_checkpoint(tmp_path, exclude=last) == other
    other.unlink()
    with pytest.raises(DataError, match="no intact checkpoint lies beside it"):
        read_resume(last)


def test_summary_best_covers_the_whole_resumed_run(tmp_path: Path, capsys) -> None:
    """The validation history travels in the checkpoint, so after a resume "best" is the run's
    best, next to the run's best checkpoint."""
    from facerec.models import IResNet
    from facerec.training.module import FaceRecognitionModule

    def module() -> FaceRecognitionModule:
        backbone = IResNet(depth=18, width=0.125, embedding_dim=8, input_size=(32, 32))
        return FaceRecognitionModule(backbone=backbone, num_classes=4)

    first = module()
    first.val_history = [(10, 0.91), (20, 0.87)]
    first.untrained_val_acc = 0.55
    saved: dict = {}
    first.on_save_checkpoint(saved)
    torch.save(saved, tmp_path / "c.ckpt")
    resumed = module()
    resumed.on_load_checkpoint(torch.load(tmp_path / "c.ckpt", weights_only=True))
    assert resumed.val_history == [(10, 0.91), (20, 0.87)] and resumed.untrained_val_acc == 0.55
    resumed.val_history.append((30, 0.89))  # the one validation after the resume
    trainer = SimpleNamespace(
        datamodule=None, checkpoint_callback=SimpleNamespace(best_model_path="best.ckpt")
    )
    VerificationSummary(raw_pixel_baseline=False).on_fit_end(trainer, resumed)
    out = capsys.readouterr().out
    assert "89.00%  (step 30; best 91.00%)" in out and "untrained network: 55.00%" in out


@pytest.mark.parametrize("start", ["ckpt", "init_from"])
def test_summary_names_starting_weights_after_a_resume_or_init_from(
    tmp_path: Path, capsys, start: str
) -> None:
    """The sanity check after --ckpt_path / model.init_from measured those weights, not an
    untrained network (issue 21 §4); the label travels in the checkpoint."""
    from facerec.models import IResNet
    from facerec.training.module import FaceRecognitionModule

    def module() -> FaceRecognitionModule:
        backbone = IResNet(depth=18, width=0.125, embedding_dim=8, input_size=(32, 32))
        return FaceRecognitionModule(backbone=backbone, num_classes=4)

    first = module()
    first.val_history, first.untrained_val_acc, first.start_weights = [(5, 0.9)], 0.8, start
    saved: dict = {}
    first.on_save_checkpoint(saved)
    resumed = module()
    resumed.on_load_checkpoint(saved)
    trainer = SimpleNamespace(datamodule=None, checkpoint_callback=None)
    VerificationSummary(raw_pixel_baseline=False).on_fit_end(trainer, resumed)
    out = capsys.readouterr().out
    assert f"starting weights (from {start}): 80.00%" in out and "untrained" not in out
