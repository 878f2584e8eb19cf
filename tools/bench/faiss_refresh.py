"""Benchmark: what one hard-identity refresh costs in FAISS, for 10k to 1M identities.

A refresh (``HardIdentityBatches``) searches each identity's nearest identities among the
class centres. This times :func:`facerec.mining.neighbours.nearest_identities` on random
L2-normalised centres (C × D, float32) for each index type, so a user can pick
``data.sampler.init_args.mining.every_n_steps`` (the time is added once per refresh; the centres
of a margin head are already in memory, ``centres: embeddings`` adds an embedding pass on top).

Exact search (``flat``) is O(C²·D): it is skipped above ``--flat-max`` identities (default 200k;
1M × 1M × 512 is ~5·10¹⁴ multiply-adds). ``ivf`` (nprobe 16) and ``hnsw`` are approximate;
their recall@k against the exact answer is measured on 2,000 query identities.

    python tools/bench/faiss_refresh.py                      # 10k, 100k, 1M; minutes to an hour
    python tools/bench/faiss_refresh.py --quick              # 2k and 10k, seconds

Prints one markdown table (seconds per refresh, recall).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=16, help="neighbours per identity")
    parser.add_argument("--indexes", nargs="+", default=["flat", "ivf", "hnsw"])
    parser.add_argument("--flat-max", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=None, help="FAISS threads (default: all)")
    parser.add_argument("--quick", action="store_true", help="2k and 10k identities, D = 128")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.dim = [2_000, 10_000], 128

    from facerec.mining.neighbours import nearest_identities

    print(f"FAISS refresh: random centres, D = {args.dim}, k = {args.k}, cpus = {os.cpu_count()}")
    print()
    print("| identities | index | seconds per refresh | recall@k (2k queries) |")
    print("|---:|---|---:|---:|")
    for c in args.sizes:
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((c, args.dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        queries = rng.choice(c, min(2000, c), replace=False)
        truth = np.empty((len(queries), args.k), dtype=np.int64)
        for s in range(0, len(queries), 100):  # exact answer, 100 queries at a time
            q = queries[s : s + 100]
            sim = centres[q] @ centres.T  # (100, C)
            sim[np.arange(len(q)), q] = -np.inf
            top = np.argpartition(-sim, args.k, axis=1)[:, : args.k]
            order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1)
            truth[s : s + 100] = np.take_along_axis(top, order, axis=1)
        for index in args.indexes:
            if index == "flat" and c > args.flat_max:
                print(f"| {c:,} | flat | skipped (> --flat-max) | 1 |")
                continue
            start = time.perf_counter()
            table = nearest_identities(centres, args.k, index=index, threads=args.threads)
            seconds = time.perf_counter() - start
            got = table[queries]
            recall = np.mean(
                [len(set(g) & set(t)) / args.k for g, t in zip(got, truth, strict=True)]
            )
            print(f"| {c:,} | {index} | {seconds:.2f} | {recall:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
