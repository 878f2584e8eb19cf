"""The pair-benchmark flags of ``facerec eval`` and ``facerec doctor`` (.bin, LFW pairs.txt +
image root, pairs CSV, RFW), read into :class:`PairBenchmark` objects in one place."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from facerec.errors import ConfigError

from . import benchmarks as bm


def add_pair_benchmark_arguments(group: argparse._ArgumentGroup) -> None:
    """Add the flags of the verification benchmarks (and ``--allow-outside-root``)."""
    group.add_argument(
        "--bin",
        action="append",
        default=[],
        metavar="FILE",
        help="insightface verification .bin, e.g. lfw.bin (repeatable)",
    )
    group.add_argument("--lfw-pairs", metavar="FILE", help="LFW View 2 pairs.txt")
    group.add_argument("--lfw-root", metavar="DIR", help="LFW images: DIR/name/name_0001.jpg")
    group.add_argument(
        "--pairs-csv",
        action="append",
        default=[],
        metavar="FILE",
        help="CSV of path1,path2,same (paths relative to the CSV; repeatable)",
    )
    group.add_argument(
        "--rfw",
        metavar="ROOT",
        help="RFW test folder (txts/<Race>/<Race>_pairs.txt, data/<Race>/<identity>/*.jpg): "
        "one benchmark 'rfw' of the four races, each race a group (per-group report)",
    )
    group.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="read names that leave their image root ('..', absolute paths) in LFW pairs.txt "
        "(and eval's IJB image lists); refused by default",
    )


def unique_names(paths: list[str], taken: Sequence[str] = (), empty: str = "x") -> list[str]:
    """File-name-safe stems of ``paths`` (everything but letters, digits, ``.``, ``_`` and ``-``
    replaced by ``_``; ``empty`` when nothing is left), made unique among themselves and against
    ``taken`` with ``_2``, ``_3``, ... suffixes."""
    names: list[str] = []
    for q in paths:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(q).stem).strip("_") or empty
        name, k = base, 2
        while name in taken or name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def read_pair_benchmarks(
    args: argparse.Namespace, extra: list[bm.PairBenchmark] | None = None
) -> list[bm.PairBenchmark]:
    """The benchmarks the flags name (plus ``extra``), each with a unique, file-name-safe name.

    Raises:
        ConfigError: ``--lfw-pairs`` without ``--lfw-root`` or the reverse.
        DataError: a benchmark file is missing or malformed.
    """
    out: list[bm.PairBenchmark] = [bm.read_bin(f) for f in args.bin]
    if bool(args.lfw_pairs) != bool(args.lfw_root):
        raise ConfigError("--lfw-pairs and --lfw-root go together; expected both or neither")
    if args.lfw_pairs:
        out.append(
            bm.read_lfw(args.lfw_pairs, args.lfw_root, allow_outside_root=args.allow_outside_root)
        )
    out += [bm.read_pairs_csv(f) for f in args.pairs_csv]
    if getattr(args, "rfw", None):
        out.append(bm.read_rfw(args.rfw, allow_outside_root=args.allow_outside_root))
    return name_benchmarks(out + (extra or []))


def load_benchmark(spec: str) -> bm.PairBenchmark:
    """One benchmark of the in-training callback: ``synthetic`` / ``synthetic:N`` (N held-out
    synthetic pairs), a pairs ``.csv``, or a ``.bin``."""
    if spec == "synthetic":
        return bm.synthetic_pairs()
    if spec.startswith("synthetic:"):
        n = spec.split(":", 1)[1]
        if not n.isdigit() or int(n) < 2:
            raise ConfigError(
                f"benchmark {spec!r}: expected synthetic:N with N a number of pairs >= 2"
            )
        return bm.synthetic_pairs(num_pairs=int(n))
    if spec.endswith(".csv"):
        return bm.read_pairs_csv(spec)
    return bm.read_bin(spec)


def name_benchmarks(benches: list[bm.PairBenchmark]) -> list[bm.PairBenchmark]:
    """Give every benchmark a unique, file-name-safe name (``lfw``, ``lfw_2``, ...), the names
    of results.json, the plots and the logged metrics; returns ``benches``."""
    for b, n in zip(benches, unique_names([b.name for b in benches]), strict=True):
        b.name = n
    return benches
