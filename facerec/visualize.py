"""``facerec plot-features``: the picture the margin-loss papers are known for.

Trains one small IResNet per loss on a few synthetic identities, with a 2-D embedding for the
unnormalised losses (Softmax, Softmax + CenterLoss) and a 3-D embedding shown on the unit sphere
for the normalised ones (NormFace, SphereFace, CosFace, ArcFace), and draws the features of
images not used for training, one colour per identity, side by side in one PNG.

    facerec plot-features --out features.png
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from facerec.data.image import fit_to_size, to_tensor_array
from facerec.io import atomic_path
from facerec.module import FaceRecognitionModule


@dataclass(frozen=True)
class Panel:
    title: str
    head: dict[str, Any]
    dim: int
    center_loss: dict[str, float] | None = None


PANELS = (
    Panel("Softmax", {"class_path": "facerec.heads.SoftmaxHead"}, 2),
    Panel("Softmax + CenterLoss", {"class_path": "facerec.heads.SoftmaxHead"}, 2,
          {"weight": 0.05, "alpha": 0.5}),
    Panel("NormFace (F-Norm, s=16)", {"class_path": "facerec.heads.NormFaceHead",
                                      "init_args": {"feature_norm": True, "scale": 16.0}}, 3),
    Panel("SphereFace (m=4)", {"class_path": "facerec.heads.SphereFaceHead",
                               "init_args": {"margin": 4, "feature_norm": True, "scale": 16.0,
                                             "base": 100.0, "gamma": 0.1, "lambda_min": 5.0}}, 3),
    Panel("CosFace (s=16, m=0.35)", {"class_path": "facerec.heads.CosFaceHead",
                                     "init_args": {"scale": 16.0, "margin": 0.35}}, 3),
    Panel("ArcFace (s=16, m=0.5)", {"class_path": "facerec.heads.ArcFaceHead",
                                    "init_args": {"scale": 16.0, "margin": 0.5}}, 3),
)


def synthetic_set(identities: int, images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, size, size) normalised images and (N,) labels of the first ``identities`` ids."""
    from facerec.data.synthetic import SyntheticFaces

    gen = SyntheticFaces(num_identities=identities, images_per_identity=images, seed=seed)
    x = np.stack([to_tensor_array(fit_to_size(gen.render(i, j), (size, size)))
                  for i in range(identities) for j in range(images)])
    return x, np.repeat(np.arange(identities), images)


def train_panel(panel: Panel, x: np.ndarray, y: np.ndarray, steps: int, size: int,
                batch: int, seed: int) -> FaceRecognitionModule:
    """Train one small model with ``panel``'s loss in a plain loop; returns it in eval mode."""
    torch.manual_seed(seed)
    module = FaceRecognitionModule.from_config(
        backbone={"class_path": "facerec.models.IResNet",
                  "init_args": {"depth": 18, "width": 0.25, "embedding_dim": panel.dim,
                                "input_size": [size, size]}},
        head=panel.head, num_classes=int(y.max()) + 1, center_loss=panel.center_loss,
    )
    opt = torch.optim.AdamW(module.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    rng = np.random.default_rng(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    module.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(y), size=batch, replace=False))
        xb = xt[idx]
        flip = torch.from_numpy(rng.random(batch) < 0.5)
        xb[flip] = xb[flip].flip(3)
        loss = module.compute_losses(module(xb), yt[idx])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return module.eval()


def draw(results: list[tuple[Panel, np.ndarray, np.ndarray]], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.2 * len(results), 4.4))
    cmap = plt.get_cmap("tab10")
    for n, (panel, f, y) in enumerate(results):
        if panel.dim == 2:
            ax = fig.add_subplot(1, len(results), n + 1)
            for c in np.unique(y):
                ax.scatter(f[y == c, 0], f[y == c, 1], s=6, color=cmap(c % 10), alpha=0.8)
            ax.axhline(0, color="0.8", lw=0.5)
            ax.axvline(0, color="0.8", lw=0.5)
            ax.set_aspect("equal", adjustable="datalim")
        else:
            ax = fig.add_subplot(1, len(results), n + 1, projection="3d")
            u = f / np.linalg.norm(f, axis=1, keepdims=True)
            a, b = np.mgrid[0 : 2 * np.pi : 30j, 0 : np.pi : 15j]
            ax.plot_wireframe(np.cos(a) * np.sin(b), np.sin(a) * np.sin(b), np.cos(b),
                              color="0.85", lw=0.3)
            for c in np.unique(y):
                ax.scatter(*u[y == c].T, s=6, color=cmap(c % 10), alpha=0.9, depthshade=False)
            ax.set_box_aspect((1, 1, 1))
            ax.set_axis_off()
        ax.set_title(panel.title, fontsize=11)
    fig.suptitle("Features of held-out images of 8 synthetic identities (one colour each)")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="facerec plot-features", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="features.png", help="PNG to write (default features.png)")
    p.add_argument("--identities", type=int, default=8)
    p.add_argument("--images", type=int, default=60, help="images per identity (3/4 train)")
    p.add_argument("--steps", type=int, default=400, help="training steps per panel")
    p.add_argument("--size", type=int, default=32, help="input side in pixels")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not 2 <= args.identities <= 10:
        p.error("--identities must be between 2 and 10 (one colour each)")
    x, y = synthetic_set(args.identities, args.images, args.size, args.seed)
    train = (np.arange(len(y)) % args.images) < int(args.images * 0.75)
    results = []
    for panel in PANELS:
        t0 = time.perf_counter()
        module = train_panel(panel, x[train], y[train], args.steps, args.size, args.batch,
                             args.seed)
        with torch.no_grad():
            f = module(torch.from_numpy(x[~train])).numpy()
        print(f"{panel.title:<26} trained in {time.perf_counter() - t0:5.1f} s", flush=True)
        results.append((panel, f, y[~train]))
    draw(results, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
