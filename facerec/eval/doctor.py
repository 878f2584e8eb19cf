"""Data doctor: duplicates, likely label errors, split identities and benchmark overlap.

Pure analysis on file hashes and L2-normalised embeddings (the model, images and output files
are :mod:`facerec.eval.doctor_cli`'s); every search goes through the project's FAISS index
(:func:`facerec.mining.faiss_index.build_index`), queried in chunks with a progress bar. The
cosine thresholds depend on the model (:func:`model_thresholds`).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facerec.errors import ConfigError, DataError
from facerec.metrics.verification import l2_normalize
from facerec.mining.faiss_index import INDEX_KINDS, build_index, faiss_search


@dataclass
class DoctorOptions:
    """Thresholds (cosines of unit embeddings) and search settings.

    mislabel_margin: an image is flagged when its best other centre beats its own (leave-one-out)
    centre by more than this; overlap: a benchmark image whose nearest training image is above it
    overlaps; neighbours: images searched per image for near duplicates; index: FAISS index kind;
    nprobe / nlist: IVF lists searched / made (default √N); chunk_size: queries per FAISS call.
    """

    near_duplicate: float = 0.95
    mislabel_margin: float = 0.0
    split: float = 0.8
    overlap: float = 0.95
    neighbours: int = 10
    index: str = "flat"
    nprobe: int = 16
    nlist: int | None = None
    chunk_size: int = 8192

    def check(self) -> None:
        """Raise :class:`ConfigError` for a value out of range."""
        for name in ("near_duplicate", "split", "overlap"):
            v = getattr(self, name)
            if not -1.0 <= v <= 1.0:
                raise ConfigError(f"doctor {name} threshold {v}; expected a cosine in [-1, 1]")
        if not -2.0 <= self.mislabel_margin <= 2.0:
            raise ConfigError(f"doctor mislabel margin {self.mislabel_margin}; expected [-2, 2]")
        if self.neighbours < 1 or self.nprobe < 1 or self.chunk_size < 1 or (self.nlist or 1) < 1:
            raise ConfigError("doctor neighbours, nprobe, nlist and chunk size must be >= 1")
        if self.index not in INDEX_KINDS:
            raise ConfigError(f"index {self.index!r}; expected one of {', '.join(INDEX_KINDS)}")


#: the thresholds a model's embeddings need (the fields of :class:`DoctorOptions` they set)
THRESHOLD_KEYS = ("near_duplicate", "mislabel_margin", "split", "overlap")

#: per-model thresholds of the packaged models (``--checkpoint NAME``). dlib-r29, measured on the
#: 400 dlib-aligned ORL chips (tools/bench/doctor_orl.py): distinct photos of one person reach a
#: cosine of 0.998 (99th percentile of each photo's nearest: 0.9977), distinct people's centres
#: 0.947 (two different people: 0.86 median, up to 0.95).
MODEL_THRESHOLDS: dict[str, dict[str, float]] = {
    "dlib-r29": {"near_duplicate": 0.998, "mislabel_margin": 0.0, "split": 0.96, "overlap": 0.998},
}


def model_thresholds(model: str | None, backbone: object = None) -> tuple[dict[str, float], str]:
    """The doctor's thresholds for a model, and one line saying where they come from.

    A packaged model by name has its own (:data:`MODEL_THRESHOLDS`); a
    :class:`~facerec.models.DlibResNet` checkpoint (e.g. fine-tuned from dlib-r29) takes
    dlib-r29's (its embeddings keep dlib's cone); any other model :class:`DoctorOptions`'
    defaults. ``model``: ``--checkpoint`` or ``--onnx`` (None for none); ``backbone``: the
    loaded PyTorch network, if any.
    """
    from facerec.models.dlib_resnet import NAME as DLIB
    from facerec.models.dlib_resnet import DlibResNet

    if model is not None and str(model) in MODEL_THRESHOLDS:
        return dict(MODEL_THRESHOLDS[str(model)]), f"{model}'s own (measured on ORL)"
    if isinstance(backbone, DlibResNet):
        return dict(MODEL_THRESHOLDS[DLIB]), f"{DLIB}'s: the model is a DlibResNet"
    defaults = {k: getattr(DoctorOptions, k) for k in THRESHOLD_KEYS}
    return defaults, "the defaults for facerec's margin-trained models"


def file_hash(data: bytes) -> str:
    """BLAKE2b-128 hex digest of a file's bytes (the exact-duplicate key)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def exact_duplicates(hashes: Sequence[str]) -> list[np.ndarray]:
    """Groups of indices whose hashes are equal: each (>= 2,) int64, sorted; groups in order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        groups[h].append(i)
    return [np.asarray(v, np.int64) for v in groups.values() if len(v) > 1]


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"{what} of shape {x.shape}; expected a non-empty (N, D) array")
    if not np.isfinite(x).all():
        raise DataError(f"{what} contain NaN or inf; expected finite embeddings")
    return l2_normalize(x)


def _index(x: np.ndarray, opt: DoctorOptions):
    """The project's FAISS index over ``x`` (N, D); IVF with ``nlist`` (default √N) lists, exact
    below 1000 points (too few to train inverted lists)."""
    n = x.shape[0]
    if opt.index == "ivf" and n >= 1000:
        nlist = max(1, min(opt.nlist or int(math.sqrt(n)), n // 39))
        return build_index(x, kind="ivf", nlist=nlist, nprobe=opt.nprobe)
    return build_index(x, kind="flat" if opt.index == "ivf" else opt.index)  # type: ignore[arg-type]


def search(
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    opt: DoctorOptions,
    progress: bool = False,
    desc: str = "searching",
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours in ``base`` (B, D) of each query (Q, D), unit rows:
    ``(scores, ids)``, (Q, min(k, B)) float32 descending and int64 rows of ``base`` (-1 where an
    approximate index found fewer)."""
    from tqdm.auto import tqdm

    index = _index(base, opt)
    k = min(int(k), base.shape[0])
    cs = opt.chunk_size
    chunks = range(0, queries.shape[0], cs)
    bar = tqdm(chunks, desc, disable=not progress, file=sys.stderr, leave=False, dynamic_ncols=True)
    parts = [faiss_search(index, queries[s : s + cs], k, chunk_size=cs) for s in bar]
    if not parts:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate([d for d, _ in parts]), np.concatenate([i for _, i in parts])


