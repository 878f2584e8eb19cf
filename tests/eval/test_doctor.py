"""`facerec doctor` on synthetic faces with planted duplicates, label swaps, a split identity and
benchmark overlap: every planted problem is found, false positives are counted and small."""

from __future__ import annotations

import csv
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from facerec.cli import main as facerec_main
from facerec.data.datamodule import FaceDataModule
from facerec.data.synthetic import SyntheticFaces
from facerec.eval import benchmarks as bm
from facerec.eval.doctor import DoctorOptions, diagnose, exact_duplicates, near_duplicates
from facerec.eval.doctor_cli import build_parser, read_training_images, run_doctor
from facerec.eval.doctor_cli import main as doctor_main

N_IDS, PER_ID, SIZE = 30, 6, 48
#: thresholds for the pixel embedder below: distinct images of one identity reach a cosine of
#: ~0.992 (flip test on), a re-encoded copy ~0.9995
OPT = DoctorOptions(near_duplicate=0.995, mislabel_margin=0.0, split=0.9, overlap=0.995)


class PixelEmbedder:
    """A deterministic :class:`~facerec.inference.Embedder`: 12x12 area-averaged RGB, each image
    centred on its own mean. On low-difficulty synthetic faces it tells identities apart
    (nearest neighbour ~99 %) without any training."""

    input_size = (SIZE, SIZE)
    resize_mode = "resize"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        small = [cv2.resize(im, (12, 12), interpolation=cv2.INTER_AREA) for im in images]
        x = np.stack(small).reshape(len(images), -1).astype(np.float32)
        return x - x.mean(1, keepdims=True)


FIT_CONFIG = """\
trainer:
  accelerator: cpu
  devices: 1
  max_steps: 1
  precision: 32-true
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  default_root_dir: {out}
model:
  backbone:
    class_path: facerec.models.IResNet
    init_args: {{depth: 18, width: 0.25, embedding_dim: 16, input_size: [32, 32]}}
data:
  root: {root}
  include_list: {clean}
  image_size: [32, 32]
  batch_size: 8
  num_workers: 0
  val_identities: 0
"""


def _write(path: Path, rgb: np.ndarray, jpeg: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if jpeg:
        cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 97])
    else:
        cv2.imwrite(str(path), bgr)


def make_dirty_set(root: Path) -> dict:
    """30 identities x 6 faces with planted problems; returns what was planted."""
    faces = SyntheticFaces(N_IDS + 10, PER_ID, size=SIZE, seed=1, difficulty=0.2)
    data = root / "train"
    for i in range(N_IDS - 1):
        for j in range(PER_ID):
            _write(data / f"id_{i:02d}" / f"{j}.png", faces.render(i, j))
    for j in range(PER_ID):  # identity 29 split under two names
        _write(data / ("id_29a" if j < 3 else "id_29b") / f"{j}.png", faces.render(N_IDS - 1, j))
    exact = [("id_03/0.png", "id_03/dup.png"), ("id_05/1.png", "id_06/dup.png"),
             ("id_07/2.png", "id_08/dup.png")]  # fmt: skip
    for a, b in exact:
        shutil.copyfile(data / a, data / b)
    near = [("id_10/2.png", "id_10/near.jpg"), ("id_11/3.png", "id_12/near.jpg")]
    for a, b in near:
        _write(data / b, cv2.cvtColor(cv2.imread(str(data / a)), cv2.COLOR_BGR2RGB), jpeg=True)
    swaps = [("id_13/0.png", "id_14/swap13.png"), ("id_15/0.png", "id_16/swap15.png"),
             ("id_17/0.png", "id_18/swap17.png")]  # fmt: skip
    for a, b in swaps:
        (data / a).rename(data / b)
    (data / "id_09" / "broken.png").write_bytes(b"not an image")
    # a pairs CSV benchmark: one exact copy and one re-encoded copy of training images, and
    # images of 4 identities never in training
    bench = root / "bench"
    bench.mkdir()
    shutil.copyfile(data / "id_20/0.png", bench / "a.png")
    _write(bench / "b.jpg", faces.render(21, 1), jpeg=True)
    for k in range(4):
        for j in range(2):
            _write(bench / f"h{k}_{j}.png", faces.render(N_IDS + k, j))
    rows = ["a.png,h0_0.png,0", "b.jpg,h1_0.png,0"]
    rows += [f"h{k}_0.png,h{k}_1.png,1" for k in range(4)]
    (bench / "pairs.csv").write_text("path1,path2,same\n" + "\n".join(rows) + "\n")
    return {
        "root": data,
        "exact": exact,
        "near": near,
        "swaps": [(b, a.split("/")[0]) for a, b in swaps],
        "split": ("id_29a", "id_29b"),
        "overlap": {("a.png", "id_20/0.png"), ("b.jpg", "id_21/1.png")},
        "bench": bench / "pairs.csv",
    }


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> dict:
    return make_dirty_set(tmp_path_factory.mktemp("doctor"))


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_exact_and_near_duplicate_primitives():
    groups = exact_duplicates(["a", "b", "a", "c", "b", "a"])
    assert [g.tolist() for g in groups] == [[0, 2, 5], [1, 4]]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16)).astype(np.float32)
    x[7] = x[3] + 0.01 * rng.normal(size=16)  # near copy
    x[9] = x[3]  # exact copy: excluded by the hashes
    hashes = [str(i) for i in range(50)]
    hashes[9] = hashes[3]
    p = near_duplicates(x, DoctorOptions(near_duplicate=0.99, neighbours=3), hashes)
    assert sorted(zip(p.i.tolist(), p.j.tolist(), strict=True)) == [(3, 7), (7, 9)]


