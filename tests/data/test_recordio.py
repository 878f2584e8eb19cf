"""insightface RecordIO (train.rec / train.idx / property) read and written without MXNet."""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from facerec.data import recordio
from facerec.data.recordio import (
    MAGIC,
    IRHeader,
    RecordIODataset,
    RecordIOReader,
    RecordIOWriter,
    build_index,
    pack,
    pack_folder,
    read_index,
    unpack,
)
from facerec.errors import DataError

MAGIC_BYTES = struct.pack("<I", MAGIC)

# identity -> [(file name, height, width)]; ids sort as alice, bob, carol, dave
LAYOUT = {
    "alice": [("a0.png", 12, 10), ("a1.png", 12, 10), ("a2.jpg", 16, 16)],
    "bob": [("b0.png", 9, 14)],
    "carol": [("c0.png", 12, 10), ("c1.bmp", 8, 8), ("c2.png", 12, 10), ("c3.png", 5, 7)],
    "dave": [("d0.png", 12, 10), ("d1.png", 20, 3)],
}


def dmlc_write_record(buf: bytes) -> bytes:
    """Line-by-line port of dmlc-core's RecordIOWriter::WriteRecord (the reference)."""
    out = bytearray()
    n = len(buf)
    lower_align, upper_align = (n >> 2) << 2, ((n + 3) >> 2) << 2
    dptr = 0
    for i in range(0, lower_align, 4):
        if buf[i : i + 4] == MAGIC_BYTES:
            lrec = ((1 if dptr == 0 else 2) << 29) | (i - dptr)
            out += MAGIC_BYTES + struct.pack("<I", lrec) + buf[dptr:i]
            dptr = i + 4
    lrec = ((3 if dptr != 0 else 0) << 29) | (n - dptr)
    out += MAGIC_BYTES + struct.pack("<I", lrec) + buf[dptr:]
    out += b"\0" * (upper_align - n)
    return bytes(out)


def dmlc_read_all(data: bytes) -> list[bytes]:
    """Port of dmlc-core's RecordIOReader::ReadRecord applied until the end of the stream."""
    records, pos = [], 0
    while pos < len(data):
        rec = b""
        while True:
            magic, lrec = struct.unpack_from("<II", data, pos)
            assert magic == MAGIC
            cflag, length = (lrec >> 29) & 7, lrec & ((1 << 29) - 1)
            rec += data[pos + 8 : pos + 8 + length]
            pos += 8 + ((length + 3) >> 2 << 2)
            if cflag in (0, 3):
                break
            rec += MAGIC_BYTES
        records.append(rec)
    return records


def make_folder(root: Path) -> dict[str, np.ndarray]:
    """Write LAYOUT with random pixels; returns file path -> RGB pixels written."""
    rng = np.random.default_rng(0)
    pixels = {}
    for name, files in LAYOUT.items():
        (root / name).mkdir(parents=True)
        for fname, h, w in files:
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            path = root / name / fname
            assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            pixels[str(path)] = rgb
    (root / "notes.txt").write_text("not an identity")  # loose files in root are ignored
    (root / "bob" / "readme.txt").write_text("not an image")
    return pixels


def expected_samples(root: Path) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for label, name in enumerate(sorted(LAYOUT)):
        for fname, _, _ in sorted(LAYOUT[name]):
            paths.append(root / name / fname)
            labels.append(label)
    return paths, labels