@dataclass
class NearPairs:
    """Image pairs (i < j) above a cosine threshold: i, j (P,) int64, score (P,) float32."""

    i: np.ndarray
    j: np.ndarray
    score: np.ndarray


def _close_pairs(
    x: np.ndarray,
    k: int,
    threshold: float,
    opt: DoctorOptions,
    progress: bool = False,
    desc: str = "searching",
    ids: np.ndarray | None = None,
) -> NearPairs:
    """Pairs of rows of unit ``x`` among each other's ``k`` nearest with a cosine above
    ``threshold``, each pair once, best first; ``ids`` (rows,) renumbers the rows."""
    s, nn = search(x, x, k + 1, opt, progress, desc)
    rows = np.repeat(np.arange(x.shape[0]), s.shape[1])
    s, nn = s.reshape(-1), nn.reshape(-1)
    keep = (nn >= 0) & (nn != rows) & (s > threshold)
    a, b = (rows[keep], nn[keep]) if ids is None else (ids[rows[keep]], ids[nn[keep]])
    i, j, sc = np.minimum(a, b), np.maximum(a, b), s[keep]
    if i.size:
        _, first = np.unique(i * (int(j.max()) + 1) + j, return_index=True)
        i, j, sc = i[first], j[first], sc[first]
    order = np.lexsort((j, i, -sc))
    return NearPairs(i[order].astype(np.int64), j[order].astype(np.int64), sc[order])


def near_duplicates(
    emb: np.ndarray,
    opt: DoctorOptions,
    exclude_hashes: Sequence[str] | None = None,
    progress: bool = False,
) -> NearPairs:
    """Pairs of images whose cosine exceeds ``opt.near_duplicate``, each pair once, best first.

    emb: (N, D) (normalised here); only each image's ``opt.neighbours`` nearest are searched.
    exclude_hashes: (N,) file hashes; pairs with equal hashes (exact duplicates) are left out.
    """
    x = _unit(emb, "embeddings")
    p = _close_pairs(x, opt.neighbours, opt.near_duplicate, opt, progress, "near duplicates")
    if exclude_hashes is not None and p.i.size:
        h = np.asarray(exclude_hashes)
        keep = h[p.i] != h[p.j]
        p = NearPairs(p.i[keep], p.j[keep], p.score[keep])
    return p


