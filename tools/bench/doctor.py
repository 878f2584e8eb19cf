"""Benchmark: the searches of ``facerec doctor`` on 100k (flat) and 1M (IVF) embeddings.

``facerec doctor`` embeds every image once (timed by tools/bench/embed.py), then searches:
each image's nearest images (near duplicates), each image against the identity centres
(likely mislabelled) and the centres against each other (split identities). This times those
searches (:func:`facerec.eval.doctor.diagnose`, file hashes given) on synthetic L2-normalised
embeddings: ``ids`` identities of ``per_id`` images, each image its identity's random centre
plus noise (cosine to the centre ~0.7), with 1 % planted near duplicates and 0.5 % label swaps
(a near copy of another identity's image is a label error too). It reports the wall and CPU
(process, all threads) time, the peak resident memory of the process, and how many planted
problems were found (the IVF search is approximate). Each size runs in its own process, so the
peak memory is that size's.

    python tools/bench/doctor.py                                 # 100k flat, 1M ivf (nprobe 16)
    python tools/bench/doctor.py --runs 20000:flat               # seconds
    OMP_NUM_THREADS=2 python tools/bench/doctor.py --runs 1000000:ivf --nprobe 2

Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from _common import peak_rss_mb


def make_embeddings(n: int, per_id: int, dim: int, seed: int = 0) -> dict:
    """(n, dim) unit embeddings, labels, hashes, and the planted problems."""
    rng = np.random.default_rng(seed)
    ids = n // per_id
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(ids), per_id)
    x = np.empty((n, dim), np.float32)
    step = 1 << 16
    for s in range(0, n, step):  # in chunks, so the noise never needs a second (n, dim) array
        e = rng.standard_normal((min(step, n - s), dim), dtype=np.float32) / np.sqrt(dim)
        x[s : s + step] = centres[labels[s : s + step]] + e
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    near = rng.choice(n, size=(n // 100, 2), replace=False)  # near[:, 1] := near copy of [:, 0]
    x[near[:, 1]] = x[near[:, 0]] + 0.01 * rng.standard_normal((near.shape[0], dim)).astype(
        np.float32
    ) / np.sqrt(dim)
    x[near[:, 1]] /= np.linalg.norm(x[near[:, 1]], axis=1, keepdims=True)
    swaps = rng.choice(np.setdiff1d(np.arange(n), near.reshape(-1)), n // 200, replace=False)
    labels = labels.copy()
    labels[swaps] = (labels[swaps] + 1 + rng.integers(0, ids - 1, swaps.size)) % ids
    return {"x": x, "labels": labels, "ids": ids, "near": near, "swaps": swaps}


def run_one(n: int, index: str, per_id: int, dim: int, nprobe: int) -> dict:
    """Time :func:`diagnose` on ``n`` embeddings (this process); returns the row as a dict."""
    import faiss

    from facerec.eval.doctor import DoctorOptions, diagnose

    t0 = time.perf_counter()
    d = make_embeddings(n, per_id, dim)
    t_make = time.perf_counter() - t0
    hashes = [str(i) for i in range(n)]
    opt = DoctorOptions(near_duplicate=0.95, split=0.8, index=index, nprobe=nprobe)
    t0, c0 = time.perf_counter(), time.process_time()
    res = diagnose(d["x"], d["labels"], d["ids"], hashes, opt)
    t, cpu = time.perf_counter() - t0, time.process_time() - c0
    found_near = {(int(a), int(b)) for a, b in zip(res.near.i, res.near.j, strict=True)}
    want_near = {(int(min(a, b)), int(max(a, b))) for a, b in d["near"]}
    flagged = set(res.mislabelled.image.tolist())
    # planted label errors: the swaps, and near copies of another identity's image
    lab = d["labels"]
    cross = d["near"][lab[d["near"][:, 0]] != lab[d["near"][:, 1]], 1]
    planted = set(d["swaps"].tolist()) | set(cross.tolist())
    return {
        "images": n,
        "identities": d["ids"],
        "dim": dim,
        "index": index,
        "nprobe": nprobe if index == "ivf" else None,
        "seconds": t,
        "cpu_seconds": cpu,
        "threads": faiss.omp_get_max_threads(),
        "make_seconds": t_make,
        "peak_rss_gib": peak_rss_mb() / 1024,
        "near_found": len(found_near & want_near),
        "near_planted": len(want_near),
        "near_other": len(found_near - want_near),
        "mislabel_found": len(flagged & planted),
        "mislabel_planted": len(planted),
        "mislabel_other": len(flagged - planted),
        "split_pairs": int(res.split.i.size),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--runs",
        nargs="+",
        default=["100000:flat", "1000000:ivf"],
        help="SIZE:INDEX runs (default 100000:flat 1000000:ivf)",
    )
    p.add_argument("--per-id", type=int, default=10, help="images per identity (default 10)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--one", help=argparse.SUPPRESS)  # SIZE:INDEX, run here, print JSON
    args = p.parse_args(argv)
    if args.one:
        n, index = args.one.split(":")
        print(json.dumps(run_one(int(n), index, args.per_id, args.dim, args.nprobe)))
        return 0
    rows = []
    for run in args.runs:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            run,
            "--per-id",
            str(args.per_id),
            "--dim",
            str(args.dim),
            "--nprobe",
            str(args.nprobe),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}\n")
    print(
        "| images | identities | D | index | FAISS threads | search s (CPU s) | peak RSS GiB | "
        "near dups found | other near pairs | label errors found | other flagged | split pairs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        idx = r["index"] + (f" (nprobe {r['nprobe']})" if r["nprobe"] else "")
        print(
            f"| {r['images']:,} | {r['identities']:,} | {r['dim']} | {idx} | {r['threads']} | "
            f"{r['seconds']:.1f} ({r['cpu_seconds']:.1f}) | {r['peak_rss_gib']:.2f} | "
            f"{r['near_found']}/{r['near_planted']} | {r['near_other']} | {r['mislabel_found']}/"
            f"{r['mislabel_planted']} | {r['mislabel_other']} | {r['split_pairs']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
