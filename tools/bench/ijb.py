"""Benchmark: IJB template pooling and pair scoring at full size, against insightface's loops.

Random features stand in for the network's (the protocol's cost does not depend on their
values). Two workloads:

``ijbc``  IJB-C 1:1: 227,630 images x 512 pooled into 23,124 templates (image counts per template
          and media per template drawn at random, about a third of the media videos with several
          frames, media ids shared between templates as in IJB), 469,375 pairs (19,557 mated)
          scored, then the ROC / TAR@FAR table.
``ijbb``  IJB-B 1:1: 12,115 templates, 8,010,270 pairs (10,270 mated) scored, then the table.
``ijbc1n`` IJB-C 1:N: 19,593 probe templates searched in the 3,531 of G1 ∪ G2 (rank-1/5/10,
          TPIR at FPIR 1e-2 / 1e-1), against ``ijb_1n.py``'s ``evaluation`` (argsort of every
          similarity row, loops over probes, ``heapq.nlargest`` over the non-mate scores).

facerec (:mod:`facerec.eval.ijb_protocol`: one sparse product for media + template pooling; pair
scores by blocked matrix products or chunked gathers) is timed against insightface's
``eval_ijbc.py`` re-created here from its description: ``image2template_feature`` (a Python loop
over templates, ``np.where`` over all images for each, a loop over its media) and
``verification`` (pairs in batches of 100,000, float64 gathers). Both results are compared.

Peak memory is the growth of the process's resident-set high-water mark (``VmHWM`` after
resetting it through ``/proc/self/clear_refs``) over the resident size before the step.

Example::

    python tools/bench/ijb.py                  # both workloads, insightface's loops included
    python tools/bench/ijb.py --skip-reference # facerec only
    python tools/bench/ijb.py --quick          # smoke run at 1/20 size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from _common import measured

from facerec.eval.ijb_protocol import (
    identification_1n,
    pair_scores,
    pool_templates,
    verification_1to1,
)

# ----------------------------------------------------------------------------- workloads


def ijbc_images(n_images: int, n_templates: int, dim: int, seed: int = 0):
    """Features (N, D) float32, template ids (N,), media ids (N,), faceness (N,) like IJB-C."""
    rng = np.random.default_rng(seed)
    # images per template: at least 1, long-tailed, summing to n_images
    w = rng.gamma(0.6, 1.0, n_templates) + 1e-3
    counts = 1 + np.floor(w / w.sum() * (n_images - n_templates)).astype(np.int64)
    counts[: n_images - counts.sum()] += 1
    tids = np.repeat(rng.permutation(np.arange(1, 3 * n_templates, 3))[:n_templates], counts)
    # media: runs of frames (videos) or single stills; ids recur across templates
    run = np.where(rng.random(n_images) < 0.35, rng.integers(2, 12, n_images), 1)
    starts = np.cumsum(run)
    media_of_run = rng.integers(0, n_images // 3, starts.size)
    mids = media_of_run[np.searchsorted(starts, np.arange(n_images), side="right")]
    feats = rng.standard_normal((n_images, dim), dtype=np.float32)
    return feats, tids, mids, rng.uniform(0.5, 1.0, n_images).astype(np.float32)


def random_pairs(ids: np.ndarray, n_pairs: int, n_mated: int, seed: int):
    """(P, 2) template-id pairs (no self pairs) and (P,) labels with ``n_mated`` ones."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, ids.size, n_pairs)
    b = (a + rng.integers(1, ids.size, n_pairs)) % ids.size
    labels = np.zeros(n_pairs, np.int8)
    labels[rng.choice(n_pairs, n_mated, replace=False)] = 1
    return np.stack([ids[a], ids[b]], 1), labels


# ------------------------------------------------------------------ insightface's loops


def insightface_pooling(img_feats, templates, medias):
    """eval_ijbc.py's image2template_feature (features already flip-summed and weighted)."""
    unique_templates = np.unique(templates)
    template_feats = np.zeros((len(unique_templates), img_feats.shape[1]))
    for count_template, uqt in enumerate(unique_templates):
        (ind_t,) = np.where(templates == uqt)
        face_norm_feats = img_feats[ind_t]
        face_medias = medias[ind_t]
        unique_medias, unique_media_counts = np.unique(face_medias, return_counts=True)
        media_norm_feats = []
        for u, ct in zip(unique_medias, unique_media_counts, strict=True):
            (ind_m,) = np.where(face_medias == u)
            if ct == 1:
                media_norm_feats += [face_norm_feats[ind_m]]
            else:
                media_norm_feats += [np.mean(face_norm_feats[ind_m], axis=0, keepdims=True)]
        media_norm_feats = np.array(media_norm_feats)
        template_feats[count_template] = np.sum(media_norm_feats, axis=0)
    norms = np.sqrt(np.sum(template_feats**2, -1, keepdims=True))
    return template_feats / norms, unique_templates