@dataclass
class Centres:
    """Identity centres: sums (C, D) of unit embeddings, counts (C,), unit centres (C, D)."""

    sums: np.ndarray
    counts: np.ndarray
    unit: np.ndarray


def identity_centres(emb: np.ndarray, labels: np.ndarray, num_classes: int) -> Centres:
    """Sum, count and normalised mean of each identity's unit embeddings (emb: (N, D); labels:
    (N,) in [0, num_classes)); an identity without images has a zero centre."""
    x = _unit(emb, "embeddings")
    y = np.asarray(labels, np.int64).reshape(-1)
    if y.shape[0] != x.shape[0] or (y.size and (y.min() < 0 or y.max() >= num_classes)):
        raise DataError(
            f"{y.size} labels for {x.shape[0]} embeddings, or a label outside "
            f"[0, {num_classes}); expected one label per image"
        )
    sums = np.zeros((num_classes, x.shape[1]), np.float64)
    order = np.argsort(y, kind="stable")
    for s in range(0, order.size, 1 << 16):  # sorted chunks summed with reduceat (np.add.at
        idx = order[s : s + (1 << 16)]  # is ~50x slower), no second (N, D) array
        ys = y[idx]
        starts = np.r_[0, np.nonzero(np.diff(ys))[0] + 1]
        sums[ys[starts]] += np.add.reduceat(x[idx].astype(np.float64), starts, axis=0)
    counts = np.bincount(y, minlength=num_classes)
    unit = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return Centres(sums, counts, unit.astype(np.float32))


@dataclass
class Mislabelled:
    """Likely label errors: image (M,), own and other identity (M,), own / other cosine (M,),
    largest margin (other - own) first."""

    image: np.ndarray
    own: np.ndarray
    other: np.ndarray
    own_score: np.ndarray
    other_score: np.ndarray


def mislabelled(
    emb: np.ndarray,
    labels: np.ndarray,
    centres: Centres,
    opt: DoctorOptions,
    progress: bool = False,
) -> Mislabelled:
    """Images (emb: (N, D); labels: (N,)) closer to another identity's centre than to their own
    (leave-one-out) centre; images alone in their identity have no own centre and are not judged.
    """
    x = _unit(emb, "embeddings")
    y = np.asarray(labels, np.int64).reshape(-1)
    own = np.empty(x.shape[0], np.float64)
    for s in range(0, x.shape[0], 1 << 16):  # in chunks: no second (N, D) array
        c = slice(s, s + (1 << 16))
        xs = x[c].astype(np.float64)
        loo = centres.sums[y[c]] - xs  # the identity's other images
        own[c] = np.einsum("nd,nd->n", xs, loo) / np.maximum(np.linalg.norm(loo, axis=1), 1e-12)
    alive = np.nonzero(centres.counts > 0)[0]
    s, ids = search(centres.unit[alive], x, 2, opt, progress, "centres")
    ids = np.where(ids >= 0, alive[np.clip(ids, 0, None)], -1)
    first_is_own = ids[:, 0] == y
    other = np.where(first_is_own, ids[:, 1] if ids.shape[1] > 1 else -1, ids[:, 0])
    other_s = np.where(first_is_own, s[:, 1] if s.shape[1] > 1 else -np.inf, s[:, 0])
    judged = (centres.counts[y] >= 2) & (other >= 0)
    idx = np.nonzero(judged & (other_s - own > opt.mislabel_margin))[0]
    order = idx[np.argsort(-(other_s[idx] - own[idx]), kind="stable")]
    return Mislabelled(
        order.astype(np.int64),
        y[order],
        other[order].astype(np.int64),
        own[order].astype(np.float32),
        other_s[order].astype(np.float32),
    )


def split_identities(centres: Centres, opt: DoctorOptions, k: int = 5) -> NearPairs:
    """Identity pairs (a < b) whose centres' cosine exceeds ``opt.split``, best first."""
    alive = np.nonzero(centres.counts > 0)[0]
    if alive.size < 2:
        return NearPairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return _close_pairs(centres.unit[alive], k, opt.split, opt, ids=alive)


@dataclass
class Overlap:
    """Benchmark images that match a training image: bench (O,), train (O,), score (O,) cosine,
    exact (O,) bool (same file bytes)."""

    bench: np.ndarray
    train: np.ndarray
    score: np.ndarray
    exact: np.ndarray


