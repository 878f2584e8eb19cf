"""`facerec eval --report`: the HTML page parses, is self-contained and shows the right pairs."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from facerec.data.sources import EncodedImages, FileImages, SubsetImages
from facerec.data.synthetic import SyntheticFaces
from facerec.eval.benchmarks import read_bin, read_pairs_csv, write_bin
from facerec.eval.cli import main as eval_main
from facerec.eval.embed import score_benchmark
from facerec.eval.html_report import hardest_pairs, image_name, worst_probes
from facerec.inference import load_checkpoint_embedder

N_SHOWN = 3


def _bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)


def _make_data(root: Path) -> None:
    """mini.bin (20 pairs: one genuine and one impostor in each of insightface's 10 contiguous
    folds), pairs.csv over an image folder, gallery/probe folders."""
    faces = SyntheticFaces(16, 4, size=40, seed=5)
    ids = range(700_000, 700_016)
    bins, same = [], []
    for k in range(20):
        a, b = ids[k % 16], ids[k % 16] if k % 2 == 0 else ids[(k + 1) % 16]
        for who, idx in ((a, 0), (b, 1)):
            bins.append(cv2.imencode(".jpg", _bgr(faces.render(who, idx)))[1].tobytes())
        same.append(k % 2 == 0)
    write_bin(root / "mini.bin", bins, same)
    for i in range(5):
        d = root / "people" / f"p{i}"
        d.mkdir(parents=True)
        for j in range(2):
            cv2.imwrite(str(d / f"{j}.png"), _bgr(faces.render(ids[i], j)))
    rows = [
        f"people/p{i}/0.png,people/p{j}/1.png,{int(i == j)}" for i in range(5) for j in range(5)
    ]
    (root / "pairs.csv").write_text("path1,path2,same\n" + "\n".join(rows) + "\n")
    for folder, people, images in (("gallery", range(5), (0, 1)), ("probe", range(5), (2, 3))):
        for i in people:
            d = root / folder / f"id{i}"
            d.mkdir(parents=True)
            for j in images:
                cv2.imwrite(str(d / f"{j}.png"), _bgr(faces.render(ids[i], j)))


class _Page(HTMLParser):
    """Collects ids, <img> sources, pair cards and probe rows of the report."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.imgs: list[str] = []
        self.pairs: list[dict[str, str]] = []
        self.probes: list[dict[str, str]] = []
        self.text: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        cls = a.get("class", "").split()
        if tag == "div" and "pair" in cls:
            self.pairs.append(a | {"section": self._section()})
        if tag == "div" and "probe" in cls:
            self.probes.append(a)
        if tag not in ("img", "meta", "br"):
            self.stack.append(a.get("id", ""))

    def handle_endtag(self, tag):
        if tag not in ("img", "meta", "br") and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)

    def _section(self) -> str:
        return next((i for i in reversed(self.stack) if i.startswith("err-")), "")


def test_hardest_pairs_order():
    s = np.array([0.9, 0.1, 0.5, 0.8, 0.2, 0.7])
    y = np.array([True, True, False, False, True, False])
    gen, imp = hardest_pairs(s, y, 2)
    assert gen.tolist() == [1, 4]  # lowest genuine first
    assert imp.tolist() == [3, 5]  # highest impostor first
    gen, imp = hardest_pairs(s, y, 10)
    assert gen.tolist() == [1, 4, 0] and imp.tolist() == [3, 5, 2]


def test_image_names_see_through_wrapping_sources():
    files = FileImages(["/d/alice/1.png", "/d/bob/2.png"])
    assert image_name(files, 1) == "bob/2.png"
    assert image_name(SubsetImages(files, [1, 0]), 1) == "alice/1.png"

    class Aligned:  # as facerec.align's AlignedImages: the source it warps is ``.images``
        def __init__(self, images):
            self.images = images

        def __len__(self):
            return len(self.images)

        def __getitem__(self, i):
            return self.images[i]

    assert image_name(Aligned(EncodedImages([b"", b""], "/x/lfw.bin")), 1) == "lfw.bin #1"


