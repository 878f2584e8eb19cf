"""ViT-T against IResNet at about equal FLOPs: training step rate and forward images/s.

The FLOPs of one 112×112 image (multiply-adds, counted by ``torch.utils.flop_counter``) are
measured for insightface's ViT-T; each IResNet depth asked for gets the width whose FLOPs come
closest to them (bisection on the measured count). Then, for every network, on random images
(no data loading):

* training: backbone + ArcFace head (``--classes`` identities) + cross-entropy, backward and an
  SGD step (momentum 0.9, the same optimiser for all, so only the networks differ), in train
  mode (ViT-T masks 10% of its patches and drops paths as in training), ``--steps`` timed steps
  after ``--warmup`` untimed ones;
* forward: eval mode, no gradients, ``--forward-batch`` images, ``--repeats`` timed passes.

The networks take turns (one step of each, then the next round), so all meet the same load from
other processes; each call is timed alone in wall seconds and in this process's CPU seconds, and
the fastest counts (the one least disturbed, as ``_common.best_time``). On a shared machine the
images per CPU-second are the steadier figure; the JSON keeps every timing.

    python tools/bench/vit.py                          # ViT-T vs IResNet-18 and -50, 112×112
    python tools/bench/vit.py --depths 50 --batch 32 --steps 5 --precision bf16
    python tools/bench/vit.py --smoke                  # seconds: tiny sizes, checks it runs
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
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


class Trainer:
    """One network's training step: backbone + ArcFace + cross-entropy, backward, SGD."""

    def __init__(self, net: nn.Module, args: argparse.Namespace) -> None:
        torch.manual_seed(0)
        self.net, self.head = net, ArcFaceHead(args.dim, args.classes)
        params = [p for m in (net, self.head) for p in m.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.x = torch.randn(args.batch, 3, args.size, args.size)
        self.y = torch.randint(0, args.classes, (args.batch,))
        self.x_eval = torch.randn(args.forward_batch, 3, args.size, args.size)
        self.dtype = DTYPES[args.precision]

    def _autocast(self) -> torch.autocast:
        dtype = self.dtype or torch.float32
        return torch.autocast("cpu", dtype=dtype, enabled=self.dtype is not None)

    def step(self) -> tuple[float, float]:
        """One training step in train mode: (wall seconds, CPU seconds of this process)."""
        self.net.train(), self.head.train()
        t, c = time.perf_counter(), time.process_time()
        with self._autocast():
            emb = self.net(self.x)
        loss = F.cross_entropy(self.head(emb.float(), self.y), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t, time.process_time() - c

    def forward(self) -> tuple[float, float]:
        """One eval-mode forward pass without gradients: (wall seconds, CPU seconds)."""
        self.net.eval()
        t, c = time.perf_counter(), time.process_time()
        with torch.no_grad(), self._autocast():
            self.net(self.x_eval)
        return time.perf_counter() - t, time.process_time() - c


def interleaved(
    calls: list[Callable[[], tuple[float, float]]], warmup: int, runs: int
) -> list[list[tuple[float, float]]]:
    """Round-robin ``runs`` timed calls of each (after ``warmup`` untimed rounds), so every
    network meets the same load from other processes; per call, its (wall, CPU) seconds."""
    out: list[list[tuple[float, float]]] = [[] for _ in calls]
    for r in range(warmup + runs):
        for i, call in enumerate(calls):
            timing = call()
            if r >= warmup:
                out[i].append(timing)
    return out


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
    p.add_argument("--repeats", type=int, default=3, help="timed forward passes")
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
    runners = [Trainer(net, args) for _, net, _ in nets]
    train = interleaved([r.step for r in runners], args.warmup, args.steps)
    forward = interleaved([r.forward for r in runners], 1, args.repeats)
    rows = []
    for (name, net, cost), steps, fwd in zip(nets, train, forward, strict=True):
        wall, cpu = min(w for w, _ in steps), min(c for _, c in steps)
        fwall, fcpu = min(w for w, _ in fwd), min(c for _, c in fwd)
        rows.append(
            {
                "network": name,
                "params_m": round(sum(q.numel() for q in net.parameters()) / 1e6, 2),
                "gmacs": round(cost / 1e9, 3),
                "train_img_per_s": round(args.batch / wall, 2),
                "train_img_per_cpu_s": round(args.batch / cpu, 2),
                "forward_img_per_s": round(args.forward_batch / fwall, 1),
                "forward_img_per_cpu_s": round(args.forward_batch / fcpu, 1),
                "train_steps_wall_cpu_s": [[round(w, 3), round(c, 3)] for w, c in steps],
                "forward_wall_cpu_s": [[round(w, 3), round(c, 3)] for w, c in fwd],
            }
        )
    print(
        f"{args.size}×{args.size}, {args.dim}-d, training batch {args.batch} (ArcFace, "
        f"{args.classes} ids, SGD), forward batch {args.forward_batch}, precision "
        f"{args.precision}, {machine}, torch {torch.__version__}; fastest of "
        f"{args.steps} steps / {args.repeats} forward passes, the networks taking turns"
    )
    print(
        "| network | params (M) | GFLOPs (MACs) | train img/s | train img per CPU-s "
        "| forward img/s | forward img per CPU-s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['network']} | {r['params_m']} | {r['gmacs']} | {r['train_img_per_s']} "
            f"| {r['train_img_per_cpu_s']} | {r['forward_img_per_s']} "
            f"| {r['forward_img_per_cpu_s']} |"
        )
    if args.json:
        from facerec.io import atomic_write_text

        info = {"machine": machine, "torch": torch.__version__, "args": vars(args)}
        atomic_write_text(args.json, json.dumps({**info, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
