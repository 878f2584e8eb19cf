"""Resume that loses nothing: a fit killed mid-epoch and continued with ``--ckpt_path last``.

Three runs of the real CLI (``configs/quickstart.yaml`` shrunk: 128 synthetic images, batch 16,
so 8 steps per epoch; CurricularFace, whose running ``t`` is a head buffer; SGD with momentum;
cosine schedule with warm-up; one DataLoader worker, so batch indices are prefetched ahead):

1. uninterrupted: 12 steps (into the second epoch);
2. killed: the same command, ``--checkpoint_every_n_steps 2``, the process ends abruptly
   (``os._exit``) after step 5, before step 5's checkpoint: ``last.ckpt`` holds step 4;
3. resumed: the same command with ``--ckpt_path last`` in the same folder.

The resumed run must start at global step 5 and train, step for step, on the batches of the
uninterrupted run (the sampler position is restored through Lightning's stateful-loader state,
and the augmentation draws, a flip and a brightness/contrast change, are seeded per sample),
with its learning rates (scheduler state) and losses (optimiser state, head buffers, weights),
and end with the same weights and buffers. Same process, same threads: equal to float rounding
(tolerance 1e-6 relative on losses, 1e-6 on weights).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lightning_probe import REPO, fit

ARGS = [
    "--config", str(REPO / "configs/quickstart.yaml"),
    "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
    "--trainer.max_steps", "12", "--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "1",
    "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
    "--data.synthetic.identities", "16", "--data.synthetic.images_per_identity", "8",
    "--data.synthetic.size", "32", "--data.image_size", "[32,32]", "--data.val_identities", "0",
    "--model.backbone.init_args.depth", "18",
    "--model.backbone.init_args.width", "0.125", "--model.backbone.init_args.embedding_dim", "16",
    "--model.head", "facerec.heads.CurricularFaceHead",
    "--model.optim.warmup_epochs", "0.5", "--model.optim.schedule", "cosine",
    "--data.batch_size", "16", "--data.num_workers", "1",
    "--data.augment", "[{name: HorizontalFlip, p: 0.5}, {name: RandomBrightnessContrast, p: 0.5}]",
    "--checkpoint_every_n_steps", "2",
    "--trainer.callbacks+=lightning_probe.Probe",
]  # fmt: skip


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a POSIX system")
def test_killed_fit_resumes_with_the_next_batch_and_same_state(tmp_path):
    full = fit(tmp_path / "full", *ARGS)
    assert full.returncode == 0, full.stderr[-4000:]
    run = tmp_path / "run"
    killed = fit(run, *ARGS, env={"FACEREC_KILL_AT_STEP": "5"})
    assert killed.returncode == 3, killed.stderr[-4000:]
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 4
    loader_state = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state[0]["epoch"] == 0 and loader_state[0]["batches_yielded"] == 4

    resumed = fit(run, *ARGS, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "not resumable" not in resumed.stderr

    ref = json.loads((tmp_path / "full" / "probe.json").read_text())["steps"]
    got = json.loads((run / "probe.json").read_text())["steps"]
    assert [s["step"] for s in ref] == list(range(1, 13))
    assert [s["step"] for s in got] == list(range(5, 13))
    assert [s["epoch"] for s in got] == [0, 0, 0, 0, 1, 1, 1, 1]
    for a, b in zip(ref[4:], got, strict=True):
        assert b["labels"] == a["labels"], f"step {a['step']}: another batch"
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-12), a["step"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6), a["step"]
    assert len({s["lr"] for s in ref}) > 3  # the schedule moved
    w_ref = torch.load(tmp_path / "full" / "weights.pt")
    w_got = torch.load(run / "weights.pt")
    assert w_ref.keys() == w_got.keys() and "head.t" in w_ref
    assert float(w_ref["head.t"]) != 0.0  # the running buffer moved
    for k in w_ref:
        torch.testing.assert_close(w_got[k], w_ref[k], rtol=1e-6, atol=1e-6, msg=k)


def test_a_checkpoint_from_before_the_optim_record_resumes(tmp_path):
    """A checkpoint whose hyper-parameters hold the flat optimiser keys of before issue 23
    (``lr``, ``lr_schedule``, ...) resumes with ``--ckpt_path FILE``: its keys are read as the
    ``model.optim`` record (they were refused at parse time, so an old run could not go on)."""
    args = [a for a in ARGS if a != "--trainer.callbacks+=lightning_probe.Probe"]
    first = fit(tmp_path / "a", *args, "--trainer.max_steps", "2")
    assert first.returncode == 0, first.stderr[-4000:]
    ckpt = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    hp = ckpt["hyper_parameters"]
    optim = hp.pop("optim")
    flat = {"name": "optimizer", "schedule": "lr_schedule"}
    hp.update({flat.get(k, k): v for k, v in optim.items()})
    assert "lr_schedule" in hp and "optim" not in hp  # the layout of before
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    resumed = fit(tmp_path / "b", *args, "--trainer.max_steps", "4", "--ckpt_path", str(old))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    after = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["global_step"] == 4
    assert after["hyper_parameters"]["optim"]["schedule"] == optim["schedule"] == "cosine"
