"""``facerec plot-features``: the picture the margin-loss papers are known for.

Trains one small IResNet per loss on a few synthetic identities, with a 2-D embedding for the
unnormalised losses (Softmax, Softmax + CenterLoss) and a 3-D embedding shown on the unit sphere
for the normalised ones (NormFace, SphereFace, CosFace, ArcFace), and draws the features of
held-out images (not used for training), one colour per identity, side by side in one PNG.

    facerec plot-features --out features.png

The panels train in ``--jobs`` single-threaded worker processes. Expected: Softmax spreads
each class radially from the origin; CenterLoss pulls each class into a compact cluster; the
normalised heads place the classes at separated points on the sphere, tighter the larger the
margin.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from facerec.errors import FacerecError
from facerec.io import atomic_path
from facerec.metrics.verification import l2_normalize

__all__ = ["PANELS", "Panel", "main", "synthetic_set", "train_panel"]


@dataclass(frozen=True)
class Panel:
    """One loss to train and draw: the head config, the embedding size and optional CenterLoss."""

    title: str
    head: dict[str, Any]
    dim: int
    center_loss: dict[str, float] | None = None
    lr: float = 3e-3


def _head(name: str, **init_args: Any) -> dict[str, Any]:
    """The config of ``facerec.heads.<name>`` with ``init_args``."""
    head: dict[str, Any] = {"class_path": f"facerec.heads.{name}"}
    return {**head, "init_args": init_args} if init_args else head


# Scales are lower than the 64 of face recognition (s = 16 suits 3-D features and few classes);
# margins are the papers' (ArcFace m in radians, CosFace m a cosine offset, SphereFace m = 4).
PANELS = (
    Panel("Softmax", _head("SoftmaxHead"), 2),
    Panel(
        "Softmax + CenterLoss (λ=0.1, α=0.5)",
        _head("SoftmaxHead"),
        2,
        {"weight": 0.1, "alpha": 0.5},
    ),
    Panel("NormFace (F-Norm, s=16)", _head("NormFaceHead", feature_norm=True, scale=16.0), 3),
    Panel(
        "SphereFace (m=4, F-Norm s=16)",
        _head(
            "SphereFaceHead",
            margin=4,
            feature_norm=True,
            scale=16.0,
            base=100.0,
            gamma=0.1,
            lambda_min=2.0,
        ),
        3,
    ),
    Panel("CosFace (s=16, m=0.35)", _head("CosFaceHead", scale=16.0, margin=0.35), 3),
    Panel("ArcFace (s=16, m=0.5 rad)", _head("ArcFaceHead", scale=16.0, margin=0.5), 3),
)


def synthetic_set(
    identities: int, images: int, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, size, size) float32 normalised RGB images of the first ``identities`` synthetic
    identities and their (N,) int64 labels, N = identities·images."""
    from facerec.data.image import fit_to_size, to_tensor_array
    from facerec.data.synthetic import SyntheticFaces

    gen = SyntheticFaces(num_identities=identities, images_per_identity=images, seed=seed)
    faces = (gen.render(i, j) for i in range(identities) for j in range(images))
    x = np.stack([to_tensor_array(fit_to_size(f, (size, size))) for f in faces])
    return x, np.repeat(np.arange(identities), images).astype(np.int64)


def train_panel(
    panel: Panel,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    size: int,
    batch: int,
    seed: int,
    width: float = 0.25,
) -> Any:
    """Train one small IResNet-18 with ``panel``'s loss in a plain loop (AdamW, one-cycle LR) on
    ``x`` (N, 3, size, size) and labels ``y`` (N,); return the module in eval mode."""
    import torch

    from facerec.training.module import FaceRecognitionModule

    torch.manual_seed(seed)
    net = {"depth": 18, "width": width, "embedding_dim": panel.dim, "input_size": [size, size]}
    module = FaceRecognitionModule.from_config(
        backbone={"class_path": "facerec.models.IResNet", "init_args": net},
        head=panel.head,
        num_classes=int(y.max()) + 1,
        center_loss=panel.center_loss,
    )
    # as in the papers' toy networks the feature is the last linear layer's: no final BN1d
    module.backbone.head.features = torch.nn.Identity()
    opt = torch.optim.AdamW(module.parameters(), lr=panel.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=panel.lr, total_steps=max(steps, 1))
    rng = np.random.default_rng(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    batch = min(batch, len(y))
    module.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(y), size=batch, replace=False))
        xb = xt[idx]
        flip = torch.from_numpy(rng.random(batch) < 0.5)
        xb[flip] = xb[flip].flip(3)
        loss = module.compute_losses(module(xb), yt[idx])["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return module.eval()


def _panel_features(job: tuple) -> tuple[np.ndarray, np.ndarray, float]:
    """Worker: train one panel single-threaded; return the training and held-out images'
    features and the seconds it took."""
    import torch

    panel, x_train, y_train, x_test, a = job
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        module = train_panel(panel, x_train, y_train, a.steps, a.size, a.batch, a.seed, a.width)
        with torch.no_grad():
            f_train, f_test = (module(torch.from_numpy(x)).numpy() for x in (x_train, x_test))
        return f_train, f_test, time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)


