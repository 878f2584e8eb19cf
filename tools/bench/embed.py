"""Embedding throughput on the CPU: onnxruntime against PyTorch eager and torch.compile.

For each IResNet depth (random weights: speed does not depend on the values) the embedding
network is exported with ``facerec.export.onnx.export_onnx`` (the ``facerec export`` path) and
timed at each batch size on the same float32 (N, 3, H, W) input; images per second count the
network only (decoding and normalisation excluded). Prints a markdown table.

    python tools/bench/embed.py                       # IResNet-18/50, batch 1 and 64, 112x112
    python tools/bench/embed.py --depths 18 --batch-sizes 1 8 --no-compile --seconds 1
    python tools/bench/embed.py --quick               # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (else platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def time_it(fn: Callable[[], object], batch: int, seconds: float, min_iters: int) -> float:
    """Images per second of ``fn`` (one batch per call) after two warm-up calls."""
    for _ in range(2):
        fn()
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def bench_depth(depth: int, args: argparse.Namespace) -> list[dict]:
    """Rows of the table for IResNet-``depth``."""
    from facerec.export.onnx import export_onnx
    from facerec.inference import Preprocess
    from facerec.inference.onnx import make_session
    from facerec.models import IResNet

    torch.manual_seed(0)
    size = (args.input_size, args.input_size)
    net = IResNet(depth, embedding_dim=512, input_size=size).eval()
    t = time.perf_counter()
    data = export_onnx(net, Preprocess.for_backbone(net))
    export_s = time.perf_counter() - t
    sess = make_session(data, "cpu", threads=args.threads)
    compiled = None
    compile_error = ""
    if not args.no_compile:
        compiled = torch.compile(net, dynamic=False)
    rows = []
    rng = np.random.default_rng(0)
    for b in args.batch_sizes:
        x = rng.uniform(-1, 1, (b, 3, *size)).astype(np.float32)
        xt = torch.from_numpy(x)
        row: dict = {"model": f"IResNet-{depth}", "batch": b, "export_s": export_s}
        row["ort"] = time_it(lambda x=x: sess.run(None, {"input": x}), b, args.seconds, 3)
        with torch.inference_mode():
            row["eager"] = time_it(lambda xt=xt: net(xt), b, args.seconds, 3)
            row["compile"] = None
            if compiled is not None and not compile_error:
                try:
                    t = time.perf_counter()
                    compiled(xt)
                    row["compile_s"] = time.perf_counter() - t
                    row["compile"] = time_it(lambda xt=xt: compiled(xt), b, args.seconds, 3)
                except Exception as e:  # report, do not stop the other measurements
                    compile_error = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        row["compile_error"] = compile_error
        rows.append(row)
        print(f"  {row['model']} batch {b}: done", file=sys.stderr, flush=True)
    return rows


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    """The results as a markdown table with the setup above it."""
    import onnxruntime

    lines = [
        f"CPU: {cpu_name()}, {args.threads} threads (os.cpu_count() = {os.cpu_count()}); "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; "
        f"IResNet (width 1, D=512) with random weights, input {args.input_size}x"
        f"{args.input_size} float32; network only (no decoding); images/s, higher is better.",
        "",
        "| model | batch | onnxruntime img/s | torch eager img/s | torch.compile img/s "
        "| onnxruntime / eager |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["compile"] is not None:
            comp = f"{r['compile']:.1f}"
        else:
            comp = "failed" if r["compile_error"] else "not run"
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['ort']:.1f} | {r['eager']:.1f} | {comp} "
            f"| {r['ort'] / r['eager']:.2f}x |"
        )
    errors = {r["compile_error"] for r in rows if r["compile_error"]}
    for e in sorted(errors):
        lines.append(f"\ntorch.compile failed: {e}")
    comp_s = [
        f"{r['model']} b{r['batch']} {r['compile_s']:.0f} s" for r in rows if "compile_s" in r
    ]
    if comp_s:
        lines.append(f"\ntorch.compile first-call (compile) time: {', '.join(comp_s)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", type=int, nargs="+", default=[18, 50])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    p.add_argument("--input-size", type=int, default=112)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="for both runtimes")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per cell")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: IResNet-18 only, batch 1 and 8, 0.3 s per cell (not the benchmark)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.depths, args.batch_sizes, args.seconds = [18], [1, 8], 0.3
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    rows = []
    for d in args.depths:
        print(f"IResNet-{d}: exporting and timing", file=sys.stderr, flush=True)
        rows += bench_depth(d, args)
    print(markdown(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