def test_ivf_search_finds_what_flat_finds():
    """2,000 images in 200 identities (IVF: 44 lists, nprobe 16): planted near copies and label
    swaps are found as with the exact index."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(200, 32)).astype(np.float32)
    labels = np.repeat(np.arange(200), 10)
    x = centres[labels] + 0.5 * rng.normal(size=(2000, 32)).astype(np.float32)
    x[[11, 500, 1500]] = x[[10, 900, 1900]] + 0.001  # near copies, the last two across ids
    labels[[3, 777]] = [150, 40]  # label swaps
    hashes = [str(i) for i in range(2000)]
    for kind in ("flat", "ivf"):
        opt = DoctorOptions(near_duplicate=0.999, index=kind, nprobe=16)
        d = diagnose(x, labels, 200, hashes, opt)
        pairs = set(zip(d.near.i.tolist(), d.near.j.tolist(), strict=True))
        assert pairs == {(10, 11), (500, 900), (1500, 1900)}, kind
        assert {3, 777, 500, 1500} <= set(d.mislabelled.image.tolist()), kind
        assert len(set(d.mislabelled.image.tolist()) - {3, 777, 500, 1500}) <= 2, kind


def test_doctor_finds_every_planted_problem(dirty, tmp_path):
    data = read_training_images(dirty["root"])
    bench = [bm.read_pairs_csv(dirty["bench"])]
    clean = tmp_path / "clean.txt"
    res = run_doctor(data, PixelEmbedder(), tmp_path / "out", bench, OPT, clean, num_workers=1)
    out = tmp_path / "out"
    planted: set[str] = set()  # every image involved in a planted problem

    # exact duplicates: exactly the planted groups (hashes have no false positives)
    groups: dict[str, set[str]] = {}
    for r in _read(out / "exact_duplicates.csv"):
        groups.setdefault(r["group"], set()).add(r["image"])
    assert sorted(map(sorted, groups.values())) == sorted(sorted(p) for p in dirty["exact"])
    for a, b in dirty["exact"]:
        planted |= {a, b}

    # near duplicates: the planted pairs, few others
    near = {frozenset((r["image1"], r["image2"])) for r in _read(out / "near_duplicates.csv")}
    want = {frozenset(p) for p in dirty["near"]}
    assert want <= near
    near_fp = len(near - want)
    assert near_fp <= 1, near - want
    for a, b in dirty["near"]:
        planted |= {a, b}

    # label swaps: each found, with the identity it came from as the likely one
    mis = {r["image"]: r for r in _read(out / "mislabelled.csv")}
    for img, true_id in dirty["swaps"]:
        assert img in mis, (img, sorted(mis))
        assert mis[img]["likely_identity"] == true_id
        assert mis[img]["identity"] == img.split("/")[0]
        assert float(mis[img]["margin"]) > 0
        planted.add(img)
    # copies planted in another identity's folder are label errors too, and so is an image of
    # the split identity that is closer to its other half; anything else is a false positive
    halves = set(dirty["split"])
    mis_fp = [m for m, r in mis.items() if m not in planted
              and not {r["identity"], r["likely_identity"]} == halves]  # fmt: skip
    assert len(mis_fp) <= 2, mis_fp

    # the split identity
    rows = _read(out / "split_identities.csv")
    split = {frozenset((r["identity1"], r["identity2"])) for r in rows}
    assert frozenset(dirty["split"]) in split
    assert len(split) - 1 <= 1, split

    # benchmark overlap: both copies, the exact one marked, none of the unseen identities
    ov = {(Path(r["benchmark_image"]).name, r["training_image"]): r
          for r in _read(out / "benchmark_overlap.csv")}  # fmt: skip
    assert set(ov) == dirty["overlap"]
    assert ov[("a.png", "id_20/0.png")]["exact_copy"] == "1"
    assert ov[("b.jpg", "id_21/1.png")]["exact_copy"] == "0"

    s = res.summary
    assert s["exact_duplicate_groups"] == 3 and s["benchmark_overlap"]["pairs"]["images"] == 2
    print(
        f"false positives: near duplicates {near_fp}, mislabelled {len(mis_fp)} {mis_fp}, "
        f"split {len(split) - 1}"
    )

    assert [r["image"] for r in _read(out / "unreadable.csv")] == ["id_09/broken.png"]

    # the clean list keeps everything else and trains through data.include_list
    lines = [ln for ln in clean.read_text().splitlines() if not ln.startswith("#")]
    dropped = {data.keys[i] for i in res.drop}
    assert set(lines) == set(data.keys) - dropped
    for img, _ in dirty["swaps"]:
        assert img not in lines
    assert "id_20/0.png" not in lines and "id_21/1.png" not in lines
    assert "id_09/broken.png" not in lines
    assert sum(("id_03/0.png" in lines, "id_03/dup.png" in lines)) == 1  # one copy kept
    assert "id_05/1.png" not in lines and "id_06/dup.png" not in lines  # across: both go
    assert len(lines) >= len(data) - 20

    # the HTML page parses and shows each section with inline thumbnails
    class Page(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.ids: set[str] = set()
            self.imgs: list[str] = []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if "id" in a:
                self.ids.add(a["id"])
            if tag == "img":
                self.imgs.append(a["src"] or "")

    page = Page()
    page.feed((out / "doctor.html").read_text())
    assert {"summary", "exact", "near", "mislabelled", "split", "overlap"} <= page.ids
    assert page.imgs and all(s.startswith("data:image/jpeg;base64,") for s in page.imgs)


def test_clean_list_is_what_the_datamodule_trains_on(dirty, tmp_path):
    data = read_training_images(dirty["root"])
    clean = tmp_path / "c.txt"
    res = run_doctor(data, PixelEmbedder(), tmp_path / "o", None, OPT, clean, num_workers=1)
    dm = FaceDataModule(
        root=str(dirty["root"]),
        include_list=str(tmp_path / "c.txt"),
        image_size=(SIZE, SIZE),
        val_identities=0,
        batch_size=8,
        num_workers=0,
    )
    dm.setup("fit")
    assert len(dm.train_set) == len(res.keep) < len(data)
    x, y = next(iter(dm.train_dataloader()))[:2]
    assert x.shape[0] == 8 and int(y.max()) < dm.num_classes
    # and `facerec fit` trains from it
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(FIT_CONFIG.format(root=dirty["root"], clean=clean, out=tmp_path / "run"))
    assert facerec_main(["fit", "--config", str(cfg)]) == 0
    (tmp_path / "bad.txt").write_text("id_00/0.png\nnot/there.png\n")
    bad = FaceDataModule(root=str(dirty["root"]), include_list=str(tmp_path / "bad.txt"))
    with pytest.raises(Exception, match=r"include_list .* not/there.png"):
        _ = bad.num_classes


def test_doctor_on_recordio(dirty, tmp_path):
    """The same set packed as insightface RecordIO: the same findings, sample indices in the
    clean list, and the DataModule trains on exactly those samples."""
    from facerec.data.folder import scan_image_folder
    from facerec.data.recordio import pack_folder

    folder = tmp_path / "folder"
    shutil.copytree(dirty["root"], folder)
    (folder / "id_09" / "broken.png").unlink()  # packing refuses corrupt images
    pack_folder(folder, tmp_path / "rec", num_workers=1)  # PNG/JPEG stored byte for byte
    paths, _, _ = scan_image_folder(folder)  # the packing order
    name = [Path(q).relative_to(folder).as_posix() for q in paths]
    data = read_training_images(tmp_path / "rec")
    assert data.kind == "recordio" and len(data) == len(paths)
    clean = tmp_path / "clean.txt"
    res = run_doctor(data, PixelEmbedder(), tmp_path / "o", None, OPT, clean, num_workers=1)
    groups = sorted(sorted(name[int(data.keys[i])] for i in g) for g in
                    [[res.rows[n] for n in grp] for grp in res.diagnosis.exact])  # fmt: skip
    assert groups == sorted(sorted(q) for q in dirty["exact"])
    flagged = {name[int(res.rows[n])] for n in res.diagnosis.mislabelled.image.tolist()}
    assert {img for img, _ in dirty["swaps"]} <= flagged
    keep = [int(x) for x in clean.read_text().splitlines() if not x.startswith("#")]
    assert keep == res.keep
    dm = FaceDataModule(root=str(tmp_path / "rec"), include_list=str(clean), val_identities=0,
                        image_size=(SIZE, SIZE), batch_size=8, num_workers=0)  # fmt: skip
    dm.setup("fit")
    assert len(dm.train_set) == len(keep)
    want = data.labels[keep]
    assert np.array_equal(np.asarray(dm.train_set.labels), want)
    for k in (0, 3, len(keep) - 1):  # sample k is record keep[k]
        assert np.array_equal(dm.train_set.load(k), data.images[keep[k]])


def test_doctor_command_with_a_checkpoint(dirty, fit_run, tmp_path, capsys):
    clean = tmp_path / "clean.txt"
    args = ["--data", str(dirty["root"]), "--checkpoint", str(fit_run.checkpoint),
            "--pairs-csv", str(dirty["bench"]), "--out", str(tmp_path / "o"),
            "--write-clean-list", str(clean), "--workers", "1", "--no-progress"]  # fmt: skip
    rc = doctor_main(args)
    assert rc == 0
    text = capsys.readouterr().out
    assert "exact duplicate groups   3" in text and "overlap with pairs" in text
    for f in ("exact_duplicates", "near_duplicates", "mislabelled", "split_identities",
              "benchmark_overlap", "unreadable"):  # fmt: skip
        assert (tmp_path / "o" / f"{f}.csv").is_file()
    assert (tmp_path / "o" / "doctor.html").is_file() and clean.is_file()


def test_doctor_bad_input_is_one_line(tmp_path, capsys):
    rc = doctor_main(["--data", str(tmp_path / "missing"), "--checkpoint", "x.ckpt"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "missing" in err[0]
    rc = doctor_main(["--data", str(tmp_path), "--checkpoint", "x.ckpt", "--split", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "split" in err[0]


def test_doctor_outputs_inside_an_input_refused_before_any_work(tmp_path, capsys):
    from facerec.data.synthetic import write_synthetic_folder

    data = write_synthetic_folder(tmp_path / "data", 2, 2, size=32)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    img = next(data.rglob("*.png"))
    bench = tmp_path / "bench.csv"
    bench.write_text("a.png,b.png,1\n")
    model = tmp_path / "m.ckpt"  # never read: the outputs are refused first
    base = ["--data", str(data), "--checkpoint", str(model), "--no-progress"]
    cases = [
        (["--out", str(tmp_path / "o"), "--write-clean-list", str(img)], "inside --data"),
        (["--out", str(data / "report")], "--out"),
        (["--out", str(data)], "the same as --data"),
        (["--out", str(model)], "the same as --checkpoint"),
        (["--out", str(tmp_path / "o"), "--pairs-csv", str(bench), "--write-clean-list",
          str(bench)], "--pairs-csv"),
        (["--out", str(tmp_path / "o"), "--write-clean-list", str(tmp_path / "o" / "summary.json")],
         "one of the files the doctor writes"),
    ]  # fmt: skip
    for extra, words in cases:
        assert doctor_main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert bench.read_text() == "a.png,b.png,1\n" and not (tmp_path / "o").exists()
    assert build_parser().get_default("device") == "auto"


def test_doctor_quality_column(dirty, tmp_path):
    """quality.csv: one row per readable image, worst first, the scorer's own numbers; the
    summary gives its range and the worst images."""
    from facerec.metrics.quality import QualityScorer

    data = read_training_images(dirty["root"])
    res = run_doctor(
        data,
        PixelEmbedder(),
        tmp_path / "out",
        None,
        OPT,
        num_workers=1,
        quality="stability",
        quality_passes=3,
    )
    rows = _read(tmp_path / "out" / "quality.csv")
    assert len(rows) == res.rows.size and [int(r["rank"]) for r in rows] == list(
        range(1, len(rows) + 1)
    )
    q = np.array([float(r["quality"]) for r in rows])
    assert np.all(np.diff(q) >= 0)
    scorer = QualityScorer(PixelEmbedder(), "stability", passes=3)
    first = data.keys.index(rows[0]["image"])
    img = cv2.resize(data.images[first], (SIZE, SIZE))
    assert scorer(img[None])[0, 0] == pytest.approx(q[0], abs=1e-5)
    s = res.summary["quality"]
    assert s["method"] == "stability" and s["min"] == pytest.approx(q[0], abs=1e-5)
    assert s["worst"][0] == rows[0]["image"]


def test_a_benchmark_named_train_shows_its_own_thumbnails(dirty, tmp_path):
    """doctor.html caches thumbnails per image source: a benchmark called "train" (train.csv)
    whose overlapping image has the index of its training copy shows each image's own."""
    import dataclasses

    from facerec.data.image import fit_to_size
    from facerec.data.sources import FileImages
    from facerec.eval.doctor_cli import THUMB
    from facerec.eval.html_report import image_data_uri

    data = read_training_images(dirty["root"])
    b = bm.read_pairs_csv(dirty["bench"])
    names = [Path(p).name for p in b.images.paths]
    pad = data.keys.index("id_21/1.png") - names.index("b.jpg")  # b.jpg at its copy's index
    paths = [b.images.paths[names.index("h0_0.png")]] * pad + b.images.paths
    b = dataclasses.replace(b, name="train", images=FileImages(paths), pairs=b.pairs + pad)
    run_doctor(data, PixelEmbedder(), tmp_path / "o", [b], OPT, None, num_workers=1)
    page = (tmp_path / "o" / "doctor.html").read_text()
    shown = re.findall(r'<img src="([^"]*)" alt="([^"]*)"', page[page.index('id="overlap"') :])
    by_key = {k: (data.images, i) for i, k in enumerate(data.keys)}
    by_key |= {f"bench/{n}": (b.images, pad + q) for q, n in enumerate(names)}
    assert len(shown) == 4  # a.png and b.jpg, each beside its training copy
    for src, alt in shown:
        images, i = by_key[alt]
        assert src == image_data_uri(fit_to_size(images[i], (THUMB, THUMB), "resize")), alt


def test_overlap_training_identities_are_those_of_the_matched_images(dirty, tmp_path):
    """summary.json counts the identities of the training images a benchmark matches, also when
    an unreadable image (id_09/broken.png) comes before them."""
    bench = tmp_path / "bench"
    bench.mkdir()
    shutil.copyfile(dirty["root"] / "id_19" / "5.png", bench / "a.png")
    shutil.copyfile(dirty["root"] / "id_20" / "0.png", bench / "b.png")
    (bench / "pairs.csv").write_text("path1,path2,same\na.png,b.png,0\n")
    data = read_training_images(dirty["root"])
    b = bm.read_pairs_csv(bench / "pairs.csv")
    res = run_doctor(data, PixelEmbedder(), tmp_path / "o", [b], OPT, None, num_workers=1)
    overlap = res.summary["benchmark_overlap"]["pairs"]
    assert overlap == {"images": 2, "exact_copies": 2, "training_identities": 2}
