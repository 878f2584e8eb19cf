"""Per-group (fairness) evaluation for ``facerec eval``: GROUPS.csv, RFW's races, the outputs.

Groups come from ``--groups GROUPS.csv`` (header ``image,group`` or ``identity,group``; an image
named by its path or its last parts, the longest match winning: ``Alice/Alice_0001.jpg`` matches
``/data/lfw/Alice/Alice_0001.jpg``; an image of a .bin as ``lfw.bin #12``; an identity is an
image's folder name) or from the benchmark itself (``--rfw``: each image's race, which
GROUPS.csv does not override).

A pair's group is that of its two images. A pair across two groups (``num_cross_group_pairs``)
or with an ungrouped image (``num_ungrouped_pairs``) is left out of every group and counted, as
a warning. The deployed threshold is still set on all pairs.

Per benchmark: :func:`plan_groups` before embedding (refuses a group without genuine or impostor
pairs), :func:`group_entry` with the scores (the ``results.json`` entry), then
:func:`format_groups` (console) and :func:`facerec.eval.html_report.groups_html` of that entry.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from facerec.errors import ConfigError, DataError
from facerec.metrics.groups import DEPLOYED_FAR, group_report
from facerec.metrics.verification import DEFAULT_FARS, far_key

from .benchmarks import PairBenchmark, csv_rows
from .report import VERIFICATION_HEAD, grid, number, percent, verification_cells


def add_group_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add ``--groups GROUPS.csv`` to ``parser``."""
    parser.add_argument(
        "--groups",
        metavar="GROUPS.csv",
        help="per-group (fairness) report: a CSV with header image,group or identity,group "
        "(image as the benchmark names it, e.g. Alice/Alice_0001.jpg; identity = the image's "
        "folder); every metric per group, the spread and FMR/FNMR at one shared threshold",
    )


@dataclass
class GroupTable:
    """A read GROUPS.csv: ``by`` ("image" or "identity"), ``labels`` {name: group},
    ``lines`` {name: line number} and its ``source`` path."""

    by: str
    labels: dict[str, str]
    lines: dict[str, int]
    source: str


