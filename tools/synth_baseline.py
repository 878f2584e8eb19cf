"""Check that the synthetic face data set needs a learned embedding.

Builds held-out verification pairs from synthetic identities that no training run sees (ids
10000+, disjoint from training ids 0..N-1), then reports the verification accuracy of

* a raw-pixel cosine baseline (no network): flattened pixels minus the mean image, cosine;
* with ``--train``: a small CNN (4 conv stages, ~0.4M parameters, 64x64 input) trained with an
  inline CosFace head (s=30, m=0.3) in a plain PyTorch loop for a fixed time budget, and the same
  network untrained.

Accuracies are printed two ways: ``best`` (best threshold chosen on the pairs themselves,
optimistic) and ``10-fold`` (threshold chosen on 9 folds, tested on the 10th: the reported
protocol). Example::

    .venv/bin/python tools/synth_baseline.py --train --seconds 150

Everything is deterministic for a seed except the number of training steps that fit in the
time budget.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facerec.data.synthetic import SyntheticFaces
from facerec.metrics.verification import best_threshold_accuracy, kfold_accuracy

HELD_OUT_START = 10000


def make_pairs(
    n_ids: int, n_imgs: int, n_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs over an (n_ids, n_imgs) grid of images, flat index id * n_imgs + img.

    Returns ``(pairs, issame)``: (2P, 2) int flat indices and (2P,) bool, P positive and P
    negative pairs, shuffled (so every fold of a k-fold split holds both kinds), no repeats.
    """
    seen: set[tuple[int, int]] = set()
    pos: list[tuple[int, int]] = []
    neg: list[tuple[int, int]] = []
    while len(pos) < n_pairs:
        i = int(rng.integers(n_ids))
        a, b = rng.choice(n_imgs, 2, replace=False)
        key = (i * n_imgs + int(min(a, b)), i * n_imgs + int(max(a, b)))
        if key not in seen:
            seen.add(key)
            pos.append(key)
    while len(neg) < n_pairs:
        i, j = rng.choice(n_ids, 2, replace=False)
        key = (
            int(i) * n_imgs + int(rng.integers(n_imgs)),
            int(j) * n_imgs + int(rng.integers(n_imgs)),
        )
        key = (min(key), max(key))
        if key not in seen:
            seen.add(key)
            neg.append(key)
    pairs = np.array(pos + neg, dtype=np.int64)
    issame = np.array([True] * n_pairs + [False] * n_pairs)
    order = rng.permutation(2 * n_pairs)
    return pairs[order], issame[order]


def render_grid(
    faces: SyntheticFaces, ids: range, n_imgs: int, size: int | None = None
) -> np.ndarray:
    """Images of ``ids`` x ``n_imgs`` -> uint8 (len(ids) * n_imgs, S, S, 3), optionally resized."""
    out = []
    for i in ids:
        for j in range(n_imgs):
            img = faces.render(i, j)
            if size is not None and size != img.shape[0]:
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            out.append(img)
    return np.stack(out)


def scores_from_embeddings(emb: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine of each pair: emb (N, D), pairs (P, 2) -> (P,)."""
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return np.einsum("nd,nd->n", e[pairs[:, 0]], e[pairs[:, 1]])


def accuracies(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """(best-threshold accuracy, 10-fold accuracy)."""
    best, _ = best_threshold_accuracy(scores, issame)
    return best, kfold_accuracy(scores, issame, n_folds=10).accuracy_mean


def raw_pixel_scores(images: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Raw-pixel cosine: images (N, H, W, 3) uint8 -> pair scores (P,) after mean-image removal."""
    x = images.reshape(len(images), -1).astype(np.float64)
    x -= x.mean(axis=0, keepdims=True)
    return scores_from_embeddings(x, pairs)


def build_net(embedding: int = 128):
    """A 4-stage conv net for 64x64 RGB input: (B, 3, 64, 64) float -> (B, embedding)."""
    from torch import nn

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        ]

    layers: list[nn.Module] = [*block(3, 16, 2)]  # 32x32
    layers += [*block(16, 16, 1), *block(16, 32, 2), *block(32, 32, 1)]  # 16x16
    layers += [*block(32, 64, 2), *block(64, 64, 1)]  # 8x8
    layers += [*block(64, 128, 2)]  # 4x4
    layers += [
        nn.BatchNorm2d(128),
        nn.Flatten(),
        nn.Linear(128 * 4 * 4, embedding, bias=False),
        nn.BatchNorm1d(embedding),
    ]
    return nn.Sequential(*layers)


def to_input(images: np.ndarray):
    """uint8 (N, H, W, 3) -> float tensor (N, 3, H, W) in [-1, 1]."""
    import torch

    t = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return (t - 127.5) / 127.5


def embed(net, x, batch: int = 500) -> np.ndarray:
    """Embeddings (N, D) of input tensor x (N, 3, H, W) in eval mode."""
    import torch

    net.eval()
    with torch.no_grad():
        out = [net(x[i : i + batch]) for i in range(0, len(x), batch)]
    return torch.cat(out).numpy()


