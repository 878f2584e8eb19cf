"""Benchmark readers: .bin (Python 2 and 3, malicious), LFW pairs.txt, pairs CSV, synthetic."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from facerec.data.image import decode_image
from facerec.errors import DataError
from facerec.eval import benchmarks as bm


def jpeg(seed: int, size: int = 20) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def py2_pickle(bins: list[bytes], flags: list[bool]) -> bytes:
    """The bytes Python 2's cPickle writes for ``(bins, flags)`` at protocol 2.

    Python 2 ``str`` is SHORT_BINSTRING / BINSTRING (no encoding), bools NEWTRUE/NEWFALSE, and
    every container is memoised with BINPUT.
    """
    out = bytearray(b"\x80\x02")  # PROTO 2
    memo = 0

    def put() -> None:
        nonlocal memo
        out.extend(b"q" + bytes([memo]))  # BINPUT
        memo += 1

    out += b"]"  # EMPTY_LIST
    put()
    out += b"("  # MARK
    for b in bins:
        if len(b) < 256:
            out += b"U" + bytes([len(b)]) + b  # SHORT_BINSTRING
        else:
            out += b"T" + struct.pack("<i", len(b)) + b  # BINSTRING
        put()
    out += b"e"  # APPENDS
    out += b"]"
    put()
    out += b"("
    for f in flags:
        out += b"\x88" if f else b"\x89"  # NEWTRUE / NEWFALSE
    out += b"e"
    out += b"\x86"  # TUPLE2
    put()
    out += b"."  # STOP
    return bytes(out)


def py2_protocol0_pickle(bins: list[bytes], flags: list[bool]) -> bytes:
    """Python 2's default protocol 0: STRING with repr escapes, INT 01/00 for bools."""
    out = b"((l"
    for b in bins:
        out += b"S" + repr(b)[1:].encode("ascii") + b"\n" + b"a"
    out += b"(l"
    for f in flags:
        out += b"I0" + (b"1" if f else b"0") + b"\na"
    return out + b"t."


@pytest.fixture
def bins_and_flags():
    bins = [jpeg(i, 20 if i % 3 else 40) for i in range(8)]  # some BINSTRING (>255 bytes)
    return bins, [True, False, True, False]


def check_bench(bench: bm.PairBenchmark, bins, flags):
    assert bench.num_pairs == 4
    np.testing.assert_array_equal(bench.issame, flags)
    np.testing.assert_array_equal(bench.pairs, [[0, 1], [2, 3], [4, 5], [6, 7]])
    assert len(bench.images) == 8
    for i in range(8):
        np.testing.assert_array_equal(bench.images[i], decode_image(bins[i]))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_bin_round_trip_python3(tmp_path, bins_and_flags, protocol):
    bins, flags = bins_and_flags
    path = tmp_path / "lfw.bin"
    bm.write_bin(path, bins, flags, protocol=protocol)
    got_bins, got_flags = bm.load_bin(path)
    assert got_bins == bins  # byte for byte
    assert got_flags.dtype == bool and got_flags.tolist() == flags
    bench = bm.read_bin(path)
    assert bench.name == "lfw"
    check_bench(bench, bins, flags)


@pytest.mark.parametrize("writer", [py2_pickle, py2_protocol0_pickle])
def test_bin_written_by_python2_reads_back_exactly(tmp_path, bins_and_flags, writer):
    bins, flags = bins_and_flags
    path = tmp_path / "cfp_fp.bin"
    path.write_bytes(writer(bins, flags))
    # sanity: this really is the Python 2 format (plain loading decodes str as ASCII and fails)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())
    got_bins, got_flags = bm.load_bin(path)
    assert got_bins == bins
    assert got_flags.tolist() == flags
    check_bench(bm.read_bin(path), bins, flags)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_malicious_pickle_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    for payload in (
        _Evil(marker),  # the whole file
        ([jpeg(0), _Evil(marker)], [True]),  # hidden among the images
        ([jpeg(0), jpeg(1)], [_EvalEvil()]),  # among the flags
    ):
        path = tmp_path / "evil.bin"
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
        with pytest.raises(DataError, match="refused without running anything") as err:
            bm.load_bin(path)
        assert "evil.bin" in str(err.value)
        assert "system" in str(err.value) or "eval" in str(err.value)
        assert not marker.exists()