def _norm(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return ("/" if name.startswith("/") else "") + "/".join(parts)


def read_groups_csv(path: str | os.PathLike[str]) -> GroupTable:
    """Read GROUPS.csv (see the module's docstring).

    Raises:
        DataError: a missing file, a bad header, a row without two non-empty cells, a name
            given two different groups, no rows.
    """
    p = Path(path)
    labels: dict[str, str] = {}
    lines: dict[str, int] = {}
    by = ""
    for lineno, row, cells in csv_rows(p, "GROUPS.csv"):
        if not by:
            head = [c.lower() for c in cells]
            if len(head) != 2 or head[1] != "group" or head[0] not in ("image", "identity"):
                raise DataError(
                    f"{p}: line {lineno} is {','.join(row)!r}; expected the header "
                    "'image,group' or 'identity,group'"
                )
            by = head[0]
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise DataError(
                f"{p}: line {lineno} is {','.join(row)!r}; expected '{by},group' (two non-empty "
                "cells)"
            )
        key = _norm(cells[0]) if by == "image" else cells[0]
        if key in labels and labels[key] != cells[1]:
            raise DataError(
                f"{p}: line {lineno} puts {by} {cells[0]!r} in group {cells[1]!r} but line "
                f"{lines[key]} in {labels[key]!r}; expected one group per {by}"
            )
        labels.setdefault(key, cells[1])
        lines.setdefault(key, lineno)
    if not by:
        raise DataError(f"{p}: empty; expected the header 'image,group' or 'identity,group'")
    if not labels:
        raise DataError(f"{p}: no rows after the header; expected '{by},group' rows")
    return GroupTable(by, labels, lines, str(p))


def _image_names(b: PairBenchmark) -> list[list[str]] | None:
    """For each image, the names GROUPS.csv may give it, longest first; None when the source
    has neither file paths nor a file (synthetic images)."""
    paths = getattr(b.images, "paths", None)
    if paths is not None:
        parts = [PurePosixPath(_norm(str(q))).parts for q in paths]
        return [[_norm("/".join(p[k:])) for k in range(len(p))] for p in parts]
    source = getattr(b.images, "source", None)
    if source:
        name = Path(str(source)).name
        return [[f"{name} #{i}"] for i in range(len(b.images))]
    return None


def _identities(b: PairBenchmark) -> list[list[str]] | None:
    """For each image, its identity (its folder's name) as a one-name list; None without paths."""
    paths = getattr(b.images, "paths", None)
    return None if paths is None else [[Path(q).parent.name] for q in paths]


@dataclass
class PairGroups:
    """The group of each pair of one benchmark.

    Attributes:
        labels: (N,) object: the group of the pair, None for a pair left out.
        source: where the groups came from ("rfw's own groups" or the GROUPS.csv path).
        by: "image", "identity" or "benchmark" (groups the benchmark carries).
        num_ungrouped: pairs with an image that has no group.
        num_cross_genuine, num_cross_impostor: pairs whose two images are in two groups.
        used: GROUPS.csv names that matched an image of the benchmark.
    """

    labels: np.ndarray
    source: str
    by: str
    num_ungrouped: int = 0
    num_cross_genuine: int = 0
    num_cross_impostor: int = 0
    used: set[str] = field(default_factory=set)

    def warnings(self, bench: str) -> list[str]:
        """The counted warnings about pairs left out, one line each."""
        n = self.labels.size
        out = []
        if self.num_ungrouped:
            out.append(
                f"{bench}: {self.num_ungrouped} of {n} pairs have an image without a group in "
                f"{self.source}; left out of the per-group report"
            )
        cross = self.num_cross_genuine + self.num_cross_impostor
        if cross:
            out.append(
                f"{bench}: {cross} of {n} pairs ({self.num_cross_genuine} genuine, "
                f"{self.num_cross_impostor} impostor) join images of two different groups; "
                "left out of every group (num_cross_group_pairs)"
            )
        return out


def pair_groups(b: PairBenchmark, table: GroupTable | None = None) -> PairGroups | None:
    """The group of each pair of ``b``: its own groups (RFW) if it has them, else ``table``'s;
    None when neither gives any of its images a group.

    Raises:
        ConfigError: a GROUPS.csv by identity for a benchmark whose images have no folders (a
            .bin), or any GROUPS.csv for images without names (synthetic pairs).
    """
    used: set[str] = set()
    if b.groups is not None:
        img: list[str | None] = [None if g is None else str(g) for g in b.groups]
        source, by = f"{b.name}'s own groups", "benchmark"
    elif table is None:
        return None
    else:
        source, by = table.source, table.by
        names = _image_names(b) if table.by == "image" else _identities(b)
        if names is None:
            raise ConfigError(
                f"{table.source}: groups by {table.by} but the images of benchmark {b.name} "
                f"have no {'names' if table.by == 'image' else 'identity folders'}; expected "
                "GROUPS.csv by image for a .bin (names like 'lfw.bin #0'), and an image "
                "folder benchmark (LFW, pairs CSV) for groups by identity"
            )
        hits = [next((c for c in cands if c in table.labels), None) for cands in names]
        used = {h for h in hits if h is not None}
        img = [None if h is None else table.labels[h] for h in hits]
    if all(g is None for g in img):
        return None
    g = np.array(img, dtype=object)
    ga, gb = g[b.pairs[:, 0]], g[b.pairs[:, 1]]
    ungrouped = np.equal(ga, None) | np.equal(gb, None)
    cross = ~ungrouped & (ga != gb)
    return PairGroups(
        labels=np.where(ungrouped | cross, None, ga),
        source=source,
        by=by,
        num_ungrouped=int(ungrouped.sum()),
        num_cross_genuine=int((cross & b.issame).sum()),
        num_cross_impostor=int((cross & ~b.issame).sum()),
        used=used,
    )


def plan_groups(
    benches: Sequence[PairBenchmark], table: GroupTable | None = None
) -> tuple[dict[str, PairGroups], list[str]]:
    """``({benchmark name: PairGroups}, warnings)`` for the benchmarks that have groups, checked
    before any embedding; the warnings count pairs left out, benchmarks ``table`` names none of
    the images of, and GROUPS.csv rows that name no image of any benchmark.

    Raises:
        DataError: ``table`` names no image of any benchmark, or a group has fewer than 2
            genuine or impostor pairs.
        ConfigError: see :func:`pair_groups`, where no benchmark can be grouped (else a
            warning for the one that cannot).
    """
    plans: dict[str, PairGroups] = {}
    warnings: list[str] = []
    refused: list[ConfigError] = []
    for b in benches:
        try:
            pg = pair_groups(b, table)
        except ConfigError as e:  # a .bin among folder benchmarks: the others still go on
            refused.append(e)
            warnings.append(f"{b.name}: no per-group report ({e})")
            continue
        if pg is None:
            if table is not None:
                warnings.append(
                    f"{b.name}: none of its {len(b.images)} images is in {table.source}; no "
                    "per-group report for it"
                )
            continue
        for g in sorted({x for x in pg.labels if x is not None}):
            m = pg.labels == g
            n_pos, n_neg = int((m & b.issame).sum()), int((m & ~b.issame).sum())
            if n_pos < 2 or n_neg < 2:
                raise DataError(
                    f"{b.source or b.name}: group {g!r} ({pg.source}) has {n_pos} genuine and "
                    f"{n_neg} impostor pairs; expected at least 2 of each per group"
                )
        plans[b.name] = pg
        warnings += pg.warnings(b.name)
    if table is not None:
        used = set().union(*(pg.used for pg in plans.values()))
        if not used and refused and len(refused) == sum(b.groups is None for b in benches):
            raise refused[0]
        if not used and any(b.groups is None for b in benches):
            example = _example(next(b for b in benches if b.groups is None), table.by)
            raise DataError(
                f"{table.source}: none of its {len(table.labels)} {table.by} names is an image "
                f"of the benchmarks; expected names as the benchmarks name them, e.g. "
                f"{example!r}"
            )
        unknown = [k for k in table.labels if k not in used]
        if unknown and used:
            first = unknown[0]
            warnings.append(
                f"{table.source}: {len(unknown)} of {len(table.labels)} rows name no image of "
                f"the benchmarks (first: {first!r}, line {table.lines[first]}); ignored"
            )
    return plans, warnings


def _example(b: PairBenchmark, by: str) -> str:
    """How GROUPS.csv would name the first image of ``b`` (its last two path parts) or its
    identity."""
    if by == "identity":
        return (_identities(b) or [["?"]])[0][0]
    names = _image_names(b)
    return "/".join(PurePosixPath(names[0][0]).parts[-2:]) if names else "?"


def group_entry(
    scores: np.ndarray,
    b: PairBenchmark,
    pg: PairGroups,
    n_folds: int = 10,
    fars: Sequence[float] = DEFAULT_FARS,
    deployed_far: float = DEPLOYED_FAR,
) -> dict:
    """The per-group results.json entry of one model on ``b`` (a plain dict):
    :func:`facerec.metrics.groups.group_report` plus ``source``, ``by``,
    ``num_ungrouped_pairs`` and ``num_cross_group_pairs`` ({genuine, impostor}); its
    ``warnings`` include :meth:`PairGroups.warnings`."""
    try:
        rep = group_report(
            scores, b.issame, pg.labels, b.folds, n_folds, fars, deployed_far, b.fold_method
        )
    except DataError as e:
        raise DataError(f"{b.source or b.name}: {e}") from None
    rep.update(
        source=pg.source,
        by=pg.by,
        num_ungrouped_pairs=pg.num_ungrouped,
        num_cross_group_pairs={"genuine": pg.num_cross_genuine, "impostor": pg.num_cross_impostor},
    )
    rep["warnings"] = pg.warnings(b.name) + [f"{b.name}: {w}" for w in rep["warnings"]]
    return rep


# ------------------------------------------------------------------------------ renderings


def group_rows(entry: dict) -> tuple[list[str], list[list[str]]]:
    """The per-group table (head, rows) the console and the HTML both show."""
    fars = list(next(iter(entry["groups"].values()))["tar_at_far"])
    head = ["group", "pairs", "genuine", "impostor", *VERIFICATION_HEAD[3:]]
    head += [f"TAR@{f} %" for f in fars] + ["FMR %", "FNMR %"]
    rows = []
    for g, v in entry["groups"].items():
        pairs, *rates = verification_cells(v, fars)
        counts = [str(v["num_genuine"]), str(v["num_impostor"])]
        rows.append([g, pairs, *counts, *rates, percent(v["fmr"]), percent(v["fnmr"])])
    return head, rows


def _extremes(s: dict) -> str:
    """ "(highest max %, lowest min %)" of one spread entry."""
    return f"({s['highest']} {percent(s['max'])} %, {s['lowest']} {percent(s['min'])} %)"


def spread_lines(entry: dict) -> list[str]:
    """The spread and the deployed threshold as plain sentences (console and HTML)."""
    d, sp = entry["deployed"], entry["spread"]
    acc = sp["accuracy"]
    out = [f"accuracy spread (max - min): {percent(acc['gap'])} points {_extremes(acc)}"]
    for f, t in sp["tar_at_far"].items():
        if t is None:
            out.append(f"TAR@{f} ratio (best / worst): - (fewer than two groups resolve it)")
        else:
            out.append(f"TAR@{f} ratio (best / worst): {number(t['ratio'], '.3f')} {_extremes(t)}")
    out.append(
        f"shared threshold {d['threshold']:.4f} (FAR {far_key(d['far'])} on all pairs, achieved "
        f"{d['achieved_far']:.2e}{'' if d['resolvable'] else ', not resolvable'}; "
        f"{d['rule']}):"
    )
    for k in ("fmr", "fnmr"):
        out.append(f"{k.upper()} max / min: {number(sp[k]['ratio'], '.3f')} {_extremes(sp[k])}")
    cross = entry["num_cross_group_pairs"]
    left = entry["num_ungrouped_pairs"] + cross["genuine"] + cross["impostor"]
    if left:
        out.append(
            f"left out: {entry['num_ungrouped_pairs']} pairs with an image without a group, "
            f"{cross['genuine'] + cross['impostor']} pairs across two groups"
        )
    return out


def groups_source(entry: dict) -> str:
    """Where the groups came from, for a title: "rfw's own groups", "g.csv by identity"."""
    return entry["source"] if entry["by"] == "benchmark" else f"{entry['source']} by {entry['by']}"


def format_groups(model: str, bench: str, entry: dict) -> list[str]:
    """Console lines of one model's per-group entry on ``bench``: a title, the table, the spread."""
    head, rows = group_rows(entry)
    lines = [f"Groups: {model} on {bench} ({groups_source(entry)})"]
    lines += grid(head, rows, left=1)
    return lines + ["  " + s for s in spread_lines(entry)]