def test_worst_probes_match_a_brute_force_ranking():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(30, 8)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    gl = np.repeat(np.arange(10), 3)
    p = rng.normal(size=(12, 8)).astype(np.float32)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    pl = np.r_[np.arange(10), -1, -1]
    gpaths = [f"g/id{lb}/{k}.png" for k, lb in enumerate(gl)]
    ppaths = [f"p/id{lb}/x.png" for lb in pl]
    rows, mated = worst_probes(g, gl, gpaths, p, pl, ppaths, n=4, top=3, max_elements=50)
    assert mated == 10
    sim = p[:10] @ g.T
    best = np.stack([sim[:, gl == c].max(1) for c in range(10)], 1)  # (10 probes, 10 ids)
    true = best[np.arange(10), np.arange(10)]
    rank = 1 + (best > true[:, None]).sum(1)
    want = sorted(range(10), key=lambda i: (-rank[i], true[i]))[:4]
    assert [r.probe for r in rows] == [ppaths[i] for i in want]
    for r, i in zip(rows, want, strict=True):
        assert r.rank == rank[i] and r.true_score == pytest.approx(true[i], abs=1e-6)
        assert r.identity == f"id{i}"
        top = np.argsort(-best[i], kind="stable")[:3]
        assert [m[0] for m in r.matches] == [f"id{c}" for c in top]
        assert [m[2] for m in r.matches] == pytest.approx(best[i, top].tolist(), abs=1e-6)
        j = int(np.nonzero(gl == top[0])[0][np.argmax(sim[i, gl == top[0]])])
        assert r.matches[0][1] == gpaths[j]


@pytest.fixture(scope="module")
def report(tmp_path_factory, fit_run) -> tuple[Path, Path]:
    """Run ``facerec eval --report`` on a .bin, a pairs CSV and gallery/probe folders."""
    root = tmp_path_factory.mktemp("report")
    _make_data(root)
    out = root / "eval"
    rc = eval_main(
        [
            "--checkpoint",
            str(fit_run.checkpoint),
            "--bin",
            str(root / "mini.bin"),
            "--pairs-csv",
            str(root / "pairs.csv"),
            "--gallery",
            str(root / "gallery"),
            "--probe",
            str(root / "probe"),
            "--no-flip",
            "--folds",
            "2",
            "--workers",
            "1",
            "--report",
            "--report-pairs",
            str(N_SHOWN),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    # the `facerec fit` that made the checkpoint drew its training curves in the run folder
    assert (fit_run.root / "curves.png").is_file()
    return root, out


def test_report_is_self_contained_and_shows_the_hardest_pairs(report, fit_run):
    root, out = report
    page = _Page()
    page.feed((out / "report.html").read_text())
    page.close()
    assert {"summary", "b-mini", "b-pairs", "identification"} <= page.ids
    # every image is inline (data: URI) and decodes; nothing is fetched
    assert len(page.imgs) > 0
    for src in page.imgs:
        assert src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")), src[:40]
        raw = np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8)
        assert cv2.imdecode(raw, cv2.IMREAD_COLOR) is not None
    html = (out / "report.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    # the pairs shown are the hardest ones, with their scores and file names
    emb = load_checkpoint_embedder(fit_run.checkpoint)
    model = fit_run.checkpoint.stem
    for bench, name_of in (
        (read_bin(root / "mini.bin"), lambda i: f"mini.bin #{i}"),
        (read_pairs_csv(root / "pairs.csv"), None),
    ):
        scores = score_benchmark(emb, bench.images, bench.pairs, flip=False, num_workers=1)
        gen, imp = hardest_pairs(scores, bench.issame, N_SHOWN)
        key = f"err-{bench.name}-{model}".replace(".", "_")
        shown = [p for p in page.pairs if p["section"] == key]
        assert [p["data-kind"] for p in shown] == ["genuine"] * len(gen) + ["impostor"] * len(imp)
        assert len(gen) == N_SHOWN and len(imp) == N_SHOWN
        for p, k in zip(shown, np.r_[gen, imp], strict=True):
            assert int(p["data-pair"]) == k
            assert float(p["data-score"]) == pytest.approx(scores[k], abs=2e-5)
            i, j = bench.pairs[k]
            if name_of is None:
                paths = bench.images.paths
                want = ["/".join(Path(paths[x]).parts[-2:]) for x in (i, j)]
            else:
                want = [name_of(i), name_of(j)]
            assert [p["data-file1"], p["data-file2"]] == want
            assert want[0] in page.text and want[1] in page.text  # also visible
            assert f"{scores[k]:.4f}" in page.text
    # identification: the worst-ranked probes, at most N, worst first
    ranks = [int(p["data-rank"]) for p in page.probes]
    assert 0 < len(ranks) <= N_SHOWN and ranks == sorted(ranks, reverse=True)
    assert all(Path(p["data-probe"]).is_file() for p in page.probes)


def test_report_pairs_must_not_be_negative(tmp_path, capsys):
    rc = eval_main(["--checkpoint", "x.ckpt", "--synthetic", "--report-pairs", "-1"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--report-pairs" in err[0]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    _, out = report
    shot = tmp_path / "report.png"
    cmd = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        (out / "report.html").resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (2400, 1280)
    # a rendered page: not blank, and the face thumbnails add colour (not only black on white)
    assert img.std() > 10
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    assert (hsv[..., 1] > 60).mean() > 0.01
