"""Write a verification pairs CSV (path1,path2,same) from a root/<identity>/<image> folder.

    python tools/make_pairs.py --root orl_faces --identities s33 s34 s35 s36 s37 s38 s39 s40 \
        --pairs 40 --out heldout_pairs.csv

draws ``--pairs`` genuine pairs (two images of one identity) and as many impostor pairs (two
identities), without repeats, with a fixed ``--seed``, from the identities named (default: all).
Paths in the CSV are relative to the CSV's folder, so ``facerec eval --pairs-csv`` reads them
from wherever the CSV is. Same folder, identities, count and seed: the same file.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import numpy as np

from facerec.data.folder import scan_image_folder
from facerec.errors import FacerecError
from facerec.io import atomic_write_csv, check_output


def make_pairs(
    paths: list[str], labels: np.ndarray, count: int, seed: int
) -> list[tuple[str, str, int]]:
    """``count`` genuine, then ``count`` impostor (path1, path2, same) rows; no repeats."""
    rng = np.random.default_rng(seed)
    by_id = {i: [p for p, lab in zip(paths, labels, strict=True) if lab == i] for i in set(labels)}
    genuine = [
        (a, b) for imgs in by_id.values() for a, b in itertools.combinations(sorted(imgs), 2)
    ]
    ids = sorted(by_id)
    if len(ids) < 2:
        raise FacerecError(f"found {len(ids)} identity; impostor pairs need at least 2")
    sizes = np.array([len(v) for v in by_id.values()])
    impostor = int((sizes.sum() ** 2 - (sizes**2).sum()) // 2)
    if count > min(len(genuine), impostor):
        raise FacerecError(
            f"asked for {count} pairs of each kind but the identities have only {len(genuine)} "
            f"genuine and {impostor} impostor pairs; expected --pairs at most the smaller"
        )
    rows = [(*genuine[i], 1) for i in sorted(rng.choice(len(genuine), count, replace=False))]
    seen: set[tuple[str, str]] = set()
    while len(seen) < count:
        i, j = rng.choice(ids, 2, replace=False)
        a, b = sorted((str(rng.choice(by_id[i])), str(rng.choice(by_id[j]))))
        pair = (a, b)
        if pair not in seen:
            seen.add(pair)
            rows.append((*pair, 0))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="folder of root/<identity>/<image>")
    ap.add_argument("--identities", nargs="+", help="identity folder names to use (default all)")
    ap.add_argument("--pairs", type=int, default=300, help="genuine pairs; as many impostor")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="the CSV to write")
    args = ap.parse_args(argv)
    try:
        if args.pairs < 1:
            raise FacerecError(f"--pairs {args.pairs}; expected a positive count")
        out = check_output(args.out, "--out", [("--root", args.root)])
        paths, labels, names = scan_image_folder(args.root, "--root")
        keep = set(args.identities or names)
        unknown = sorted(keep - set(names))
        if unknown:
            raise FacerecError(f"--identities {', '.join(unknown)} not found under {args.root}")
        base = os.path.abspath(out.parent)
        chosen = [
            (os.path.relpath(os.path.abspath(p), base), lab)
            for p, lab in zip(paths, labels, strict=True)
            if names[lab] in keep
        ]
        rows = make_pairs(
            [p for p, _ in chosen],
            np.array([lab for _, lab in chosen]),
            args.pairs,
            args.seed,
        )
        atomic_write_csv(out, ["path1", "path2", "same"], rows)
    except FacerecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = args.pairs
    print(f"wrote {out}: {n} genuine and {n} impostor pairs of {len(keep)} identities")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
