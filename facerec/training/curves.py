"""``curves.png`` at the end of ``facerec fit``: loss, learning rate and validation accuracy.

:class:`TrainingCurves` records the training loss and learning rate of every step and the
accuracies of every validation, and draws them over optimizer steps when the fit ends (also when
interrupted). The history is in the callback's checkpoint state, so a resumed run draws it all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl

from facerec.io import atomic_path

#: validation metrics drawn: ``val/acc`` and per-benchmark ``val/<name>/acc``
VAL_KEYS = re.compile(r"^val(/[^/]+)?/acc$")


class TrainingCurves(pl.Callback):
    """Draw ``filename`` (default ``curves.png``) in the trainer's ``default_root_dir``.

    Args:
        filename: the image written at the end of the fit (rank 0 only).
        loss_key: the logged training loss to draw.
        smoothing: weight of the exponential moving average drawn over the raw loss (0: none).
    """

    def __init__(
        self, filename: str = "curves.png", loss_key: str = "train/loss", smoothing: float = 0.9
    ) -> None:
        self.filename = filename
        self.loss_key = loss_key
        self.smoothing = float(smoothing)
        self.history: dict[str, list[tuple[int, float]]] = {"loss": [], "lr": []}
        self._lr: float | None = None

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # the learning rate this step uses (a per-step scheduler changes it after the step)
        self._lr = (
            float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else None
        )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        step = int(trainer.global_step)
        loss = trainer.callback_metrics.get(self.loss_key)
        if loss is not None:
            self.history["loss"].append((step, float(loss)))
        if self._lr is not None:
            self.history["lr"].append((step, self._lr))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        step = int(trainer.global_step)
        for key, value in trainer.callback_metrics.items():
            if VAL_KEYS.match(key):
                self.history.setdefault(key, []).append((step, float(value)))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._draw(trainer)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._draw(trainer)

    def _draw(self, trainer: pl.Trainer) -> None:
        if trainer.is_global_zero and any(self.history.values()):
            path = Path(trainer.default_root_dir) / self.filename
            plot_training_curves(path, self.history, self.smoothing)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        hist = state_dict.get("history", {})
        self.history = {"loss": [], "lr": []}
        self.history.update({k: [(int(s), float(v)) for s, v in pts] for k, pts in hist.items()})


def _ema(y: np.ndarray, w: float) -> np.ndarray:
    out = np.empty_like(y)
    acc = y[0]
    for i, v in enumerate(y):
        acc = w * acc + (1 - w) * v
        out[i] = acc
    return out


def plot_training_curves(
    path: str | os.PathLike[str],
    history: dict[str, list[tuple[int, float]]],
    smoothing: float = 0.9,
) -> None:
    """Draw loss (raw and smoothed), learning rate and validation accuracies over steps as PNG.
    ``history`` maps "loss", "lr" and validation metric names to (step, value) lists."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    for ax, label in zip(axes, ("loss", "learning rate", "validation accuracy %"), strict=True):
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    loss_ax, lr_ax, val_ax = axes
    loss = np.asarray(history.get("loss", []), dtype=np.float64).reshape(-1, 2)
    finite = loss[np.isfinite(loss[:, 1])]
    if finite.size:
        loss_ax.plot(*finite.T, color="tab:blue", alpha=0.35, linewidth=0.8, label="training loss")
        if smoothing > 0 and finite.shape[0] > 2:
            ema, label = _ema(finite[:, 1], smoothing), f"moving average ({smoothing:g})"
            loss_ax.plot(finite[:, 0], ema, color="tab:blue", linewidth=1.6, label=label)
        loss_ax.legend(fontsize=8, loc="upper right")
    else:
        loss_ax.text(0.5, 0.5, "no training loss logged", ha="center", transform=loss_ax.transAxes)
    lr = np.asarray(history.get("lr", []), dtype=np.float64).reshape(-1, 2)
    if lr.size:
        lr_ax.plot(lr[:, 0], lr[:, 1], color="tab:orange", linewidth=1.4)
        if np.all(lr[:, 1] > 0) and lr[:, 1].max() / lr[:, 1].min() > 100:
            lr_ax.set_yscale("log")
    else:
        lr_ax.text(0.5, 0.5, "no learning rate recorded", ha="center", transform=lr_ax.transAxes)
    vals = {
        k: np.asarray(v, np.float64).reshape(-1, 2)
        for k, v in history.items()
        if k not in ("loss", "lr") and v
    }
    for k, v in sorted(vals.items()):
        best = int(np.nanargmax(v[:, 1])) if np.isfinite(v[:, 1]).any() else 0
        label = f"{k} (last {100 * v[-1, 1]:.2f} %, best {100 * v[best, 1]:.2f} %)"
        val_ax.plot(v[:, 0], 100 * v[:, 1], marker="o", markersize=3, linewidth=1.4, label=label)
    if vals:
        val_ax.legend(fontsize=8, loc="lower right")
    else:
        val_ax.text(0.5, 0.5, "no validation run", ha="center", transform=val_ax.transAxes)
    val_ax.set_xlabel("optimizer step")
    last = max((int(s) for v in history.values() for s, _ in v), default=0)
    title = f"training curves ({last} steps)"
    if finite.size:
        title += f", last loss {finite[-1, 1]:.4f}"
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