def benchmark_overlap(
    train_emb: np.ndarray,
    bench_emb: np.ndarray,
    opt: DoctorOptions,
    train_hashes: Sequence[str] | None = None,
    bench_hashes: Sequence[str] | None = None,
    progress: bool = False,
) -> Overlap:
    """Benchmark images (M, D) equal (by hash) or too similar (> ``opt.overlap``) to a training
    image (N, D), each once, with its nearest training image (for an exact copy, the first
    training image of equal bytes)."""
    x = _unit(train_emb, "training embeddings")
    q = _unit(bench_emb, "benchmark embeddings")
    s, ids = search(x, q, 1, opt, progress, "benchmark overlap")
    best_s, best_i = s[:, 0], ids[:, 0]
    exact = np.zeros(q.shape[0], bool)
    if train_hashes is not None and bench_hashes is not None:
        first: dict[str, int] = {}  # the first training image of each hash
        for n, h in enumerate(train_hashes):
            first.setdefault(h, n)
        for m, h in enumerate(bench_hashes):
            if h in first:
                exact[m] = True
                best_i[m] = first[h]
                best_s[m] = float(x[first[h]] @ q[m])
    hit = exact | ((best_i >= 0) & (best_s > opt.overlap))
    idx = np.nonzero(hit)[0]
    return Overlap(idx.astype(np.int64), best_i[idx].astype(np.int64), best_s[idx], exact[idx])


@dataclass
class Diagnosis:
    """Everything :func:`diagnose` found (indices are rows of the training set)."""

    num_images: int
    exact: list[np.ndarray]
    near: NearPairs
    mislabelled: Mislabelled
    split: NearPairs
    overlap: dict[str, Overlap] = field(default_factory=dict)


def diagnose(
    emb: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    hashes: Sequence[str],
    opt: DoctorOptions | None = None,
    bench: dict[str, tuple[np.ndarray, Sequence[str] | None]] | None = None,
    progress: bool = False,
) -> Diagnosis:
    """Run every check on a training set's embeddings.

    emb: (N, D) (normalised here); labels: (N,) int identity of each; hashes: (N,)
    :func:`file_hash` of each image's bytes; bench: name -> ((M, D) embeddings, (M,) hashes or
    None).
    """
    opt = opt or DoctorOptions()
    opt.check()
    if len(hashes) != emb.shape[0]:
        raise DataError(f"{len(hashes)} hashes for {emb.shape[0]} images; expected one each")
    centres = identity_centres(emb, labels, num_classes)
    d = Diagnosis(
        num_images=int(emb.shape[0]),
        exact=exact_duplicates(hashes),
        near=near_duplicates(emb, opt, hashes, progress),
        mislabelled=mislabelled(emb, labels, centres, opt, progress),
        split=split_identities(centres, opt),
    )
    for name, (b_emb, b_hashes) in (bench or {}).items():
        d.overlap[name] = benchmark_overlap(emb, b_emb, opt, hashes, b_hashes, progress)
    return d


def images_to_drop(d: Diagnosis, labels: np.ndarray) -> dict[int, str]:
    """The images a clean list leaves out, each with the reason (first reason wins).

    Exact and near duplicates: within one identity all but the first, across identities all
    (which label is right cannot be told); likely mislabelled images; training images matching
    a benchmark image. Split identities are only reported (merging them is a relabelling).
    """
    y = np.asarray(labels, np.int64)
    drop: dict[int, str] = {}
    for g in d.exact:
        across = np.unique(y[g]).size > 1
        for n in g if across else g[1:]:
            drop.setdefault(int(n), "exact duplicate" + (" across identities" if across else ""))
    for i, j in zip(d.near.i.tolist(), d.near.j.tolist(), strict=True):
        if y[i] == y[j]:
            drop.setdefault(j, f"near duplicate of image {i}")
        else:
            drop.setdefault(i, f"near duplicate across identities (image {j})")
            drop.setdefault(j, f"near duplicate across identities (image {i})")
    for n, o in zip(d.mislabelled.image.tolist(), d.mislabelled.other.tolist(), strict=True):
        drop.setdefault(n, f"likely mislabelled (closer to identity {o})")
    for name, ov in d.overlap.items():
        for t in ov.train.tolist():
            drop.setdefault(t, f"matches a {name} benchmark image")
    return drop