Result = tuple[Panel, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: scatter styles of the training features (dots) and the held-out ones (outlined)
STYLES = (
    {"s": 4, "alpha": 0.45, "linewidths": 0},
    {"s": 16, "alpha": 0.95, "edgecolors": "k", "linewidths": 0.4},
)


def draw(results: list[Result], out: str, note: str = "") -> None:
    """Draw each panel's (panel, training features, labels, held-out features, labels) to the
    PNG ``out``: 2-D features as they are, 3-D ones as directions on the unit sphere."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(results), 3)
    rows = (len(results) + cols - 1) // cols
    fig = plt.figure(figsize=(4.6 * cols, 4.6 * rows))
    cmap = plt.get_cmap("tab10")
    for k, (panel, f_tr, y_tr, f_te, y_te) in enumerate(results):
        pts = [(f_tr, y_tr), (f_te, y_te)]
        if panel.dim == 2:
            ax = fig.add_subplot(rows, cols, k + 1)
            ax.axhline(0, color="0.75", lw=0.6, zorder=0)
            ax.axvline(0, color="0.75", lw=0.6, zorder=0)
            ax.set_aspect("equal", adjustable="datalim")
            ax.tick_params(labelsize=7)
        else:
            ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
            pts = [(l2_normalize(f), y) for f, y in pts]
            a, b = np.mgrid[0 : 2 * np.pi : 36j, 0 : np.pi : 18j]
            ax.plot_wireframe(
                np.cos(a) * np.sin(b), np.sin(a) * np.sin(b), np.cos(b), color="0.88", lw=0.3
            )
            ax.set_box_aspect((1, 1, 1))
            ax.set(xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1))
            ax.set_axis_off()
        shade = {"depthshade": False} if panel.dim == 3 else {}
        for (f, y), style in zip(pts, STYLES, strict=True):
            for c in np.unique(y):
                ax.scatter(*f[y == c].T, color=cmap(c % 10), **shade, **style)
        ax.set_title(panel.title, fontsize=11)
    classes = len(np.unique(results[0][2])) if results else 0
    fig.suptitle(
        f"Learned features of {classes} synthetic identities, one colour each: training images "
        f"(dots) and held-out images (outlined){note}",
        fontsize=11,
    )
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``facerec plot-features [--out PNG] [--steps N] ...``; returns the exit status."""
    p = argparse.ArgumentParser(prog="facerec plot-features", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="features.png", help="PNG to write (default features.png)")
    p.add_argument("--identities", type=int, default=8, help="classes, 2..10 (default 8)")
    p.add_argument("--images", type=int, default=48, help="images per identity, 3/4 train")
    p.add_argument("--steps", type=int, default=300, help="training steps per panel")
    p.add_argument("--size", type=int, default=32, help="input side in pixels (default 32)")
    p.add_argument("--width", type=float, default=0.25, help="IResNet-18 width multiplier")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--jobs", type=int, default=2, help="worker processes, one thread each (1: in-process)"
    )
    args = p.parse_args(argv)
    if not 2 <= args.identities <= 10:
        p.error("--identities must be between 2 and 10 (one colour each)")
    if args.images < 4:
        p.error("--images must be at least 4 (3/4 train, 1/4 held out)")
    for name in ("steps", "size", "batch", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be a positive integer")
    if args.size < 8:
        p.error("--size must be at least 8 pixels")
    try:
        x, y = synthetic_set(args.identities, args.images, args.size, args.seed)
    except Exception as e:  # the generator or OpenCV failing is not a user error to debug
        raise FacerecError(f"could not render the synthetic identities: {e}") from e
    train = (np.arange(len(y)) % args.images) < int(args.images * 0.75)
    jobs = [(panel, x[train], y[train], x[~train], args) for panel in PANELS]
    t0 = time.perf_counter()
    pool = mp.get_context("spawn").Pool(min(args.jobs, len(jobs))) if args.jobs > 1 else None
    outputs = map(_panel_features, jobs) if pool is None else pool.imap(_panel_features, jobs)
    results = []
    try:
        for panel, (f_train, f_test, seconds) in zip(PANELS, outputs, strict=True):
            print(f"{panel.title:<38} trained in {seconds:6.1f} s", flush=True)
            results.append((panel, f_train, y[train], f_test, y[~train]))
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    draw(results, args.out, f"; IResNet-18 ×{args.width}, {args.size}px, {args.steps} steps")
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
