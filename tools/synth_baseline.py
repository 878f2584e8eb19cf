"""Check that the synthetic face data set needs a learned embedding.

Builds held-out verification pairs from synthetic identities that no training run sees (ids
from ``facerec.data.pairs.SYNTHETIC_HELD_OUT_START``, disjoint from training ids 0..N-1, the same
held-out range as ``facerec fit``'s validation), then reports the verification accuracy of

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

import numpy as np

from facerec.data.image import fit_to_size
from facerec.data.pairs import SYNTHETIC_HELD_OUT_START, make_pairs
from facerec.data.synthetic import SyntheticFaces
from facerec.inference import TorchEmbedder, embed_images, l2_normalize
from facerec.metrics.verification import best_threshold_accuracy, kfold_accuracy


def render_grid(
    faces: SyntheticFaces, ids: range, n_imgs: int, size: int | None = None
) -> np.ndarray:
    """Images of ``ids`` x ``n_imgs`` -> uint8 (len(ids) * n_imgs, S, S, 3), optionally resized."""
    out = []
    for i in ids:
        for j in range(n_imgs):
            img = faces.render(i, j)
            out.append(fit_to_size(img, (size, size)) if size is not None else img)
    return np.stack(out)


def scores_from_embeddings(emb: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Cosine of each pair: emb (N, D), pairs (P, 2) -> (P,)."""
    e = l2_normalize(emb).astype(np.float64)
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
    """uint8 (N, H, W, 3) -> float tensor (N, 3, H, W), normalised as facerec fit does."""
    import torch

    from facerec.data.datasets import normalize_images

    return normalize_images(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())


def embed(net, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Embeddings (N, D) of uint8 images (N, H, W, 3) through facerec's embedding loop."""
    size = (images.shape[1], images.shape[2])
    return embed_images(TorchEmbedder(net, size, batch_size=batch), images, batch, flip=False)


def train(args: argparse.Namespace, faces: SyntheticFaces, eval_imgs, pairs, issame) -> None:
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
    acc0 = accuracies(scores_from_embeddings(embed(net, eval_imgs), pairs), issame)
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
    acc = accuracies(scores_from_embeddings(embed(net, eval_imgs), pairs), issame)
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
    p.add_argument("--eval-identities", type=int, default=200, help="held-out identities")
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
    labels = np.repeat(np.arange(args.eval_identities), args.eval_images)
    idx1, idx2, issame = make_pairs(labels, args.pairs, seed=12345)
    pairs = np.stack([np.asarray(idx1), np.asarray(idx2)], axis=1)
    ids = range(SYNTHETIC_HELD_OUT_START, SYNTHETIC_HELD_OUT_START + args.eval_identities)
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
            imgs = np.stack([fit_to_size(im, (size, size)) for im in imgs])
        acc = accuracies(raw_pixel_scores(imgs, pairs), issame)
        print(f"raw-pixel cosine at {size}x{size}: best {acc[0]:.4f}  10-fold {acc[1]:.4f}")

    if args.train:
        import torch

        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(True)
        small = np.stack([fit_to_size(im, (args.input, args.input)) for im in eval_imgs])
        train(args, faces, small, pairs, issame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