def train(args: argparse.Namespace, faces: SyntheticFaces, eval_x, pairs, issame) -> None:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    train_imgs = render_grid(faces, range(args.identities), args.images_per_identity, args.input)
    labels = torch.arange(args.identities).repeat_interleave(args.images_per_identity)
    x_train = to_input(train_imgs)
    print(
        f"rendered {len(x_train)} training images ({args.identities} ids) in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )

    net = build_net(args.embedding)
    n_params = sum(p.numel() for p in net.parameters())
    acc0 = accuracies(scores_from_embeddings(embed(net, eval_x), pairs), issame)
    print(
        f"untrained net ({n_params / 1e6:.2f}M params): best {acc0[0]:.4f}  10-fold {acc0[1]:.4f}"
    )

    weight = torch.nn.Parameter(torch.randn(args.identities, args.embedding) * 0.01)
    params = [{"params": net.parameters()}, {"params": [weight]}]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    s, m = 30.0, 0.3
    pad = args.shift
    start = time.perf_counter()
    step = epoch = 0
    done = False
    while not done:
        net.train()
        perm = torch.randperm(len(x_train))
        for k in range(0, len(perm) - args.batch + 1, args.batch):
            elapsed = time.perf_counter() - start
            # progress through the budget: time, or steps when --steps is given
            frac = step / args.steps if args.steps else elapsed / args.seconds
            if frac >= 1.0:
                done = True
                break
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * frac))
            for g in opt.param_groups:
                g["lr"] = lr
            idx = perm[k : k + args.batch]
            xb, yb = x_train[idx], labels[idx]
            if pad:  # random shift by up to `pad` pixels (replicated border), per sample
                xp = F.pad(xb, (pad, pad, pad, pad), mode="replicate")
                ox = torch.randint(0, 2 * pad + 1, (len(xb),))
                oy = torch.randint(0, 2 * pad + 1, (len(xb),))
                n = xb.shape[-1]
                xb = torch.stack(
                    [xp[i, :, oy[i] : oy[i] + n, ox[i] : ox[i] + n] for i in range(len(xb))]
                )
            emb = F.normalize(net(xb))
            cos = emb @ F.normalize(weight).T
            logits = s * (cos - m * F.one_hot(yb, args.identities))
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 50 == 0:
                msg = (
                    f"step {step} epoch {epoch} t={elapsed:.0f}s lr={lr:.1e} loss={loss.item():.2f}"
                )
                print(f"  {msg}", flush=True)
        epoch += 1
    train_s = time.perf_counter() - start
    acc = accuracies(scores_from_embeddings(embed(net, eval_x), pairs), issame)
    print(
        f"trained net: {step} steps ({step * args.batch / len(x_train):.1f} epochs) in "
        f"{train_s:.0f} s ({train_s / max(step, 1):.3f} s/step): "
        f"best {acc[0]:.4f}  10-fold {acc[1]:.4f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="data-set seed")
    p.add_argument("--difficulty", type=float, default=1.0)
    p.add_argument("--size", type=int, default=112, help="rendered image size")
    p.add_argument("--pairs", type=int, default=1000, help="positive (and negative) pairs")
    p.add_argument("--eval-identities", type=int, default=200, help="held-out ids 10000+")
    p.add_argument("--eval-images", type=int, default=10, help="images per held-out identity")
    p.add_argument("--train", action="store_true", help="also train and evaluate a small CNN")
    p.add_argument("--identities", type=int, default=200, help="training ids 0..N-1")
    p.add_argument("--images-per-identity", type=int, default=20)
    p.add_argument("--input", type=int, default=64, help="network input size")
    p.add_argument("--seconds", type=float, default=150.0, help="training time budget")
    p.add_argument("--steps", type=int, default=0, help="train for N steps instead of --seconds")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--embedding", type=int, default=128)
    p.add_argument("--shift", type=int, default=0, help="random-shift augmentation, pixels")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    faces = SyntheticFaces(seed=args.seed, size=args.size, difficulty=args.difficulty)
    rng = np.random.default_rng(12345)
    pairs, issame = make_pairs(args.eval_identities, args.eval_images, args.pairs, rng)
    ids = range(HELD_OUT_START, HELD_OUT_START + args.eval_identities)
    t0 = time.perf_counter()
    eval_imgs = render_grid(faces, ids, args.eval_images)
    dt = time.perf_counter() - t0
    print(
        f"difficulty {args.difficulty}: {len(eval_imgs)} held-out images "
        f"({dt / len(eval_imgs) * 1e3:.2f} ms each), {len(pairs)} pairs"
    )
    for size in (args.size, args.input):
        imgs = eval_imgs
        if size != args.size:
            imgs = np.stack(
                [cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in imgs]
            )
        acc = accuracies(raw_pixel_scores(imgs, pairs), issame)
        print(f"raw-pixel cosine at {size}x{size}: best {acc[0]:.4f}  10-fold {acc[1]:.4f}")

    if args.train:
        import torch

        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(True)
        small = np.stack(
            [
                cv2.resize(im, (args.input, args.input), interpolation=cv2.INTER_AREA)
                for im in eval_imgs
            ]
        )
        train(args, faces, to_input(small), pairs, issame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
