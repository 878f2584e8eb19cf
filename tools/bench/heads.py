"""Benchmark the margin heads: forward + backward time, peak memory and matmul efficiency.

For each number of classes C, every facerec head computes ``cross_entropy(head(x, y), y)`` and its
backward for x (B, D) (requires grad, as a backbone output) and random labels, next to
pytorch-metric-learning's ArcFaceLoss, CosFaceLoss, SphereFaceLoss and SubCenterArcFaceLoss
(which include the same cross-entropy) in the same process, so the ratios compare like with like.

Measured:

* time: the minimum wall time over ``--repeats`` steps after ``--warmup`` steps, our head and its
  pytorch-metric-learning counterpart interleaved step by step (the minimum and the interleaving
  make the ratio robust on a shared, loaded machine); gradients are reset to None
  before each step (as ``optimizer.zero_grad()`` does), so no step pays for accumulation.
* peak memory: on CPU, the largest total size of tensor storages alive at once that were created
  during the step (forward, loss, backward, including the (C, D) weight gradient), tracked by a
  ``TorchDispatchMode`` that sees every ATen op's outputs and drops storages once freed; the
  weight, inputs and module state that exist before the step are not counted. Kernel-internal
  scratch buffers are not seen. On CUDA: ``torch.cuda.max_memory_allocated`` minus the memory
  allocated before the step. The memory pass is separate from the timed steps.
* GFLOP/s: the three matrix products of a step (forward x·Wᵀ, backward dL/dx and dL/dW, each
  2·B·D·rows FLOPs, rows = C·K for sub-centre heads) divided by the step time, next to the rate of
  plain ``torch.mm`` on the same three shapes, timed in the same interleaved rounds ("mm rate");
  their ratio is the share of the step that is the unavoidable matrix work.
* memory guard: when the plain-mm buffers, our head and PML's loss would not fit in memory
  together (1M classes, and K = 3 sub-centres, on a small machine), they are timed one after the
  other instead of interleaved, and a module whose estimated need exceeds the free memory is
  skipped with a note under the tables.

Usage::

    python tools/bench/heads.py                      # C = 10k, 100k (B = 128), 1M (B = 64)
    python tools/bench/heads.py --classes 100000 --heads ArcFaceHead CosFaceHead
    python tools/bench/heads.py --quick              # smoke run: C = 1k, 5k, 2 repeats

Prints one markdown table per C.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import facerec.heads as H

OURS: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "SoftmaxHead": lambda d, c: H.SoftmaxHead(d, c),
    "NormFaceHead": lambda d, c: H.NormFaceHead(d, c),
    "SphereFaceHead": lambda d, c: H.SphereFaceHead(d, c),
    "CosFaceHead": lambda d, c: H.CosFaceHead(d, c),
    "ArcFaceHead": lambda d, c: H.ArcFaceHead(d, c),
    "CombinedMarginHead": lambda d, c: H.CombinedMarginHead(d, c, m1=1.0, m2=0.3, m3=0.2),
    "SubCenterArcFaceHead": lambda d, c: H.SubCenterArcFaceHead(d, c, k=3),
    "CurricularFaceHead": lambda d, c: H.CurricularFaceHead(d, c),
    "AdaFaceHead": lambda d, c: H.AdaFaceHead(d, c),
    "MagFaceHead": lambda d, c: H.MagFaceHead(d, c),
}
CENTRES_PER_CLASS = {"SubCenterArcFaceHead": 3}
# our head -> the pytorch-metric-learning loss computing the same thing
PML_PAIRS = {
    "ArcFaceHead": "ArcFaceLoss",
    "CosFaceHead": "CosFaceLoss",
    "SphereFaceHead": "SphereFaceLoss",
    "SubCenterArcFaceHead": "SubCenterArcFaceLoss",
}


def _pml_factory(name: str, d: int, c: int) -> torch.nn.Module:
    from pytorch_metric_learning import losses

    if name == "ArcFaceLoss":
        return losses.ArcFaceLoss(c, d, margin=math.degrees(0.5), scale=64)
    if name == "CosFaceLoss":
        return losses.CosFaceLoss(c, d, margin=0.35, scale=64)
    if name == "SphereFaceLoss":
        return losses.SphereFaceLoss(c, d, margin=4, scale=1)
    if name == "SubCenterArcFaceLoss":
        return losses.SubCenterArcFaceLoss(
            num_classes=c, embedding_size=d, margin=math.degrees(0.5), scale=64, sub_centers=3
        )
    raise ValueError(name)


class PeakTensorMemory(TorchDispatchMode):
    """Peak total bytes of tensor storages created under this mode and alive at the same time."""

    def __init__(self, ignore: list[torch.Tensor]) -> None:
        super().__init__()
        self.ignore = {t.untyped_storage()._cdata for t in ignore}
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def _sweep(self) -> None:
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.current -= self.live.pop(key)[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        self._sweep()
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = storage._cdata
                if key not in self.live and key not in self.ignore:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Case:
    """One benchmarked module: its step, its gradient reset and the tensors that pre-exist."""

    def __init__(
        self, label: str, step: Callable[[], None], reset: Callable[[], None], state: list
    ) -> None:
        self.label, self.step, self.reset, self.state = label, step, reset, state
        self.times: list[float] = []

    def timed_step(self, device: torch.device) -> None:
        self.reset()
        gc.collect()
        _sync(device)
        start = time.perf_counter()
        self.step()
        _sync(device)
        self.times.append(time.perf_counter() - start)
        self.reset()

    def peak_bytes(self, device: torch.device) -> float:
        """Bytes allocated at the peak of one step, beyond what existed before it."""
        self.reset()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            self.step()
            _sync(device)
            peak = torch.cuda.max_memory_allocated(device) - base
        else:
            mode = PeakTensorMemory(self.state)
            with mode:
                self.step()
            peak = mode.peak
        self.reset()
        return float(peak)


def measure(cases: list[Case], device: torch.device, warmup: int, repeats: int) -> None:
    """Time the cases in interleaved rounds (A B A B ...), so that a load change on a shared
    machine hits all of them alike; each case keeps the minimum over its rounds."""
    for _ in range(warmup):
        for case in cases:
            case.timed_step(device)
    for case in cases:
        case.times.clear()
    for _ in range(repeats):
        for case in cases:
            case.timed_step(device)


def mm_case(b: int, d: int, rows: int, device: torch.device) -> Case:
    """Plain torch.mm on the step's three product shapes: (B, D)·(D, rows), (B, rows)·(rows, D)
    and (rows, B)·(B, D); the machine's matmul rate for this step."""
    a = torch.randn(b, d, device=device)
    w = torch.randn(rows, d, device=device)
    g = torch.randn(b, rows, device=device)

    def three() -> None:
        torch.mm(a, w.t())
        torch.mm(g, w)
        torch.mm(g.t(), a)

    return Case("torch.mm x3", three, lambda: None, [a, w, g])


