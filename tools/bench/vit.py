"""ViT-T against IResNet at about equal FLOPs: training step rate and forward images/s.

The FLOPs of one 112×112 image (multiply-adds, counted by ``torch.utils.flop_counter``) are
measured for insightface's ViT-T; each IResNet depth asked for gets the width whose FLOPs come
closest to them (bisection on the measured count). Then, for every network, on random images
(no data loading):

* training: backbone + ArcFace head (``--classes`` identities) + cross-entropy, backward and an
  SGD step (momentum 0.9, the same optimiser for all, so only the networks differ), in train
  mode (ViT-T masks 10% of its patches and drops paths as in training); ``--steps`` timed steps
  after ``--warmup`` untimed ones, each timed alone; the median step gives steps/s and img/s;
* forward: eval mode, no gradients, ``--forward-batch`` images, the best of ``--repeats``.

    python tools/bench/vit.py                          # ViT-T vs IResNet-18 and -50, 112×112
    python tools/bench/vit.py --depths 50 --batch 32 --steps 5 --precision bf16
    python tools/bench/vit.py --smoke                  # seconds: tiny sizes, checks it runs
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from _common import best_time
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from facerec.heads import ArcFaceHead
from facerec.models import IResNet, vit_t

DTYPES = {"32": None, "bf16": torch.bfloat16}


def macs(net: nn.Module, size: int) -> float:
    """Multiply-adds of one (1, 3, size, size) image through ``net`` in eval mode."""
    net.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 2


def matched_width(depth: int, target: float, size: int, dim: int) -> tuple[float, float]:
    """(width, its multiply-adds): the IResNet-``depth`` width whose FLOPs at ``size`` come
    closest to ``target`` (bisection; FLOPs grow with width)."""

    def cost(w: float) -> float:
        return macs(IResNet(depth, embedding_dim=dim, width=w, input_size=(size, size)), size)

    lo, hi = 0.05, 4.0
    for _ in range(12):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cost(mid) < target else (lo, mid)
    best = min({round(lo, 3), round(hi, 3)}, key=lambda w: abs(cost(w) - target))
    return best, cost(best)


def train_rate(
    net: nn.Module, args: argparse.Namespace, dim: int
) -> tuple[float, float, list[float]]:
    """(steps/s, img/s, every timed step's seconds) of backbone + ArcFace + SGD."""
    torch.manual_seed(0)
    head = ArcFaceHead(dim, args.classes)
    params = [p for m in (net, head) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, args.classes, (args.batch,))
    dtype = DTYPES[args.precision]
    net.train(), head.train()
    times = []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            emb = net(x)
        loss = F.cross_entropy(head(emb.float(), y), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    return 1 / step, args.batch / step, times


def forward_rate(net: nn.Module, args: argparse.Namespace) -> float:
    """Images/s of an eval-mode forward pass (the best of ``--repeats``)."""
    x = torch.randn(args.forward_batch, 3, args.size, args.size)
    dtype = DTYPES[args.precision]
    net.eval()

    def run() -> None:
        with (
            torch.no_grad(),
            torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            net(x)

    seconds, _ = best_time(run, args.repeats)
    return args.forward_batch / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=int, nargs="+", default=[18, 50], help="IResNet depths")
    p.add_argument("--size", type=int, default=112, help="input side (112: insightface's)")
    p.add_argument("--dim", type=int, default=512, help="embedding size")
    p.add_argument("--classes", type=int, default=1000, help="identities of the ArcFace head")
    p.add_argument("--batch", type=int, default=16, help="training batch")
    p.add_argument("--steps", type=int, default=4, help="timed training steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed training steps first")
    p.add_argument("--forward-batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="forward passes (best counts)")
    p.add_argument("--precision", choices=sorted(DTYPES), default="32")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks that it runs")
    args = p.parse_args()
    if args.smoke:
        args.depths, args.size, args.dim, args.classes = [18], 36, 32, 16
        args.batch, args.steps, args.warmup, args.forward_batch, args.repeats = 4, 1, 0, 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vit_kw: dict[str, Any] = {"embedding_dim": args.dim, "input_size": (args.size, args.size)}
    if args.smoke:
        vit_kw.update(embed_dim=32, depth=2)
    nets: list[tuple[str, nn.Module, float]] = []
    vit = vit_t(**vit_kw)
    target = macs(vit, args.size)
    nets.append(("ViT-T", vit, target))
    for depth in args.depths:
        width, cost = matched_width(depth, target, args.size, args.dim)
        net = IResNet(depth, embedding_dim=args.dim, width=width, input_size=(args.size, args.size))
        nets.append((f"IResNet-{depth} width {width:g}", net, cost))

    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    rows = []
    for name, net, cost in nets:
        steps, train_img, times = train_rate(net, args, args.dim)
        fwd = forward_rate(net, args)
        n = sum(q.numel() for q in net.parameters()) / 1e6
        rows.append(
            {
                "network": name,
                "params_m": round(n, 2),
                "gmacs": round(cost / 1e9, 3),
                "train_steps_per_s": round(steps, 3),
                "train_img_per_s": round(train_img, 1),
                "train_step_seconds": [round(t, 3) for t in times],
                "forward_img_per_s": round(fwd, 1),
            }
        )
    print(
        f"{args.size}×{args.size}, {args.dim}-d, training batch {args.batch} (ArcFace, "
        f"{args.classes} ids, SGD), forward batch {args.forward_batch}, precision "
        f"{args.precision}, {machine}, torch {torch.__version__}"
    )
    print("| network | params (M) | GFLOPs (MACs) | train steps/s | train img/s | forward img/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['network']} | {r['params_m']} | {r['gmacs']} | {r['train_steps_per_s']} "
            f"| {r['train_img_per_s']} | {r['forward_img_per_s']} |"
        )
    if args.json:
        from facerec.io import atomic_write_text

        info = {"machine": machine, "torch": torch.__version__, "args": vars(args)}
        atomic_write_text(args.json, json.dumps({**info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
