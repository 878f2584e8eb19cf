"""Verification benchmark readers: insightface .bin, LFW pairs.txt, RFW, a pairs CSV, synthetic
pairs; each returns a :class:`PairBenchmark` whose images are decoded only when embedded, each
once however many pairs it is in.
"""

from __future__ import annotations

import csv
import io
import os
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.data.folder import list_images, scan_image_folder
from facerec.data.pairs import SYNTHETIC_HELD_OUT_START
from facerec.data.sources import EncodedImages, FileImages, ImageSource
from facerec.errors import DataError
from facerec.io import atomic_write_bytes
from facerec.metrics.verification import fold_ids


@dataclass
class PairBenchmark:
    """A verification benchmark.

    Attributes:
        name: short name used in metric keys and file names ("lfw", "cfp_fp", ...).
        images: the M distinct images, decoded lazily (:class:`ImageSource`).
        pairs: (N, 2) int64 indices into ``images``.
        issame: (N,) bool, True for a genuine pair.
        folds: (N,) int64 fold of each pair where the format defines folds (LFW pairs.txt, a
            .bin), else None (then stratified by class, seeded).
        source: where it was read from, for messages and the JSON report.
        fold_method: how ``folds`` were made, for results.json (empty when ``folds`` is None).
        groups: (M,) group label (str) of each image where the format defines groups (RFW: the
            race), else None; ``facerec.eval.groups`` turns it into a group per pair.
    """

    name: str
    images: ImageSource
    pairs: np.ndarray
    issame: np.ndarray
    folds: np.ndarray | None = None
    source: str = ""
    fold_method: str = ""
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        self.issame = np.asarray(self.issame, dtype=bool).reshape(-1)
        if self.pairs.shape[0] != self.issame.shape[0]:
            raise DataError(
                f"{self.source or self.name}: {self.pairs.shape[0]} pairs but "
                f"{self.issame.shape[0]} same/different flags; expected one flag per pair"
            )
        if self.folds is not None:
            self.folds = np.asarray(self.folds, dtype=np.int64).reshape(-1)
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=object).reshape(-1)
            if self.groups.size != len(self.images):
                raise DataError(
                    f"{self.source or self.name}: {self.groups.size} group labels for "
                    f"{len(self.images)} images; expected one per image"
                )

    @property
    def num_pairs(self) -> int:
        """N, the number of pairs."""
        return int(self.issame.shape[0])


def read_text(path: Path, what: str, encoding: str = "utf-8") -> str:
    """The text of ``path``; a :class:`DataError` naming ``what`` when missing or unreadable."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read {what} ({e})") from None


def csv_rows(path: Path, what: str) -> Iterator[tuple[int, list[str], list[str]]]:
    """(line number, row, stripped cells) of each non-blank row of the CSV file ``path``."""
    text = read_text(path, what, "utf-8-sig")
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if any(cells):
            yield lineno, row, cells


# -- insightface .bin


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """The one callable a .bin pickle may use: how Python 3 pickles bytes at protocol 2."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    if not isinstance(text, str):
        raise pickle.UnpicklingError("_codecs.encode of a non-string")
    return text.encode("latin1")


class _PlainUnpickler(pickle.Unpickler):
    """Unpickler that admits no class or function except latin-1 encoding of bytes."""

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid):  # type: ignore[override]
        raise pickle.UnpicklingError("refused persistent id")