def test_bad_bin_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        bm.load_bin(tmp_path / "missing.bin")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 this is a jpeg, not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        bm.load_bin(garbage)
    truncated = tmp_path / "trunc.bin"
    truncated.write_bytes(pickle.dumps(([jpeg(0), jpeg(1)], [True]))[:-20])
    with pytest.raises(DataError, match="not a readable pickle"):
        bm.load_bin(truncated)
    cases = {
        "dict.bin": ({"a": 1}, "expected a pair"),
        "count.bin": (([jpeg(0), jpeg(1), jpeg(2)], [True]), "two images per pair"),
        "str.bin": ((["x", "y"], [True]), "expected encoded image bytes"),
        "flag.bin": (([jpeg(0), jpeg(1)], [2]), "expected True/False"),
    }
    for name, (obj, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(pickle.dumps(obj, protocol=4))
        with pytest.raises(DataError, match=msg):
            bm.load_bin(p)


# ------------------------------------------------------------------------------------- LFW


def write_lfw(root: Path, pairs_text: str, names: dict[str, int]) -> None:
    for k, (name, count) in enumerate(names.items()):
        (root / name).mkdir(parents=True)
        for i in range(1, count + 1):
            size = 30 if k % 2 else 40
            img = np.full((size, size + 6, 3), 10 * k + i, np.uint8)
            cv2.imwrite(str(bm.lfw_image_path(root, name, i)), img)


PAIRS_TXT = """2 2
Alice 1 2
Bob 1 3
Alice 1 Bob 2
Carol 1 Alice 2
Carol 1 2
Alice 2 3
Bob 3 Carol 2
Bob 1 Alice 3
"""


def test_lfw_pairs_and_images(tmp_path):
    (tmp_path / "pairs.txt").write_text(PAIRS_TXT)
    write_lfw(tmp_path / "lfw", PAIRS_TXT, {"Alice": 3, "Bob": 3, "Carol": 2})
    bench = bm.read_lfw(tmp_path / "pairs.txt", tmp_path / "lfw")
    assert bench.num_pairs == 8
    np.testing.assert_array_equal(bench.issame, [1, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(bench.folds, [0, 0, 0, 0, 1, 1, 1, 1])
    paths = bench.images.paths
    assert len(paths) == len(set(paths)) == 8  # each image once
    first = [Path(paths[i]).name for i in bench.pairs[0]]
    assert first == ["Alice_0001.jpg", "Alice_0002.jpg"]
    mismatched = [Path(paths[i]).name for i in bench.pairs[3]]
    assert mismatched == ["Carol_0001.jpg", "Alice_0002.jpg"]
    assert bench.images[0].shape[2] == 3


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (PAIRS_TXT.replace("Bob 1 3", "Bob 1 x"), r"line 3 .*expected a matched pair"),
        (PAIRS_TXT.replace("Carol 1 Alice 2", "Carol 1 2"), r"line 5 .*mismatched pair"),
        (PAIRS_TXT.replace("Alice 2 3", "Alice 2 3 4"), r"line 7 "),
        (PAIRS_TXT.replace("Alice 1 2\n", "Alice 0 2\n", 1), r"line 2 "),
        (PAIRS_TXT.replace("2 2\n", "10\n"), r"line 1 .*'folds pairs_per_fold'"),
        (PAIRS_TXT + "Dan 1 2\n", r"line 10 is beyond"),
        ("\n".join(PAIRS_TXT.splitlines()[:-1]), r"7 pair lines .* announces 8"),
    ],
)
def test_bad_pairs_txt_names_the_line(tmp_path, text, pattern):
    p = tmp_path / "pairs.txt"
    p.write_text(text)
    with pytest.raises(DataError, match=pattern) as err:
        bm.parse_lfw_pairs(p)
    assert str(p) in str(err.value)


def test_lfw_missing_image_is_named(tmp_path):
    (tmp_path / "pairs.txt").write_text(PAIRS_TXT)
    write_lfw(tmp_path / "lfw", PAIRS_TXT, {"Alice": 3, "Bob": 3, "Carol": 1})
    with pytest.raises(DataError, match=r"Carol_0002\.jpg: image not found \(1 of the 8"):
        bm.read_lfw(tmp_path / "pairs.txt", tmp_path / "lfw")


# ------------------------------------------------------------------------------------- CSV


def test_pairs_csv(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    p = tmp_path / "pairs.csv"
    p.write_text("path1,path2,same\na.png,b.png,1\na.png, c.png ,false\n\nb.png,c.png,same\n")
    bench = bm.read_pairs_csv(p)
    assert bench.name == "pairs" and bench.num_pairs == 3
    np.testing.assert_array_equal(bench.issame, [True, False, True])
    assert [Path(q).name for q in bench.images.paths] == ["a.png", "b.png", "c.png"]
    np.testing.assert_array_equal(bench.pairs, [[0, 1], [0, 2], [1, 2]])
    p.write_text("a.png,b.png,1\na.png,c.png,maybe\n")
    with pytest.raises(DataError, match="line 2"):
        bm.read_pairs_csv(p)
    p.write_text("a.png,b.png,1\na.png,zzz.png,0\n")
    with pytest.raises(DataError, match=r"zzz\.png: image not found"):
        bm.read_pairs_csv(p)


def test_identity_folders(tmp_path):
    for ident, n in (("x", 2), ("y", 1)):
        (tmp_path / "g" / ident).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / "g" / ident / f"{i}.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "g" / "y" / "notes.txt").write_text("not an image")
    paths, names = bm.read_identity_folder(tmp_path / "g")
    assert names == ["x", "x", "y"] and all(q.suffix == ".png" for q in paths)
    assert len(bm.read_image_tree(tmp_path / "g")) == 3
    # the training folders' rules: hidden names skipped, an empty identity refused
    (tmp_path / "g" / ".cache").mkdir()
    cv2.imwrite(str(tmp_path / "g" / ".cache" / "0.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "g" / "x" / ".0.png"), np.zeros((4, 4, 3), np.uint8))
    assert bm.read_identity_folder(tmp_path / "g") == (paths, names)
    assert len(bm.read_image_tree(tmp_path / "g")) == 3
    (tmp_path / "g" / "z").mkdir()
    with pytest.raises(DataError, match="z has no image files"):
        bm.read_identity_folder(tmp_path / "g")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no identity sub-folders"):
        bm.read_identity_folder(tmp_path / "empty")
    with pytest.raises(DataError, match="holds no image files"):
        bm.read_image_tree(tmp_path / "empty")
    with pytest.raises(DataError, match="gallery folder .*nope does not exist"):
        bm.read_identity_folder(tmp_path / "nope", "gallery folder")


def test_synthetic_pairs_are_held_out_balanced_and_deterministic():
    a = bm.synthetic_pairs(num_identities=10, images_per_identity=3, num_pairs=40, size=32)
    b = bm.synthetic_pairs(num_identities=10, images_per_identity=3, num_pairs=40, size=32)
    np.testing.assert_array_equal(a.pairs, b.pairs)
    assert a.num_pairs == 40 and a.issame.sum() == 20
    ids = [a.images.refs[i][0] for i in a.pairs.ravel()]
    assert min(ids) >= bm.SYNTHETIC_HELD_OUT_START
    for (i, j), same in zip(a.pairs, a.issame, strict=True):
        assert (a.images.refs[i][0] == a.images.refs[j][0]) == same
        assert i != j
    img = a.images[int(a.pairs[0, 0])]
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, b.images[int(b.pairs[0, 0])])