def batch_for(args: argparse.Namespace, c: int) -> int:
    """B for C classes: ``--batch``, or ``--large-batch`` from ``--large-classes`` classes on."""
    return args.large_batch if c >= args.large_classes else args.batch


def available_bytes(device: torch.device) -> float:
    """Free memory for new tensors: CUDA free memory, or Linux MemAvailable (inf if unknown)."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return math.inf


def emit(
    case: Case,
    mm: Case,
    pair: str,
    k: int,
    b: int,
    d: int,
    c: int,
    rows: list[dict[str, Any]],
    device: torch.device,
) -> None:
    """Append ``case``'s result row (with the plain-mm floor ``mm``) to ``rows`` and print it."""
    seconds, mm_seconds = min(case.times), min(mm.times)
    flops = 3 * 2 * b * d * c * k
    row = {
        "name": case.label,
        "ms": seconds * 1e3,
        "mm_ms": mm_seconds * 1e3,
        "peak_mib": case.peak_bytes(device) / 2**20,
        "gflops": flops / seconds / 1e9,
        "mm_gflops": flops / mm_seconds / 1e9,
        "k": k,
    }
    if case.label != pair:
        row["pair"] = pair
    print(f"  {row['name']:<26} {row['ms']:9.1f} ms  {row['peak_mib']:9.1f} MiB", flush=True)
    rows.append(row)


#: Lines printed under the tables (modules skipped for lack of memory).
notes: list[str] = []