def insightface_scoring(template_norm_feats, unique_templates, p1, p2):
    """eval_ijbc.py's verification: batches of 100,000 pairs, float64 gathers."""
    template2id = np.zeros((max(unique_templates) + 1, 1), dtype=int)
    for count_template, uqt in enumerate(unique_templates):
        template2id[uqt] = count_template
    score = np.zeros((len(p1),))
    total_pairs = np.array(range(len(p1)))
    batchsize = 100000
    sublists = [total_pairs[i : i + batchsize] for i in range(0, len(p1), batchsize)]
    for s in sublists:
        feat1 = template_norm_feats[template2id[p1[s]]]
        feat2 = template_norm_feats[template2id[p2[s]]]
        score[s] = np.sum(feat1 * feat2, -1).flatten()
    return score


def insightface_1n(query_feats, gallery_feats, mask, fars=(0.01, 0.1)):
    """ijb_1n.py's evaluation: top-1/5/10 and TPIR at each FPIR (all probes mated)."""
    import heapq
    import math

    query_num = query_feats.shape[0]
    similarity = np.dot(query_feats, gallery_feats.T)
    top_inds = np.argsort(-similarity)
    out = {}
    for k in (1, 5, 10):
        correct_num = 0
        for i in range(query_num):
            if mask[i] in top_inds[i, 0:k]:
                correct_num += 1
        out[f"rank{k}"] = correct_num / query_num
    required_topk = [math.ceil(query_num * x) for x in fars]
    top_sims = similarity
    pos_sims = []
    for i in range(query_num):
        gt = mask[i]
        pos_sims.append(top_sims[i, gt])
        top_sims[i, gt] = -2.0
    pos_sims = np.array(pos_sims)
    neg_sims = top_sims[np.where(top_sims > -2.0)]
    neg_sims = heapq.nlargest(max(required_topk), neg_sims)
    for far, pos in zip(fars, required_topk, strict=True):
        th = neg_sims[pos - 1]
        out[f"tpir{far}"] = float(np.sum(pos_sims > th) / query_num)
    return out


# ------------------------------------------------------------------------------- runs


def fmt_mem(b: int) -> str:
    return f"{b / 2**20:,.0f} MiB"


def bench_ijbc(args) -> dict:
    n, t, p, m = (args.images, args.templates, args.pairs, args.mated)
    feats, tids, mids, score = ijbc_images(n, t, args.dim)
    print(
        f"\n### IJB-C 1:1: {n:,} images x {args.dim} -> {t:,} templates, {p:,} pairs\n",
        flush=True,
    )
    pool_s, pool_cpu, pool_mem, tpl = measured(
        lambda: pool_templates(feats, tids, mids, score), args.repeats
    )
    pairs, labels = random_pairs(tpl.ids, p, m, 1)

    def ours_scores():
        rows = tpl.index_of(pairs.reshape(-1)).reshape(-1, 2)
        return pair_scores(tpl.features, rows[:, 0], rows[:, 1])

    score_s, score_cpu, score_mem, scores = measured(ours_scores, args.repeats)
    table_s, table_cpu, table_mem, _ = measured(lambda: verification_1to1(scores, labels))
    out = {
        "images": n,
        "templates": t,
        "pairs": p,
        "dim": args.dim,
        "facerec_pool_s": pool_s,
        "facerec_pool_cpu_s": pool_cpu,
        "facerec_pool_peak_bytes": pool_mem,
        "facerec_score_s": score_s,
        "facerec_score_cpu_s": score_cpu,
        "facerec_score_peak_bytes": score_mem,
        "facerec_table_s": table_s,
        "facerec_table_cpu_s": table_cpu,
        "facerec_table_peak_bytes": table_mem,
    }
    if not args.skip_reference:
        weighted = feats * score[:, None]
        ref_pool_s, ref_pool_cpu, ref_pool_mem, (ref_tpl, ref_ids) = measured(
            lambda: insightface_pooling(weighted, tids, mids)
        )
        ref_score_s, ref_score_cpu, ref_score_mem, ref_scores = measured(
            lambda: insightface_scoring(ref_tpl, ref_ids, pairs[:, 0], pairs[:, 1])
        )
        out.update(
            insightface_pool_s=ref_pool_s,
            insightface_pool_cpu_s=ref_pool_cpu,
            insightface_pool_peak_bytes=ref_pool_mem,
            insightface_score_s=ref_score_s,
            insightface_score_cpu_s=ref_score_cpu,
            insightface_score_peak_bytes=ref_score_mem,
            max_abs_diff_templates=float(np.abs(ref_tpl - tpl.features).max()),
            max_abs_diff_scores=float(np.abs(ref_scores - scores).max()),
        )
    _print(out, "pool", "pooling (media + template)")
    _print(out, "score", "pair scores")
    print(
        f"| ROC + TAR@FAR table (facerec) | {out['facerec_table_s']:.2f} "
        f"({out['facerec_table_cpu_s']:.2f}) | {fmt_mem(out['facerec_table_peak_bytes'])} | | | |"
    )
    if "max_abs_diff_scores" in out:
        print(
            f"\nlargest difference to insightface: templates {out['max_abs_diff_templates']:.1e}, "
            f"scores {out['max_abs_diff_scores']:.1e}"
        )
    return out