def load_bin(path: str | os.PathLike[str]) -> tuple[list[bytes], np.ndarray]:
    """Read an insightface verification .bin (a pickle of ``(bins, issame_list)`` by Python 2 or
    3, any protocol) safely: 2N encoded images (pair i = bins[2i], bins[2i+1]), (N,) bool.

    Raises:
        DataError: missing file, not a pickle, a pickle that asks for any class or function
            (refused before it runs), or contents other than 2N byte strings and N flags.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: verification .bin file not found") from None
    except OSError as e:
        raise DataError(f"{p}: cannot read verification .bin ({e.strerror})") from None
    try:
        # encoding="bytes": Python 2 str (the JPEG data) comes back as bytes, not decoded text.
        obj = _PlainUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # also truncated or garbage data: EOFError, ValueError, KeyError, ...
        ours = isinstance(e, pickle.UnpicklingError)
        if ours and "refused" in str(e):
            raise DataError(
                f"{p}: the pickle asks to run or build an object ({str(e)[8:]}); a verification "
                ".bin may hold only a list of image bytes and a list of bools, so it was refused "
                "without running anything"
            ) from None
        why = e if ours else f"{type(e).__name__}: {e}"
        raise DataError(
            f"{p}: not a readable pickle ({why}); expected an insightface .bin"
        ) from None
    if not (isinstance(obj, tuple | list) and len(obj) == 2):
        raise DataError(
            f"{p}: holds a {type(obj).__name__}; expected a pair (list of images, list of flags)"
        )
    bins, flags = obj
    if not isinstance(bins, list | tuple) or not isinstance(flags, list | tuple):
        raise DataError(f"{p}: expected a list of encoded images and a list of same/diff flags")
    for i, b in enumerate(bins):
        if not isinstance(b, bytes | bytearray):
            raise DataError(f"{p}: image {i} is a {type(b).__name__}; expected encoded image bytes")
    for i, f in enumerate(flags):
        if not (isinstance(f, bool) or (isinstance(f, int) and f in (0, 1))):
            raise DataError(f"{p}: flag {i} is {f!r}; expected True/False (or 1/0)")
    if len(bins) != 2 * len(flags):
        raise DataError(
            f"{p}: {len(bins)} images for {len(flags)} pairs; expected exactly two images per pair"
        )
    return [bytes(b) for b in bins], np.asarray(flags, dtype=bool)


def write_bin(
    path: str | os.PathLike[str], bins: Sequence[bytes], issame: Sequence[bool], protocol: int = 4
) -> None:
    """Write an insightface .bin (atomically): pickle of ``(list(bins), list(issame))``."""
    if len(bins) != 2 * len(issame):
        raise DataError(f"{len(bins)} images for {len(issame)} pairs; expected two per pair")
    obj = ([bytes(b) for b in bins], [bool(x) for x in issame])
    atomic_write_bytes(path, pickle.dumps(obj, protocol=protocol))


def read_bin(path: str | os.PathLike[str], name: str | None = None) -> PairBenchmark:
    """A .bin file as a :class:`PairBenchmark` named after the file stem (lfw.bin -> "lfw")."""
    bins, issame = load_bin(path)
    n = issame.shape[0]
    return PairBenchmark(
        name=name or Path(path).stem,
        images=EncodedImages(bins, str(path)),
        pairs=np.arange(2 * n).reshape(n, 2),
        issame=issame,
        # a toy file of < 10 pairs: stratified folds, as for a file that defines none
        folds=fold_ids(n, 10) if n >= 10 else None,
        source=str(path),
        fold_method="insightface .bin: 10 contiguous folds in file order",
    )


# -- LFW pairs.txt (View 2)


@dataclass(frozen=True)
class LfwPair:
    """One line of pairs.txt: two (name, image number) references, same flag, fold index."""

    name1: str
    index1: int
    name2: str
    index2: int
    issame: bool
    fold: int
    line: int


def _positive_int(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) > 0 else None


def parse_lfw_pairs(
    path: str | os.PathLike[str], headerless_folds: int | None = None
) -> list[LfwPair]:
    """Parse an LFW View 2 pairs.txt exactly: a header ``"F P"`` (F folds, P pairs per class per
    fold), then per fold P matched lines ``name i j`` and P mismatched lines ``name1 i name2 j``
    (image numbers from 1); blank lines at the end allowed. With ``headerless_folds`` a file
    without the header (RFW's) is read as that many folds of equal size.

    Raises:
        DataError: naming the first line that does not fit, or a count against the header.
    """
    p = Path(path)
    lines = read_text(p, "LFW pairs file").rstrip().splitlines()  # no trailing blank lines
    if not lines:
        raise DataError(f"{p}: empty; expected a header line 'folds pairs_per_fold'")
    head = lines[0].split()
    if len(head) == 2 and _positive_int(head[0]) and _positive_int(head[1]):
        n_folds, per, first = int(head[0]), int(head[1]), 1
    elif headerless_folds is None or len(head) not in (3, 4):
        raise DataError(
            f"{p}: line 1 is {lines[0].strip()!r}; expected the View 2 header "
            "'folds pairs_per_fold' (two positive integers, e.g. '10 300')"
        )
    elif len(lines) % (2 * headerless_folds):
        raise DataError(
            f"{p}: {len(lines)} pair lines and no 'folds pairs_per_fold' header; expected "
            f"{headerless_folds} folds of as many matched as mismatched pairs (a multiple "
            f"of {2 * headerless_folds} lines, e.g. RFW's 6000)"
        )
    else:
        n_folds, per, first = headerless_folds, len(lines) // (2 * headerless_folds), 0
    expected = n_folds * 2 * per
    out: list[LfwPair] = []
    for k, raw in enumerate(lines[first:]):
        lineno = k + first + 1
        if k >= expected:
            raise DataError(
                f"{p}: line {lineno} is beyond the {expected} pair lines the header "
                f"'{n_folds} {per}' announces; expected the file to end there"
            )
        fold, pos = divmod(k, 2 * per)
        matched = pos < per
        f = raw.split()
        kind, form, n2 = (
            ("matched", "'name i j'", 0) if matched else ("mismatched", "'name1 i name2 j'", 2)
        )
        if len(f) != (3 if matched else 4) or not _positive_int(f[1]) or not _positive_int(f[-1]):
            raise DataError(
                f"{p}: line {lineno} is {raw.strip()!r}; expected a {kind} pair {form} "
                f"(fold {fold + 1}, {kind} pair {pos % per + 1} of {per})"
            )
        out.append(LfwPair(f[0], int(f[1]), f[n2], int(f[-1]), matched, fold, lineno))
    if len(out) != expected:
        raise DataError(
            f"{p}: {len(out)} pair lines but the header '{n_folds} {per}' announces {expected} "
            f"({n_folds} folds x {per} matched + {per} mismatched)"
        )
    return out


def lfw_image_path(root: str | os.PathLike[str], name: str, index: int) -> Path:
    """``root/name/name_%04d.jpg``, LFW's layout."""
    return Path(root) / name / f"{name}_{index:04d}.jpg"


def _lfw_refs(
    pairs_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    allow_outside_root: bool,
    headerless_folds: int | None = None,
) -> tuple[list[LfwPair], list[tuple[Path, Path]]]:
    """The parsed lines of an LFW-format pairs file and the two image paths of each."""
    parsed = parse_lfw_pairs(pairs_path, headerless_folds)
    for q in parsed:
        for nm in (q.name1, q.name2):
            if not allow_outside_root and (nm in (".", "..") or "/" in nm or "\\" in nm):
                raise DataError(
                    f"{pairs_path}:{q.line}: name {nm!r} leaves the image root {root}; "
                    "expected an LFW name such as Aaron_Peirsol (one folder under --lfw-root), "
                    "or --allow-outside-root"
                )
    if not Path(root).is_dir():
        raise DataError(f"{root}: LFW image folder not found; expected root/name/name_0001.jpg")
    return parsed, [
        (lfw_image_path(root, q.name1, q.index1), lfw_image_path(root, q.name2, q.index2))
        for q in parsed
    ]


def read_lfw(
    pairs_path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    name: str = "lfw",
    allow_outside_root: bool = False,
) -> PairBenchmark:
    """LFW View 2: pairs.txt plus the image root (name/name_000i.jpg); folds from the file. A
    name that is not one folder under ``root`` (``..``, ``.``, a path separator, an absolute
    path) is refused unless ``allow_outside_root``: a pairs file must not steer reading elsewhere.
    """
    parsed, refs = _lfw_refs(pairs_path, root, allow_outside_root)
    method = f"LFW pairs.txt: the file's {parsed[-1].fold + 1} folds"
    return _file_pairs(name, refs, [q.issame for q in parsed], str(pairs_path), parsed, method)


def _file_pairs(
    name: str,
    refs: list[tuple[Path, Path]],
    issame: list[bool],
    source: str,
    parsed: list[LfwPair] | None = None,
    fold_method: str = "",
    image_group: dict[Path, str] | None = None,
) -> PairBenchmark:
    """The benchmark of the image files ``refs``: each image once (all checked to exist), the
    folds of the ``parsed`` LFW-format lines and, with ``image_group``, each image's group."""
    where = {q: k for k, q in enumerate(dict.fromkeys(q for r in refs for q in r))}
    if missing := [q for q in where if not q.is_file()]:
        raise DataError(
            f"{missing[0]}: image not found ({len(missing)} of the {len(where)} images that "
            f"{source} names are missing)"
        )
    return PairBenchmark(
        name=name,
        images=FileImages(list(where)),
        pairs=np.array([[where[a], where[b]] for a, b in refs], dtype=np.int64),
        issame=np.array(issame),
        folds=None if parsed is None else np.array([q.fold for q in parsed]),
        source=source,
        fold_method=fold_method,
        groups=None if image_group is None else np.array([image_group[q] for q in where], object),
    )


# -- RFW (Racial Faces in-the-Wild)

#: RFW's four test sets, each a group of the combined benchmark.
RFW_RACES = ("African", "Asian", "Caucasian", "Indian")


def read_rfw(
    root: str | os.PathLike[str], name: str = "rfw", allow_outside_root: bool = False
) -> PairBenchmark:
    """RFW's test layout as one benchmark with the race of each image as its group.

    ``root/txts/<Race>/<Race>_pairs.txt`` (LFW's pairs lines, header optional) and
    ``root/data/<Race>/<identity>/<identity>_000i.jpg`` for each of :data:`RFW_RACES`; pairs in
    file order, race after race; fold k is fold k of every race's file.

    Raises:
        DataError: a missing pairs file or image folder (naming the path RFW's layout expects),
            a malformed pairs line, a missing image.
    """
    base = Path(root)
    if not base.is_dir():
        raise DataError(
            f"{base}: RFW folder not found; expected txts/<Race>/<Race>_pairs.txt and "
            "data/<Race>/<identity>/<image>.jpg inside"
        )
    parsed: list[LfwPair] = []
    refs: list[tuple[Path, Path]] = []
    image_race: dict[Path, str] = {}
    for race in RFW_RACES:
        pairs_path = base / "txts" / race / f"{race}_pairs.txt"
        images = base / "data" / race
        if not pairs_path.is_file():
            raise DataError(
                f"{pairs_path}: RFW pairs file not found; expected RFW's layout with the four "
                f"races {', '.join(RFW_RACES)}: txts/<Race>/<Race>_pairs.txt"
            )
        if not images.is_dir():
            raise DataError(
                f"{images}: RFW image folder not found; expected data/<Race>/<identity>/"
                "<identity>_0001.jpg for each race"
            )
        p, r = _lfw_refs(pairs_path, images, allow_outside_root, headerless_folds=10)
        parsed += p
        refs += r
        image_race.update((q, race) for pair in r for q in pair)
    method = "RFW pairs files: each race's 10 folds (fold k = fold k of every race)"
    issame = [q.issame for q in parsed]
    return _file_pairs(name, refs, issame, str(base), parsed, method, image_race)


# -- generic pairs CSV

_TRUE = {"1", "true", "yes", "same", "y", "t"}
_FALSE = {"0", "false", "no", "different", "diff", "n", "f"}


def read_pairs_csv(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    name: str | None = None,
) -> PairBenchmark:
    """A CSV of ``path1,path2,same`` rows (header optional; ``same`` 1/0, true/false, yes/no or
    same/different; paths relative to ``root``, default the CSV's folder). No folds: the k-fold
    protocol stratifies them. Raises :class:`DataError` naming the line of the first bad row.
    """
    p = Path(path)
    base = Path(root) if root is not None else p.parent
    refs: list[tuple[Path, Path]] = []
    same: list[bool] = []
    for lineno, row, cells in csv_rows(p, "pairs CSV"):
        if lineno == 1 and [c.lower() for c in cells] == ["path1", "path2", "same"]:
            continue
        flag = cells[2].lower() if len(cells) == 3 else None
        if len(cells) != 3 or not cells[0] or not cells[1] or flag not in _TRUE | _FALSE:
            raise DataError(
                f"{p}: line {lineno} is {','.join(row)!r}; expected 'path1,path2,same' with "
                "same = 1/0 (or true/false, yes/no, same/different)"
            )
        refs.append((base / cells[0], base / cells[1]))
        same.append(flag in _TRUE)
    if not refs:
        raise DataError(f"{p}: no pairs; expected rows 'path1,path2,same'")
    return _file_pairs(name or p.stem, refs, same, str(p))


# -- synthetic held-out pairs


class SyntheticImages:
    """Images rendered on access by ``renderer.render(identity, index)``."""

    def __init__(self, renderer, refs: Sequence[tuple[int, int]]) -> None:
        self.renderer = renderer
        self.refs = list(refs)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> np.ndarray:
        identity, index = self.refs[i]
        return self.renderer.render(identity, index)


def synthetic_pairs(
    num_identities: int = 200,
    images_per_identity: int = 4,
    num_pairs: int = 2000,
    size: int = 112,
    seed: int = 0,
    first_identity: int = SYNTHETIC_HELD_OUT_START,
) -> PairBenchmark:
    """Held-out synthetic verification pairs of identities ``first_identity ...`` (never trained
    on): ``num_pairs // 2`` genuine and as many impostor pairs (``make_pairs``), interleaved."""
    from facerec.data.pairs import make_pairs
    from facerec.data.synthetic import SyntheticFaces

    renderer = SyntheticFaces(num_identities, images_per_identity, size, seed)
    refs = [
        (first_identity + i, j) for i in range(num_identities) for j in range(images_per_identity)
    ]
    labels = np.repeat(np.arange(num_identities), images_per_identity)
    idx1, idx2, issame = make_pairs(labels, max(1, num_pairs // 2), seed)
    return PairBenchmark(
        name="synthetic",
        images=SyntheticImages(renderer, refs),
        pairs=np.stack([np.asarray(idx1), np.asarray(idx2)], axis=1),
        issame=np.asarray(issame, dtype=bool),
        source=f"synthetic identities {first_identity}..{first_identity + num_identities - 1}",
    )


# -- identification folders


def read_identity_folder(
    root: str | os.PathLike[str], what: str = "image folder"
) -> tuple[list[Path], list[str]]:
    """Images in an ``identity/image`` layout: ``(paths, identity name of each)``, sorted, as
    :func:`facerec.data.folder.scan_image_folder` scans training folders."""
    paths, labels, names = scan_image_folder(root, what)
    return [Path(p) for p in paths], [names[k] for k in labels]


def read_image_tree(root: str | os.PathLike[str], what: str = "distractor folder") -> list[Path]:
    """All image files under ``root`` (any depth), sorted (see :func:`list_images`)."""
    return list_images(root, what)
