"""Benchmark: does the quality score rank degraded faces below the originals, and does rejecting
by it lower the verification error (the ERC)? (issue 24, quality)

Takes a real face set (default ../shared/data/orl_faces: 40 people x 10 greyscale photos),
writes into a temporary folder one degraded copy of each photo, the kind cycling over
``blur`` (Gaussian, sigma 3 px at 92x112), ``noise`` (Gaussian, sigma 30 grey levels),
``occlusion`` (a grey block over 40 % of the face, its place drawn per photo) and ``tiny``
(shrunk to 12 px wide and back), all seeded, and scores originals and copies with the model's
``norm`` and ``stability`` qualities (:mod:`facerec.metrics.quality`). It reports

* the AUC P(quality of an original > quality of a degraded copy), overall and per kind;
* the ERC (:func:`facerec.metrics.quality.error_versus_reject`) on the pooled 2 x N images:
  every genuine pair and as many seeded impostor pairs, cosine of flip-test embeddings,
  threshold at FAR 1e-2 on all pairs, FNMR after rejecting 0 ... 50 % of pairs by pair quality
  (the worse image's), for each quality and for a random one.

    python tools/bench/quality.py --checkpoint runs/quickstart/checkpoints/last.ckpt
    python tools/bench/quality.py --checkpoint dlib-r29 --passes 8

Prints markdown tables; ``--json FILE`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facerec.data.folder import list_images
from facerec.data.sources import FileImages
from facerec.eval.quality import quality_method, score_images
from facerec.inference import embed_images, load_embedder
from facerec.metrics.quality import error_versus_reject, pair_quality, quality_auc
from facerec.metrics.verification import l2_normalize

KINDS = ("blur", "noise", "occlusion", "tiny")


def degrade(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One degraded copy of a uint8 image (greyscale or colour)."""
    h, w = img.shape[:2]
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), 3.0 * w / 92)
    if kind == "noise":
        n = rng.normal(0, 30, img.shape)
        return np.clip(img.astype(np.float64) + n, 0, 255).astype(np.uint8)
    if kind == "occlusion":
        bh, bw = int(0.63 * h), int(0.63 * w)  # 0.63^2 = 40 % of the area
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        out = img.copy()
        out[y : y + bh, x : x + bw] = 128
        return out
    if kind == "tiny":
        small = cv2.resize(img, (12, max(1, round(12 * h / w))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    raise ValueError(kind)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/orl_faces", help="ROOT/identity/image")
    p.add_argument("--checkpoint", help="facerec checkpoint or a named model (dlib-r29)")
    p.add_argument("--onnx", help="exported ONNX model")
    p.add_argument("--passes", type=int, default=8, help="perturbed passes of stability")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--far", type=float, default=1e-2)
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    paths = list_images(args.data)
    ids = np.asarray([p.parent.name for p in paths])
    emb_model = load_embedder(args.checkpoint, args.onnx, "cpu", 64)
    methods = [quality_method("auto"), "stability"]  # auto is norm
    with tempfile.TemporaryDirectory(prefix="facerec-quality-") as tmp:
        bad_paths, kinds = [], []
        for i, path in enumerate(paths):
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            kind = KINDS[i % len(KINDS)]
            out = Path(tmp) / f"{i:05d}_{kind}.png"
            cv2.imwrite(str(out), degrade(img, kind, rng))
            bad_paths.append(out)
            kinds.append(kind)
        images = FileImages([*paths, *bad_paths])
        n = len(paths)
        t0 = time.perf_counter()
        emb = l2_normalize(embed_images(emb_model, images, 64, flip=True))
        t_emb = time.perf_counter() - t0
        qual, secs = {}, {}
        for m in methods:
            t0 = time.perf_counter()
            qual[m] = score_images(emb_model, images, m, args.passes, args.seed)
            secs[m] = time.perf_counter() - t0
    kinds_arr = np.asarray(kinds)
    result: dict = {"images": n, "passes": args.passes, "embed_seconds": t_emb, "auc": {}}
    print(f"{n} originals + {n} degraded copies ({', '.join(KINDS)} in turn)\n")
    print("| quality | AUC all | " + " | ".join(KINDS) + " | seconds |")
    print("|---|---|" + "---|" * len(KINDS) + "---|")
    for m in methods:
        good, bad = qual[m][:n], qual[m][n:]
        row = {"all": quality_auc(good, bad)}
        row |= {k: quality_auc(good[kinds_arr == k], bad[kinds_arr == k]) for k in KINDS}
        result["auc"][m] = row
        cells = " | ".join(f"{row[k]:.3f}" for k in ("all", *KINDS))
        print(f"| {m} | {cells} | {secs[m]:.1f} |")
    # ERC over the pooled originals and copies
    who = np.concatenate([ids, ids])
    iu, ju = np.triu_indices(2 * n, 1)
    gen = who[iu] == who[ju]
    gi, gj = iu[gen], ju[gen]
    pick = rng.choice(np.nonzero(~gen)[0], size=gi.size, replace=False)
    left, right = np.concatenate([gi, iu[pick]]), np.concatenate([gj, ju[pick]])
    same = np.concatenate([np.ones(gi.size, bool), np.zeros(pick.size, bool)])
    scores = (emb[left] * emb[right]).sum(1)
    reject = np.linspace(0, 0.5, 11)
    curves = {
        m: error_versus_reject(
            scores, same, pair_quality(qual[m][left], qual[m][right]), args.far, reject
        )
        for m in methods
    }
    rq = rng.uniform(size=2 * n)
    curves["random"] = error_versus_reject(
        scores, same, pair_quality(rq[left], rq[right]), args.far, reject
    )
    show = [0, 2, 4, 6, 10]
    print(f"\nERC: {gi.size} genuine + {pick.size} impostor pairs, threshold at FAR {args.far}")
    print(
        "| quality | " + " | ".join(f"FNMR r={reject[k]:.1f}" for k in show) + " | area | oracle |"
    )
    print("|---|" + "---|" * (len(show) + 2))
    for m, c in curves.items():
        cells = " | ".join(f"{c.fnmr[k]:.4f}" for k in show)
        print(f"| {m} | {cells} | {c.area:.4f} | {c.area_oracle:.4f} |")
    result["erc"] = {m: c.to_dict() for m, c in curves.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
