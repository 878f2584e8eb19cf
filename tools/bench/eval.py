"""Benchmark: the evaluation path of facerec (verification protocol, 1:N search, eval loader).

Three parts, each optional (``--parts``):

``protocol``  time of the full verification protocol on ``--pairs`` pairs (default 6,000, LFW's
              size) from given scores: 10-fold accuracy on insightface's 400-threshold grid, the
              ROC, AUC, EER and TAR + calibrated threshold at six FARs
              (:func:`facerec.metrics.verification.verification_report`), and the 10-fold accuracy
              alone.
``search``    1:N search of ``--probes`` probes (default 10,000) in galleries of
              ``--gallery-sizes`` (default 100,000 and 1,000,000) random unit vectors of
              ``--dim`` (512), top-``--k`` (10): FAISS (``--index``; GPU FAISS when the installed
              faiss has GPUs) next to an exact chunked torch matrix product on ``--device``, in the
              same run, with the agreement of their top-1 results.
``embed``     throughput of the eval loader: ``--images`` JPEG faces decoded, resized and
              embedded by ``--model`` (an untrained IResNet) with the flip test, in batches of
              ``--batch-size`` with ``--workers`` decoding threads; also the loader alone.

Times are the best (minimum) of ``--repeats`` runs (default 1; the protocol always 5) after
one warm-up (for search, on 256 probes), the least disturbed by other processes on a shared
machine. Prints markdown tables; ``--json FILE`` writes every number.

Example::

    python tools/bench/eval.py                                   # everything, defaults
    python tools/bench/eval.py --parts search --gallery-sizes 100000 --device cpu
    python tools/bench/eval.py --quick                           # smoke run, small sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import best_time

from facerec.eval import identification as ident
from facerec.metrics import verification as ver
from facerec.mining import faiss_index


def bench_protocol(args) -> dict:
    rng = np.random.default_rng(0)
    issame = np.zeros(args.pairs, bool)
    issame[::2] = True
    scores = np.where(
        issame, rng.normal(0.55, 0.15, args.pairs), rng.normal(0.05, 0.12, args.pairs)
    )
    reps = max(args.repeats, 5)  # milliseconds each: always a few
    full, _ = best_time(lambda: ver.verification_report(scores, issame), reps)
    kfold, _ = best_time(lambda: ver.kfold_accuracy(scores, issame), reps)
    best, _ = best_time(lambda: ver.best_threshold_accuracy(scores, issame), reps)
    out = {
        "pairs": args.pairs,
        "full_protocol_ms": 1e3 * full,
        "kfold_only_ms": 1e3 * kfold,
        "best_threshold_accuracy_ms": 1e3 * best,
    }
    print(f"\n### Verification protocol, {args.pairs} pairs (from scores)\n")
    print("| step | time (ms) |\n| --- | ---: |")
    print(f"| full protocol (10-fold acc, ROC, AUC, EER, TAR@6 FARs) | {1e3 * full:.2f} |")
    print(f"| 10-fold accuracy alone (400 thresholds) | {1e3 * kfold:.2f} |")
    print(f"| best_threshold_accuracy (exact, all cuts) | {1e3 * best:.2f} |")
    return out


def random_unit(n: int, d: int, seed: int, device: str) -> torch.Tensor:
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, d, generator=g, device=device)
    return torch.nn.functional.normalize(x, dim=1)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_search(args) -> list[dict]:
    device = args.device
    rows = []
    gpus = faiss_index.faiss_gpu_count()
    faiss_where = f"GPU x{gpus}" if gpus and args.index != "hnsw" else "CPU"
    print(
        f"\n### 1:N search, {args.probes} probes, top-{args.k}, d={args.dim} "
        f"(FAISS {args.index} on {faiss_where}; torch on {device})\n"
    )
    print(
        "| gallery | FAISS build (s) | FAISS search (s) | FAISS probes/s | torch upload (s) "
        "| torch search (s) | torch probes/s | top-1 agree |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    probes_t = random_unit(args.probes, args.dim, 1, "cpu")
    probes = probes_t.numpy()
    for g in args.gallery_sizes:
        gallery_t = random_unit(g, args.dim, 2, "cpu")
        gallery = gallery_t.numpy()
        t = time.perf_counter()
        index = faiss_index.build_index(gallery, args.index)
        build = time.perf_counter() - t
        f_time, (_, f_ids) = best_time(
            lambda index=index: faiss_index.faiss_search(index, probes, args.k, args.faiss_chunk),
            args.repeats,
            warmup=lambda index=index: faiss_index.faiss_search(index, probes[:256], args.k),
        )
        del index
        t = time.perf_counter()
        g_dev = gallery_t.to(device)
        sync(device)
        upload = time.perf_counter() - t

        def torch_run(g_dev=g_dev, q=probes_t):
            out = ident.torch_search(g_dev, q, args.k, args.torch_chunk, device)
            sync(device)
            return out

        t_time, (_, t_ids) = best_time(
            torch_run, args.repeats, warmup=lambda: torch_run(q=probes_t[:256])
        )
        agree = float(np.mean(f_ids[:, 0] == t_ids[:, 0]))
        del g_dev
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        row = {
            "gallery": g,
            "probes": args.probes,
            "faiss_index": args.index,
            "faiss_on": faiss_where,
            "faiss_build_s": build,
            "faiss_search_s": f_time,
            "torch_device": device,
            "torch_upload_s": upload,
            "torch_search_s": t_time,
            "top1_agreement": agree,
        }
        rows.append(row)
        print(
            f"| {g:,} | {build:.3f} | {f_time:.3f} | {args.probes / f_time:,.0f} | {upload:.3f} "
            f"| {t_time:.3f} | {args.probes / t_time:,.0f} | {agree:.4f} |"
        )
        del gallery, gallery_t
    return rows


def bench_embed(args) -> dict:
    import cv2

    from facerec.data.synthetic import SyntheticFaces
    from facerec.inference import EncodedImages, TorchEmbedder, embed_images, load_batch
    from facerec.models import IResNet

    faces = SyntheticFaces(64, 1, size=112, seed=0)
    blobs = []
    for i in range(64):
        bgr = cv2.cvtColor(faces.render(i, 0), cv2.COLOR_RGB2BGR)
        blobs.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    images = EncodedImages([blobs[i % 64] for i in range(args.images)], "bench")
    depth = int(args.model.removeprefix("iresnet"))
    net = IResNet(depth=depth, embedding_dim=512).to(args.device).eval()
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    emb = TorchEmbedder(net, (112, 112), args.device, args.batch_size)

    from concurrent.futures import ThreadPoolExecutor

    def loader_only():
        with ThreadPoolExecutor(args.workers) as pool:
            for s in range(0, args.images, args.batch_size):
                load_batch(images, range(s, min(s + args.batch_size, args.images)), (112, 112),
                           "resize", pool)  # fmt: skip

    def full():
        embed_images(emb, images, args.batch_size, True, args.workers)
        sync(args.device)

    reps = max(1, min(args.repeats, 3))
    t_load, _ = best_time(loader_only, reps)
    t_full, _ = best_time(full, reps)
    out = {
        "images": args.images,
        "model": args.model,
        "device": args.device,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "loader_images_per_s": args.images / t_load,
        "embed_images_per_s": args.images / t_full,
    }
    print(
        f"\n### Eval loader, {args.images} JPEG 112x112 faces, {args.model} on {args.device}, "
        f"batch {args.batch_size}, {args.workers} decode threads\n"
    )
    print("| stage | images/s |\n| --- | ---: |")
    print(f"| decode + resize only | {args.images / t_load:,.0f} |")
    print(f"| decode + resize + embed with flip test (2 forwards) | {args.images / t_full:,.1f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--parts",
        nargs="+",
        default=["protocol", "search", "embed"],
        choices=["protocol", "search", "embed"],
    )
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--pairs", type=int, default=6000)
    p.add_argument("--probes", type=int, default=10_000)
    p.add_argument("--gallery-sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--index", choices=faiss_index.INDEX_KINDS, default="flat")
    p.add_argument("--faiss-chunk", type=int, default=4096)
    p.add_argument("--torch-chunk", type=int, default=1024)
    p.add_argument("--images", type=int, default=1024)
    p.add_argument(
        "--model",
        default="iresnet50",
        choices=["iresnet18", "iresnet34", "iresnet50", "iresnet100"],
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch and FAISS CPU threads (default: theirs)")
    p.add_argument("--json", metavar="FILE")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run at small sizes (1,000 probes, galleries of 10,000 and 50,000, "
        "128 images through IResNet-18); the numbers are not the benchmark's",
    )
    args = p.parse_args(argv)  # fmt: skip
    if args.quick:
        args.probes, args.gallery_sizes = 1000, [10_000, 50_000]
        args.images, args.model, args.batch_size = 128, "iresnet18", 32
    import faiss

    if args.threads:
        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "faiss": getattr(faiss, "__version__", "?"),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "load_average": os.getloadavg()[0],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    print(f"environment: {json.dumps(env)}")
    results: dict = {"environment": env, "argv": sys.argv}
    if "protocol" in args.parts:
        results["protocol"] = bench_protocol(args)
    if "search" in args.parts:
        results["search"] = bench_search(args)
    if "embed" in args.parts:
        results["embed"] = bench_embed(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