@pytest.fixture()
def packed(tmp_path: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    root = tmp_path / "faces"
    pixels = make_folder(root)
    out = tmp_path / "rec"
    pack_folder(root, out, num_workers=2)
    return root, out, pixels


# -- payload format ------------------------------------------------------------------------------


def test_pack_unpack_match_mxnet_layout() -> None:
    # scalar label: flag 0, label in the header ('IfQQ', 24 bytes)
    assert pack(IRHeader(5, 3.0, 7, 9), b"img") == struct.pack("<IfQQ", 0, 3.0, 7, 9) + b"img"
    # label vector: flag = its length, label field 0, float32 labels before the image
    payload = pack(IRHeader(0, [11.0, 12.5], 0, 0), b"xy")
    assert payload == struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", 11.0, 12.5) + b"xy"
    header, rest = unpack(payload)
    assert header.flag == 2 and rest == b"xy"
    np.testing.assert_array_equal(header.label, np.float32([11.0, 12.5]))
    with pytest.raises(DataError, match="shorter than the 24-byte IRHeader"):
        unpack(b"\0" * 10, source="x.rec")
    with pytest.raises(DataError, match="says 3 labels"):
        unpack(struct.pack("<IfQQ", 3, 0.0, 0, 0) + b"\0" * 8)


# -- round trip of an image folder ---------------------------------------------------------------


def test_pack_folder_round_trip(packed: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    root, out, pixels = packed
    paths, labels = expected_samples(root)
    n, c = len(paths), len(LAYOUT)
    ds = RecordIODataset(out)
    assert len(ds) == n
    assert ds.num_classes == c
    assert (out / "property").read_text() == f"{c},12,10\n"  # most common size
    assert ds.image_size == (12, 10)
    np.testing.assert_array_equal(ds.keys, np.arange(1, n + 1))
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.int64
    for i, (path, label) in enumerate(zip(paths, labels, strict=True)):
        image, got_label = ds[i]
        assert got_label == label
        assert image.dtype == np.uint8 and image.shape == pixels[str(path)].shape
        if path.suffix == ".png":  # lossless: the exact pixels come back
            np.testing.assert_array_equal(image, pixels[str(path)])
        header, data = ds.read_record(i)
        assert header.flag == 0 and header.id == i + 1 and header.label == label
        if path.suffix in (".png", ".jpg"):  # JPEG and PNG are stored byte for byte
            assert data == path.read_bytes()
        else:  # the BMP is re-encoded as JPEG, quality 95
            bgr = cv2.cvtColor(pixels[str(path)], cv2.COLOR_RGB2BGR)
            jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
            assert data == jpeg
    assert ds[-1][1] == labels[-1]
    np.testing.assert_array_equal(ds.load_image(1), ds[1][0])  # a loader for FaceDataset
    assert ds.describe(1) == f"{out / 'train.rec'} (key 2, offset {ds.reader.offset_of(2)})"
    with pytest.raises(IndexError):
        ds[n]

    # insightface layout: header record 0, identity key ranges after the images
    reader = RecordIOReader(out / "train.rec")
    header0, rest = unpack(reader.read(0))
    assert header0.flag == 2 and rest == b""
    np.testing.assert_array_equal(header0.label, [n + 1, n + 1 + c])
    starts = np.searchsorted(labels, np.arange(c)) + 1
    ends = np.searchsorted(labels, np.arange(c), side="right") + 1
    np.testing.assert_array_equal(ds.identity_ranges, np.stack([starts, ends], 1))
    np.testing.assert_array_equal(ds.identity_ranges, [[1, 4], [4, 5], [5, 9], [9, 11]])
    keys, offsets = read_index(out / "train.idx")
    np.testing.assert_array_equal(keys, np.arange(n + 1 + c))
    assert offsets[0] == 0 and np.all(np.diff(offsets) > 0) and np.all(offsets % 4 == 0)
    # the file is exactly what dmlc's writer produces for these payloads
    data = (out / "train.rec").read_bytes()
    payloads = [reader.read(int(k)) for k in keys]
    assert b"".join(dmlc_write_record(p) for p in payloads) == data
    assert dmlc_read_all(data) == payloads


def test_pack_folder_resize_and_png(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    pixels = make_folder(root)
    summary = pack_folder(root, tmp_path / "png", image_format="png", num_workers=1)
    assert summary.reencoded == summary.num_images == 10
    ds = RecordIODataset(tmp_path / "png" / "train.rec")
    paths, _ = expected_samples(root)
    for i, path in enumerate(paths):
        if path.suffix != ".jpg":  # PNG re-encoding is lossless, the BMP included
            np.testing.assert_array_equal(ds[i][0], pixels[str(path)])
    summary = pack_folder(root, tmp_path / "r", size=(6, 8), quality=90)
    assert (tmp_path / "r" / "property").read_text() == "4,6,8\n"
    ds = RecordIODataset(tmp_path / "r")
    assert {ds[i][0].shape for i in range(len(ds))} == {(6, 8, 3)}
    assert all(ds.read_record(i)[1][:3] == b"\xff\xd8\xff" for i in range(len(ds)))


def test_pack_folder_rejects_corrupt_image(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    make_folder(root)
    bad = root / "bob" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"broken\.png"):
        pack_folder(root, tmp_path / "rec")
    assert not (tmp_path / "rec" / "train.rec").exists()  # nothing half-written
    assert list((tmp_path / "rec").iterdir()) == []


# -- dmlc continuation records -------------------------------------------------------------------

MAGIC_PAYLOADS = [
    MAGIC_BYTES,  # the magic alone: two empty parts (start, end)
    MAGIC_BYTES + b"abcdefg",  # at offset 0
    b"abcd" + MAGIC_BYTES + b"efgh",  # aligned in the middle: start, end
    MAGIC_BYTES * 3 + b"z",  # start, middle, middle, end
    b"ab" + MAGIC_BYTES + b"cd",  # unaligned: not split
    b"12345678" + MAGIC_BYTES,  # at the end: empty end part
    b"abc" + MAGIC_BYTES[:3],  # a prefix of the magic only
    b"",  # empty record
]


def test_writer_splits_magic_exactly_like_dmlc(tmp_path: Path) -> None:
    rec = tmp_path / "m.rec"
    with RecordIOWriter(rec) as w:
        offsets = [w.write(k, p) for k, p in enumerate(MAGIC_PAYLOADS)]
    data = rec.read_bytes()
    assert data == b"".join(dmlc_write_record(p) for p in MAGIC_PAYLOADS)
    assert w.except_counter == 1 + 1 + 1 + 3 + 0 + 1 + 0 + 0
    # spelled out for one payload: two parts, flags 1 then 3, the magic itself dropped
    assert dmlc_write_record(b"abcd" + MAGIC_BYTES + b"ef") == (
        MAGIC_BYTES + struct.pack("<I", (1 << 29) | 4) + b"abcd"
        + MAGIC_BYTES + struct.pack("<I", (3 << 29) | 2) + b"ef\0\0"
    )  # fmt: skip
    assert (tmp_path / "m.idx").read_text() == "".join(f"{k}\t{o}\n" for k, o in enumerate(offsets))
    reader = RecordIOReader(rec)
    assert [reader.read(k) for k in range(len(MAGIC_PAYLOADS))] == MAGIC_PAYLOADS
    assert [p for _, p in reader.scan()] == MAGIC_PAYLOADS == dmlc_read_all(data)
    # an index offset that lands on a continuation part is refused, not misread
    with pytest.raises(DataError, match="continuation flag 3"):
        reader.read_at(offsets[2] + 8 + 4)


def test_image_payload_with_magic_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    # id and id2 equal to the magic put it at payload offsets 8 and 16: the IRHeader is split
    records = [
        pack(IRHeader(0, 4.0, MAGIC, MAGIC), png),
        pack(IRHeader(0, 7.0, 1, 0), png + b"\0" * (-len(png) % 4) + MAGIC_BYTES + b"tail"),
        pack(IRHeader(0, [2.0, 1.0], MAGIC, 0), png),  # insightface-style label vector
    ]
    with RecordIOWriter(tmp_path / "x.rec") as w:
        for k, p in enumerate(records):
            w.write(k, p)
    assert w.except_counter == 4
    ds = RecordIODataset(tmp_path / "x.rec")
    np.testing.assert_array_equal(ds.labels, [4, 7, 2])
    flags, labels = ds.reader.read_labels(ds.reader.offsets, count=2)
    np.testing.assert_array_equal(flags, [0, 0, 2])
    np.testing.assert_array_equal(labels, [[4, np.nan], [7, np.nan], [2, 1]])
    for i in range(3):
        image, label = ds[i]
        np.testing.assert_array_equal(image, rgb)
        assert label == [4, 7, 2][i]
        assert ds.reader.read(i) == records[i]


# -- labels without decoding ---------------------------------------------------------------------


def test_labels_read_headers_only(
    packed: tuple[Path, Path, dict[str, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, out, _ = packed
    _, labels = expected_samples(root)

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("labels must not decode images")

    monkeypatch.setattr(recordio.dataset, "decode_image", no_decoding)
    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    ds = RecordIODataset(out)
    np.testing.assert_array_equal(ds.labels, labels)
    # and only headers are read: the vectorised path matches a record-by-record unpack
    reader = ds.reader
    manual = [unpack(reader.read(int(k)))[0].label for k in ds.keys]
    np.testing.assert_array_equal(ds.labels, np.asarray(manual, dtype=np.int64))


def test_plain_im2rec_file_without_header(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(5)]
    labels = [3, 0, 3, 1, 5]
    keys = [0, 10, 4, 7, 2]  # im2rec keys need not be contiguous; samples follow the idx order
    with RecordIOWriter(tmp_path / "plain.rec") as w:
        for k, img, lab in zip(keys, images, labels, strict=True):
            png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
            w.write(k, pack(IRHeader(0, float(lab), k, 0), png))
    ds = RecordIODataset(tmp_path / "plain.rec")
    assert len(ds) == 5 and ds.identity_ranges is None and ds.image_size is None
    np.testing.assert_array_equal(ds.keys, keys)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.num_classes == 6  # no property file: max label + 1
    for i in range(5):
        np.testing.assert_array_equal(ds[i][0], images[i])
        assert ds[i][1] == labels[i]
    (tmp_path / "property").write_text("9,6,5")
    assert RecordIODataset(tmp_path / "plain.rec").num_classes == 9
    # a record whose bytes are not an image: the error names the file and the key
    with RecordIOWriter(tmp_path / "bad.rec") as w:
        w.write(0, pack(IRHeader(0, 1.0, 0, 0), b"not an image"))
    ds = RecordIODataset(tmp_path / "bad.rec")
    assert ds.labels.tolist() == [1]
    with pytest.raises(DataError, match=r"bad\.rec \(key 0, offset 0\): not a decodable image"):
        ds[0]


def test_build_index_rebuilds_idx(packed: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    _, out, _ = packed
    original = (out / "train.idx").read_text()
    (out / "train.idx").write_text("garbage\n")
    assert build_index(out / "train.rec") == 1 + 10 + 4
    assert (out / "train.idx").read_text() == original


# -- many DataLoader workers ---------------------------------------------------------------------


class _Indexed(Dataset):
    """(index, label, pixel checksum, reader opened by this process?) of each sample."""

    def __init__(self, ds: RecordIODataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[int, int, int, bool, int]:
        image, label = self.ds[i]
        own = self.ds.reader._pid == os.getpid()
        return i, label, int(image.astype(np.int64).sum()), own, os.getpid()


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_dataloader_workers_read_every_sample_once(
    packed: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    # fork: the workers inherit the parent's open descriptor and must not use it. (Spawned
    # workers unpickle the data set, which drops the descriptor: see the pickle test below.)
    root, out, _ = packed
    _, labels = expected_samples(root)
    ds = RecordIODataset(out)
    checksums = [int(ds[i][0].astype(np.int64).sum()) for i in range(len(ds))]
    assert ds.reader._fd is not None  # the parent holds an open descriptor before the fork
    parent_fd = ds.reader._fd
    workers = 3
    loader = DataLoader(
        _Indexed(ds),
        batch_size=2,
        shuffle=True,
        num_workers=workers,
        multiprocessing_context="fork",
        generator=torch.Generator().manual_seed(0),
    )
    seen: list[int] = []
    pids = set()
    for idx, label, checksum, own, pid in loader:
        for i, lab, cs, o in zip(
            idx.tolist(), label.tolist(), checksum.tolist(), own.tolist(), strict=True
        ):
            seen.append(i)
            assert lab == labels[i] and cs == checksums[i]
            assert o  # every worker opened the file itself
        pids.update(pid.tolist())
    assert sorted(seen) == list(range(len(ds)))
    assert os.getpid() not in pids and len(pids) == workers
    # the parent's descriptor was not disturbed by the workers
    assert ds.reader._fd == parent_fd
    assert ds[3][1] == labels[3]


def test_reader_reopens_after_fork_and_pickles_without_fd(
    packed: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    _, out, _ = packed
    ds = RecordIODataset(out)
    first = ds[0]
    fd = ds.reader._fd
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.reader._fd is None
    np.testing.assert_array_equal(clone[0][0], first[0])
    ds.reader._pid = -1  # as seen from a forked child: another process opened it
    np.testing.assert_array_equal(ds[0][0], first[0])
    assert ds.reader._fd != fd and ds.reader._pid == os.getpid()
    os.close(fd)
    ds.close()
    clone.close()


# -- corrupt and missing files -------------------------------------------------------------------


def test_bad_magic_names_file_and_offset(packed: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    _, out, _ = packed
    rec = out / "train.rec"
    ds = RecordIODataset(out)
    offset = int(ds.reader.offset_of(3))
    with open(rec, "r+b") as f:
        f.seek(offset)
        f.write(b"\xde\xad\xbe\xef")
    expected = (
        f"{rec}: bad record magic at offset {offset} (expected 0xced7230a); "
        "the file is corrupt or not RecordIO"
    )
    ds = RecordIODataset(out)
    with pytest.raises(DataError) as e:
        ds[2]
    assert str(e.value) == expected
    with pytest.raises(DataError) as e:
        _ = ds.labels
    assert str(e.value) == expected
    np.testing.assert_array_equal(ds[1][0].shape, (12, 10, 3))  # other records still read


def test_not_recordio_file(tmp_path: Path) -> None:
    rec = tmp_path / "train.rec"
    rec.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    (tmp_path / "train.idx").write_text("0\t0\n")
    with pytest.raises(DataError, match=r"bad record magic at offset 0 .*not RecordIO") as e:
        RecordIODataset(tmp_path)
    assert str(rec) in str(e.value)


def test_truncated_files(packed: tuple[Path, Path, dict[str, np.ndarray]]) -> None:
    _, out, _ = packed
    rec, idx = out / "train.rec", out / "train.idx"
    keys, offsets = read_index(idx)
    # cut inside image key 10: the range records' offsets are now past the end
    with open(rec, "r+b") as f:
        f.truncate(int(offsets[10]) + 40)
    with pytest.raises(DataError, match="past the end") as e:
        RecordIODataset(out)
    assert str(idx) in str(e.value) and str(rec) in str(e.value)
    # an index listing only records up to the cut: the last record is truncated at read time
    idx.write_text("".join(f"{k}\t{o}\n" for k, o in zip(keys[1:11], offsets[1:11], strict=True)))
    ds = RecordIODataset(out)  # no key 0: read as a plain im2rec file
    assert len(ds) == 10 and ds[8][1] == 3
    with pytest.raises(DataError, match="truncated") as e:
        ds[9]
    assert str(rec) in str(e.value)


def test_missing_and_malformed_files(
    tmp_path: Path, packed: tuple[Path, Path, dict[str, np.ndarray]]
) -> None:
    _, out, _ = packed
    with pytest.raises(DataError, match="RecordIO file not found") as e:
        RecordIODataset(tmp_path / "nowhere")
    assert "nowhere" in str(e.value)
    (out / "property").write_text("4;112;112")
    with pytest.raises(DataError, match=r"property: content is '4;112;112'; expected"):
        RecordIODataset(out)
    (out / "property").unlink()
    idx = out / "train.idx"
    text = idx.read_text()
    idx.write_text(text.replace("3\t", "3 x\t", 1))
    with pytest.raises(DataError, match=r"train.idx: line 4 is '3 x\\t\d+'; expected"):
        RecordIODataset(out)
    idx.write_text(text + "3\t0\n")
    with pytest.raises(DataError, match="key 3 appears more than once"):
        RecordIODataset(out)
    idx.unlink()
    with pytest.raises(DataError, match=r"train\.idx: index file not found"):
        RecordIODataset(out)
    # a header promising image keys that the index lacks
    idx.write_text("".join(text.splitlines(keepends=True)[:5]))
    with pytest.raises(DataError, match="key 5 is not in the index"):
        RecordIODataset(out)


# -- property checked against the labels (issue 11) ---------------------------------------------


@pytest.mark.parametrize(("said", "words"), [(2, "index past the margin head"),
                                             (9, "identities that do not exist")])  # fmt: skip
def test_property_that_disagrees_with_the_labels_is_refused(
    packed: tuple[Path, Path, dict[str, np.ndarray]], said: int, words: str
) -> None:
    from facerec.data.datamodule import FaceDataModule

    _, out, _ = packed
    (out / "property").write_text(f"{said},12,10\n")
    with pytest.raises(DataError) as e:
        RecordIODataset(out).checked_num_classes()
    msg = str(e.value)
    assert f"says {said} identities" in msg and "run 0..3 (4 distinct)" in msg and words in msg
    assert "expected the first number of property to be 4" in msg and str(out / "property") in msg
    with pytest.raises(DataError, match=f"says {said} identities"):
        FaceDataModule(root=str(out), val_identities=0).num_classes


def test_property_that_agrees_and_range_records_that_do_not(
    packed: tuple[Path, Path, dict[str, np.ndarray]],
) -> None:
    _, out, _ = packed
    ds = RecordIODataset(out)
    assert ds.checked_num_classes() == 4 == ds.num_classes
    ds._identity_ranges = ds.identity_ranges[:3]  # as if a range record were missing
    with pytest.raises(DataError, match="3 identity-range records but the labels run 0..3"):
        ds.checked_num_classes()