def bench_ijbb(args) -> dict:
    t, p, m = args.ijbb_templates, args.ijbb_pairs, args.ijbb_mated
    rng = np.random.default_rng(2)
    x = rng.standard_normal((t, args.dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(1, 2 * t, 2)
    pairs, labels = random_pairs(ids, p, m, 3)
    print(f"\n### IJB-B 1:1: {t:,} templates x {args.dim}, {p:,} pairs\n", flush=True)

    def ours_scores():
        rows = (np.searchsorted(ids, pairs.reshape(-1))).reshape(-1, 2)
        return pair_scores(x, rows[:, 0], rows[:, 1])

    score_s, score_cpu, score_mem, scores = measured(ours_scores, args.repeats)
    table_s, table_cpu, table_mem, _ = measured(lambda: verification_1to1(scores, labels))
    out = {
        "templates": t,
        "pairs": p,
        "dim": args.dim,
        "facerec_score_s": score_s,
        "facerec_score_cpu_s": score_cpu,
        "facerec_score_peak_bytes": score_mem,
        "facerec_table_s": table_s,
        "facerec_table_cpu_s": table_cpu,
        "facerec_table_peak_bytes": table_mem,
    }
    if not args.skip_reference:
        ref_s, ref_cpu, ref_mem, ref = measured(
            lambda: insightface_scoring(x.astype(np.float64), ids, pairs[:, 0], pairs[:, 1])
        )
        out.update(
            insightface_score_s=ref_s,
            insightface_score_cpu_s=ref_cpu,
            insightface_score_peak_bytes=ref_mem,
            max_abs_diff_scores=float(np.abs(ref - scores).max()),
        )
    _print(out, "score", "pair scores")
    print(
        f"| ROC + TAR@FAR table (facerec) | {out['facerec_table_s']:.2f} "
        f"({out['facerec_table_cpu_s']:.2f}) | {fmt_mem(out['facerec_table_peak_bytes'])} | | | |"
    )
    if "max_abs_diff_scores" in out:
        print(f"\nlargest difference to insightface: scores {out['max_abs_diff_scores']:.1e}")
    return out


def bench_ijbc_1n(args) -> dict:
    q, g = args.probes_1n, args.gallery_1n
    rng = np.random.default_rng(4)
    gal = rng.standard_normal((g, args.dim), dtype=np.float32)
    gal /= np.linalg.norm(gal, axis=1, keepdims=True)
    subjects = rng.permutation(10 * g)[:g]
    mate = rng.integers(0, g, q)
    probe = gal[mate] + rng.standard_normal((q, args.dim), dtype=np.float32) * 0.2
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    print(f"\n### IJB-C 1:N: {q:,} probe templates, gallery of {g:,}, d={args.dim}\n", flush=True)
    s, cpu, mem, ours = measured(
        lambda: identification_1n(probe, subjects[mate], gal, subjects), args.repeats
    )
    out = {
        "probes": q,
        "gallery": g,
        "dim": args.dim,
        "facerec_search_s": s,
        "facerec_search_cpu_s": cpu,
        "facerec_search_peak_bytes": mem,
        "facerec_rank1": ours["rank1"],
        "facerec_tpir_1e-2": ours["tpir_at_fpir_insightface"]["1e-2"]["tpir"],
    }
    if not args.skip_reference:
        rs, rcpu, rmem, ref = measured(lambda: insightface_1n(probe, gal, mate))
        out.update(
            insightface_search_s=rs,
            insightface_search_cpu_s=rcpu,
            insightface_search_peak_bytes=rmem,
            same_numbers=all(abs(ours[f"rank{k}"] - ref[f"rank{k}"]) < 1e-12 for k in (1, 5, 10))
            and all(
                abs(ours["tpir_at_fpir_insightface"][key]["tpir"] - ref[f"tpir{x}"]) < 1e-12
                for key, x in (("1e-2", 0.01), ("1e-1", 0.1))
            ),
        )
    _print(out, "search", "search (ranks + TPIR@FPIR)")
    if "same_numbers" in out:
        print(f"\nrank-1/5/10 and TPIR@FPIR identical to ijb_1n.py's: {out['same_numbers']}")
    return out


_HEADER_DONE: set[int] = set()


def _print(out: dict, key: str, label: str) -> None:
    if id(out) not in _HEADER_DONE:
        _HEADER_DONE.add(id(out))
        print("| step | facerec wall s (CPU s) | facerec peak memory | insightface loops wall s "
              "(CPU s) | insightface peak memory | speed-up (wall) |")  # fmt: skip
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
    ours, cpu = out[f"facerec_{key}_s"], out[f"facerec_{key}_cpu_s"]
    mem = out[f"facerec_{key}_peak_bytes"]
    ref = out.get(f"insightface_{key}_s")
    ref_cpu = out.get(f"insightface_{key}_cpu_s")
    ref_mem = out.get(f"insightface_{key}_peak_bytes")
    print(
        f"| {label} | {ours:.2f} ({cpu:.2f}) | {fmt_mem(mem)} | "
        + (
            f"{ref:.2f} ({ref_cpu:.2f}) | {fmt_mem(ref_mem)} | {ref / ours:.0f}× |"
            if ref
            else "- | - | - |"
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--parts",
        nargs="+",
        choices=("ijbc", "ijbb", "ijbc1n"),
        default=["ijbc", "ijbb", "ijbc1n"],
    )
    p.add_argument("--images", type=int, default=227_630)
    p.add_argument("--templates", type=int, default=23_124)
    p.add_argument("--pairs", type=int, default=469_375)
    p.add_argument("--mated", type=int, default=19_557)
    p.add_argument("--ijbb-templates", type=int, default=12_115)
    p.add_argument("--ijbb-pairs", type=int, default=8_010_270)
    p.add_argument("--ijbb-mated", type=int, default=10_270)
    p.add_argument("--probes-1n", type=int, default=19_593)
    p.add_argument("--gallery-1n", type=int, default=3_531)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--skip-reference", action="store_true", help="facerec only")
    p.add_argument(
        "--repeats", type=int, default=3, help="facerec steps: best of N runs (default 3)"
    )
    p.add_argument("--quick", action="store_true", help="1/20 of every size (smoke run)")
    p.add_argument("--json", metavar="FILE", help="write every number here")
    args = p.parse_args(argv)
    if args.quick:
        for k in ("images", "templates", "pairs", "mated", "ijbb_templates", "ijbb_pairs",
                  "ijbb_mated", "probes_1n", "gallery_1n"):  # fmt: skip
            setattr(args, k, max(10, getattr(args, k) // 20))
    if args.threads:
        torch.set_num_threads(args.threads)

    def load() -> float:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    info = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_at_start": load(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }
    print(
        f"{info['cpus']} CPUs, torch {info['torch']} ({info['torch_threads']} threads), "
        f"numpy {info['numpy']}, load average {info['load_average_1min_at_start']:.2f} at start"
    )
    res: dict = {"info": info}
    if "ijbc" in args.parts:
        res["ijbc"] = bench_ijbc(args)
    if "ijbb" in args.parts:
        res["ijbb"] = bench_ijbb(args)
    if "ijbc1n" in args.parts:
        res["ijbc1n"] = bench_ijbc_1n(args)
    res["info"]["load_average_1min_at_end"] = load()
    print(f"\nload average {load():.2f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