def bench_classes(args: argparse.Namespace, c: int, device: torch.device) -> list[dict[str, Any]]:
    b, d = batch_for(args, c), args.dim
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, d, generator=g).to(device).requires_grad_()
    y = torch.randint(0, c, (b,), generator=g).to(device)
    rows: list[dict[str, Any]] = []
    pml_needed = set()
    for name in args.heads:
        if not args.no_pml and name in PML_PAIRS:
            pml_needed.add(PML_PAIRS[name])

    def make_case(label: str, module: torch.nn.Module, ours: bool) -> Case:
        module = module.to(device).train()
        params = list(module.parameters())

        def reset() -> None:
            x.grad = None
            for p in params:
                p.grad = None

        def step() -> None:
            if ours:
                loss = F.cross_entropy(module(x, y), y)
                reg = module.regularizer(x)
                if reg is not None:
                    loss = loss + reg
            else:
                loss = module(x, y)
            loss.backward()

        return Case(label, step, reset, [x, y, *params, *module.buffers()])

    for name in args.heads:
        k = CENTRES_PER_CLASS.get(name, 1)
        n = c * k  # rows of the weight
        pml_name = PML_PAIRS.get(name) if PML_PAIRS.get(name) in pml_needed else None
        # (label, factory, ours?, estimated bytes of the module and one step)
        specs: list[tuple[str, Callable[[], torch.nn.Module], bool, float]] = [
            (name, lambda name=name: OURS[name](d, c), True, 4.0 * (2 * n * d + 4 * b * n))
        ]
        if pml_name is not None:
            specs.append(
                (
                    f"PML {pml_name}",
                    lambda pml_name=pml_name: _pml_factory(pml_name, d, c),
                    False,
                    4.0 * (4 * n * d + 8 * b * n),
                )
            )
        mm_need = 4.0 * (2 * n * d + 2 * b * n)
        avail = available_bytes(device)
        measured: list[tuple[Case, Case]] = []  # (case, the mm case timed with it)
        if mm_need + sum(sp[3] for sp in specs) < 0.7 * avail:
            # everything fits at once: the plain-mm floor, the head and PML in interleaved rounds
            mm = mm_case(b, d, n, device)
            cases = [make_case(lbl, f(), ours) for lbl, f, ours, _ in specs]
            measure([mm, *cases], device, args.warmup, args.repeats)
            measured = [(case, mm) for case in cases]
        else:
            # too large to hold together (e.g. 1M classes on a small machine): one at a time
            print(f"  (C·K = {n:,}: measuring one module at a time to fit in memory)", flush=True)
            mm = mm_case(b, d, n, device)
            measure([mm], device, args.warmup, args.repeats)
            mm_times = mm.times
            del mm
            gc.collect()
            for lbl, f, ours, need in specs:
                if need > 0.85 * available_bytes(device):
                    msg = f"{lbl}: skipped, needs about {need / 2**30:.1f} GiB"
                    print(f"  {msg}", flush=True)
                    notes.append(f"C = {c:,}: {msg}")
                    continue
                case = make_case(lbl, f(), ours)
                measure([case], device, args.warmup, args.repeats)
                mm_state = Case("torch.mm x3", lambda: None, lambda: None, [])
                mm_state.times = mm_times
                emit(case, mm_state, name, k, b, d, c, rows, device)
                del case
                gc.collect()
        for case, mm in measured:
            emit(case, mm, name, k, b, d, c, rows, device)
        del measured
        gc.collect()
    return rows


def render(rows: list[dict[str, Any]], c: int, b: int, d: int) -> str:
    pml = {r["pair"]: r for r in rows if "pair" in r}
    ours = [r for r in rows if "pair" not in r]
    rates = sorted(r["mm_gflops"] for r in ours) or [float("nan")]
    lines = [
        f"### C = {c:,}, B = {b}, D = {d}",
        "",
        f"machine matmul rate (plain torch.mm, the step's 3 shapes): median "
        f"{rates[len(rates) // 2]:.1f} GFLOP/s over the rows below",
        "",
        "| head | fwd+bwd ms | torch.mm x3 ms | GFLOP/s (mm FLOPs / step) | % of mm rate "
        "| peak MiB | PML ms | speed-up vs PML | PML peak MiB | memory PML/ours |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ours:
        cells = [
            r["name"] + (f" (K={r['k']})" if r["k"] > 1 else ""),
            f"{r['ms']:.1f}",
            f"{r['mm_ms']:.1f}",
            f"{r['gflops']:.1f}",
            f"{100.0 * r['gflops'] / r['mm_gflops']:.0f}%",
            f"{r['peak_mib']:.0f}",
        ]
        p = pml.get(r["name"])
        if p is None:
            cells += ["—"] * 4
        else:
            cells += [
                f"{p['ms']:.1f}",
                f"{p['ms'] / r['ms']:.2f}×",
                f"{p['peak_mib']:.0f}",
                f"{p['peak_mib'] / r['peak_mib']:.2f}×",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument(
        "--large-batch", type=int, default=64, help="B from --large-classes on (default 64)"
    )
    parser.add_argument("--large-classes", type=int, default=1_000_000)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: C = 1k and 5k, 1 warm-up, 2 repeats"
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--heads", nargs="+", default=list(OURS), choices=list(OURS))
    parser.add_argument("--no-pml", action="store_true", help="skip pytorch-metric-learning")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.quick:
        args.classes, args.repeats, args.warmup = [1_000, 5_000], 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"torch {torch.__version__}, device {device} ({where or platform.machine()}), "
        f"{torch.get_num_threads()} threads"
    )
    tables = []
    for c in args.classes:
        print(f"C = {c:,}", flush=True)
        rows = bench_classes(args, c, device)
        tables.append(render(rows, c, batch_for(args, c), args.dim))
    print()
    print("\n\n".join(tables))
    for note in notes:
        print(f"\n- {note}")


if __name__ == "__main__":
    main()
