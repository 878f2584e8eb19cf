"""IJB-B / IJB-C: every number against slow references written from the protocol description.

IJB data cannot be downloaded, so :func:`write_mini_ijb` writes a miniature benchmark in exactly
insightface's published layout and formats: loose crops of synthetic identities pasted under a
random similarity (their true landmarks carried along), several media per template, video media
with several frames, media shared between templates, faceness scores, the 1:1 pair list and the
1:N gallery/probe CSVs. The references below loop over images, templates, pairs and probes as
``eval_ijbc.py`` and ``ijb_1n.py`` do.
"""

from __future__ import annotations

import heapq
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facerec.align import align_face
from facerec.data.synthetic import SyntheticFaces
from facerec.errors import DataError
from facerec.eval.cli import main as eval_main
from facerec.eval.ijb import aligned_images, load_features, read_ijb
from facerec.eval.ijb_protocol import (
    IJB_FARS,
    identification_1n,
    nearest_far_tar,
    pair_scores,
    pool_templates,
    verification_1to1,
)
from facerec.metrics.verification import far_key, roc

#: README's description of the IJB keys of results.json (the one copy of that text)
_README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
_START = _README.index("With `--ijb`, each model of `results.json` gets")
IJB_JSON_KEYS_DOC = _README[_START : _README.index("\n## ", _START)]

# ------------------------------------------------------------------------ the miniature IJB


def write_mini_ijb(root: Path, name: str = "IJBC", seed: int = 0) -> dict:
    """A miniature IJB folder; returns the ground truth (subjects, renders, landmarks)."""
    rng = np.random.default_rng(seed)
    faces = SyntheticFaces(10, 10, size=48, seed=7)
    n = name.lower()
    (root / "loose_crop").mkdir(parents=True)
    (root / "meta").mkdir()
    lines_5pts, lines_tid, rows_by_template = [], [], {}
    subject_of, renders = {}, []
    row = 0
    for s in range(9):  # subject 8 appears only among the 1:N probes (non-mated)
        for k in range(3 if s < 8 else 2):
            tid = 100 * s + 7 * k + 3
            subject_of[tid] = 1000 + s
            for j in range(1 + (k + s) % 3):  # media
                mid = 5000 + 10 * s + j  # the same media id recurs in the subject's templates
                frames = 1 if j == 0 else 1 + (s + j) % 3  # j > 0: a video with 1-3 frames
                for f in range(frames):
                    img, lmk = faces.render_with_landmarks(200 + s, row)
                    a = math.radians(rng.uniform(-25, 25))
                    sc = rng.uniform(0.8, 1.2)
                    m = np.array(
                        [
                            [sc * math.cos(a), -sc * math.sin(a), rng.uniform(6, 24)],
                            [sc * math.sin(a), sc * math.cos(a), rng.uniform(6, 24)],
                        ]
                    )
                    loose = cv2.warpAffine(img, m, (80, 84), borderMode=cv2.BORDER_REFLECT)
                    pts = lmk @ m[:, :2].T + m[:, 2]
                    fname = f"{'frame' if j else 'img'}_{row:04d}_{f}.png"
                    cv2.imwrite(str(root / "loose_crop" / fname), loose[:, :, ::-1])
                    score = rng.uniform(0.3, 1.0)
                    lines_5pts.append(
                        fname
                        + " "
                        + " ".join(f"{v:.4f}" for v in pts.reshape(-1))
                        + f" {score:.6f}"
                    )
                    lines_tid.append(f"{fname} {tid} {mid}")
                    rows_by_template.setdefault(tid, []).append(fname)
                    renders.append((img, lmk))
                    row += 1
    (root / "meta" / f"{n}_name_5pts_score.txt").write_text("\n".join(lines_5pts) + "\n")
    (root / "meta" / f"{n}_face_tid_mid.txt").write_text("\n".join(lines_tid) + "\n")
    tids = sorted(subject_of)
    pairs = [(a, b) for i, a in enumerate(tids) for b in tids[i + 1 :]]
    order = rng.permutation(len(pairs))
    (root / "meta" / f"{n}_template_pair_label.txt").write_text(
        "".join(
            f"{a} {b} {int(subject_of[a] == subject_of[b])}\n" for a, b in (pairs[i] for i in order)
        )
    )
    g1, g2 = ("G1", "G2") if name == "IJBC" else ("S1", "S2")
    gallery = {g1: [100 * s + 3 for s in range(4)], g2: [100 * s + 3 for s in range(4, 8)]}
    probes = [t for t in tids if t % 100 != 3 or t // 100 == 8]
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID\n"
    files = [(f"{n}_1N_gallery_{g}.csv", v) for g, v in gallery.items()]
    for fname, ts in [*files, (f"{n}_1N_probe_mixed.csv", probes)]:
        (root / "meta" / fname).write_text(
            header
            + "".join(
                f"{t},{subject_of[t]},{im},{77 + i}\n"
                for t in ts
                for i, im in enumerate(rows_by_template[t])
            )
        )
    return {"subject_of": subject_of, "renders": renders, "gallery": gallery, "probes": probes}


# --------------------------------------------------------------------- slow references


def ref_meta(root: Path, name: str = "ijbc") -> dict:
    """The meta files parsed the plain way (as insightface: split on spaces / commas)."""
    meta = root / "meta"
    p5 = [ln.split(" ") for ln in (meta / f"{name}_name_5pts_score.txt").read_text().splitlines()]
    tm = [ln.split(" ") for ln in (meta / f"{name}_face_tid_mid.txt").read_text().splitlines()]
    pr = [
        ln.split(" ") for ln in (meta / f"{name}_template_pair_label.txt").read_text().splitlines()
    ]

    def csv(fname: str) -> list[tuple[int, int]]:
        rows = (meta / fname).read_text().splitlines()[1:]
        return [(int(r.split(",")[0]), int(r.split(",")[1])) for r in rows]

    g = ("G1", "G2") if name == "ijbc" else ("S1", "S2")
    return {
        "score": [float(r[-1]) for r in p5],
        "tid": [int(r[1]) for r in tm],
        "mid": [int(r[2]) for r in tm],
        "pairs": [(int(r[0]), int(r[1])) for r in pr],
        "label": [int(r[2]) for r in pr],
        "galleries": {k: csv(f"{name}_1N_gallery_{k}.csv") for k in g},
        "probes": csv(f"{name}_1N_probe_mixed.csv"),
    }


def ref_templates(feats, tids, mids, scores=None, normalize_images=False) -> dict[int, np.ndarray]:
    """eval_ijbc.py's image2template_feature, loop for loop (float64)."""
    f = np.asarray(feats, np.float64)
    out = {}
    for t in sorted(set(tids)):
        media: dict[int, list[np.ndarray]] = {}
        for i in range(len(tids)):
            if tids[i] == t:
                x = f[i] / np.linalg.norm(f[i]) if normalize_images else f[i]
                if scores is not None:
                    x = x * scores[i]
                media.setdefault(mids[i], []).append(x)
        v = np.zeros(f.shape[1])
        for frames in media.values():
            v = v + (frames[0] if len(frames) == 1 else np.mean(frames, axis=0))
        out[t] = v / np.linalg.norm(v)
    return out


def ref_nearest_tar(scores, labels, far: float) -> float:
    """eval_ijbc.py's table rule: sklearn roc_curve, flipud, min over (|fpr - x|, index)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    _, i = min(zip(abs(fpr - far), range(len(fpr)), strict=True))
    return float(tpr[i])


def ref_calibrated(scores, labels, far: float) -> tuple[float, float]:
    """Best TAR over thresholds t (same when score >= t) with FAR <= far, and the lowest such t."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    best, best_t = 0.0, math.inf
    for t in sorted(set(s.tolist()), reverse=True):  # every threshold, one at a time
        if np.mean(neg >= t) <= far + 1e-15:
            tar = float(np.mean(pos >= t))
            if tar >= best:
                best, best_t = tar, t
    return best, best_t


def ref_1n(probe, p_ids, gallery, g_ids, fpirs):
    """ijb_1n.py's evaluation over the mated probes, plus the open-set rule, with loops."""
    mated = [i for i in range(len(p_ids)) if p_ids[i] in list(g_ids)]
    sims = probe @ gallery.T
    out = {}
    for k in (1, 5, 10):
        hit = 0
        for i in mated:
            top = np.argsort(-sims[i])[:k]
            hit += list(g_ids).index(p_ids[i]) in top
        out[f"rank{k}"] = hit / len(mated)
    pos, neg = [], []
    for i in mated:
        gt = list(g_ids).index(p_ids[i])
        pos.append(sims[i, gt])
        neg += [sims[i, j] for j in range(len(g_ids)) if j != gt]
    for x in fpirs:
        th = heapq.nlargest(math.ceil(len(mated) * x), neg)[-1]
        out[f"ins{x}"] = (sum(p > th for p in pos) / len(mated), th)
    non = sorted((max(sims[i]) for i in range(len(p_ids)) if i not in mated), reverse=True)
    for x in fpirs:
        if not non:
            break
        allowed = math.floor(x * len(non))
        th = non[allowed] if allowed < len(non) else -math.inf
        hits = 0
        for i in mated:
            gt = list(g_ids).index(p_ids[i])
            hits += int(np.argmax(sims[i]) == gt and sims[i, gt] > th)
        out[f"open{x}"] = (hits / len(mated), th)
    return out


# -------------------------------------------------------------------------- the maths


def random_images(rng, n=400, t=37, d=16):
    tids = rng.choice(np.arange(10, 10 + 3 * t, 3), n)
    mids = rng.integers(0, 25, n)  # media ids recur across templates
    feats = rng.standard_normal((n, d)).astype(np.float32) * rng.uniform(0.5, 3, (n, 1))
    return feats.astype(np.float32), tids, mids, rng.uniform(0.1, 1, n)


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_pooling_equals_the_template_loop(weights, normalize) -> None:
    rng = np.random.default_rng(1)
    feats, tids, mids, score = random_images(rng)
    tpl = pool_templates(feats, tids, mids, score if weights else None, normalize_images=normalize)
    ref = ref_templates(feats, tids, mids, score if weights else None, normalize)
    assert tpl.ids.tolist() == sorted(ref)
    np.testing.assert_allclose(tpl.features, np.stack([ref[t] for t in tpl.ids]), atol=2e-6)
    for k, t in enumerate(tpl.ids):
        assert tpl.num_images[k] == np.sum(tids == t)
        assert tpl.num_media[k] == np.unique(mids[tids == t]).size


@pytest.mark.parametrize("density", [0.0, 1e9])  # every block by matrix product / by gathering
def test_pair_scores_equal_the_pair_loop(density) -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((300, 24)).astype(np.float32)
    r1, r2 = rng.integers(0, 300, 5000), rng.integers(0, 300, 5000)
    got = pair_scores(x, r1, r2, block=64, density=density, gather_chunk=100)
    xd = x.astype(np.float64)
    ref = [float(np.dot(xd[a], xd[b])) for a, b in zip(r1, r2, strict=True)]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_bad_rows_and_unknown_templates_are_refused() -> None:
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(DataError, match=r"pair rows outside 0..3"):
        pair_scores(x, [0, 1], [2, 4])
    tpl = pool_templates(x, [5, 5, 9, 9], [1, 2, 1, 1])
    assert tpl.index_of([9, 5]).tolist() == [1, 0]
    with pytest.raises(DataError, match="template 7 has no image"):
        tpl.index_of([5, 7])


def test_nearest_far_rule_equals_insightface_on_ties() -> None:
    """Scores rounded to 2 decimals: many ties and ROC points at equal distance from a FAR."""
    rng = np.random.default_rng(3)
    y = rng.random(3000) < 0.2
    s = np.round(rng.normal(0.4 * y, 0.25), 2)
    fars = (1e-4, 1e-3, 2e-3, 1e-2, 0.05, 1e-1, 0.3)
    fpr, tpr, thr = roc(s, y, drop_intermediate=True)
    got = nearest_far_tar(fpr, tpr, thr, fars)
    for x in fars:
        assert got[far_key(x)]["tar"] == ref_nearest_tar(s, y, x)


def test_verification_report_against_the_references() -> None:
    rng = np.random.default_rng(4)
    y = rng.random(4000) < 0.1
    s = rng.normal(0.5 * y, 0.2)
    rep = verification_1to1(s, y.astype(int), IJB_FARS)
    from sklearn.metrics import roc_auc_score

    assert rep["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    for x in IJB_FARS:
        key = far_key(x)
        assert rep["tar_at_far_nearest"][key]["tar"] == ref_nearest_tar(s, y, x)
        tar, thr = ref_calibrated(s, y, x)
        assert rep["tar_at_far"][key]["tar"] == tar
        if tar > 0:
            assert rep["tar_at_far"][key]["threshold"] == thr


def test_identification_against_ijb_1n_loops() -> None:
    rng = np.random.default_rng(5)
    g = rng.standard_normal((60, 8))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    g_ids = rng.permutation(np.arange(500, 600))[:60]
    p_ids = np.concatenate([rng.choice(g_ids, 300), rng.integers(900, 950, 120)])
    noise = rng.standard_normal((420, 8))
    p = np.where(np.isin(p_ids, g_ids)[:, None], 0, 1.0) * noise
    p[:300] += 3.0 * g[[list(g_ids).index(v) for v in p_ids[:300]]] + 0.9 * noise[:300]
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    got = identification_1n(p, p_ids, g, g_ids, (1e-2, 1e-1), chunk=64)
    ref = ref_1n(p, p_ids, g, g_ids, (1e-2, 1e-1))
    assert (got["num_mated"], got["num_nonmated"], got["num_gallery"]) == (300, 120, 60)
    for k in (1, 5, 10):
        assert got[f"rank{k}"] == pytest.approx(ref[f"rank{k}"], abs=1e-12)
    assert 0.3 < got["rank1"] < 0.999  # the references are checked on a non-trivial case
    for x, key in ((1e-2, "1e-2"), (1e-1, "1e-1")):
        tpir, th = ref[f"ins{x}"]
        assert got["tpir_at_fpir_insightface"][key]["tpir"] == pytest.approx(tpir, abs=1e-12)
        assert got["tpir_at_fpir_insightface"][key]["threshold"] == pytest.approx(th, abs=1e-6)
        tpir, th = ref[f"open{x}"]
        assert got["tpir_at_fpir"][key]["tpir"] == pytest.approx(tpir, abs=1e-12)
        assert got["tpir_at_fpir"][key]["threshold"] == pytest.approx(th, abs=1e-6)
        assert got["tpir_at_fpir"][key]["achieved_fpir"] <= x


def test_duplicate_gallery_subject_is_refused() -> None:
    g = np.eye(3)
    with pytest.raises(DataError, match="subject 7 has 2 templates"):
        identification_1n(g, [7, 8, 9], g, [7, 7, 9])


# ---------------------------------------------------------------- reader and end to end


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ijb") / "IJBC"
    return root, write_mini_ijb(root)


def test_reader_reads_the_published_formats(mini) -> None:
    root, truth = mini
    meta = read_ijb(root, "IJBC")
    ref = ref_meta(root)
    assert meta.templates.tolist() == ref["tid"] and meta.medias.tolist() == ref["mid"]
    np.testing.assert_allclose(meta.faceness, ref["score"], rtol=1e-6)
    assert meta.pairs.tolist() == [list(p) for p in ref["pairs"]]
    assert meta.labels.tolist() == ref["label"]
    assert set(meta.galleries) == {"G1", "G2"}
    for k, (t, s) in meta.galleries.items():
        assert t.tolist() == sorted(truth["gallery"][k])
        assert s.tolist() == [truth["subject_of"][v] for v in t]
    assert meta.probes[0].tolist() == sorted(truth["probes"])
    # the loose crops, aligned with their landmarks, are the faces as drawn, aligned
    src = aligned_images(meta, (48, 48))
    for i in (0, 7, len(src) - 1):
        img, lmk = truth["renders"][i]
        want = align_face(img, lmk, (48, 48)).astype(float)
        got = src[i].astype(float)
        assert np.abs(got - want)[8:40, 8:40].mean() < 3.0  # 0.5-2; landmarks 2 px off: 6-18


def test_reader_ijbb_names(mini, tmp_path) -> None:
    shutil.copytree(mini[0], tmp_path / "IJBB")
    for f in (tmp_path / "IJBB" / "meta").iterdir():  # the same files under IJB-B's names
        f.rename(f.with_name(f.name.replace("ijbc", "ijbb").replace("_G", "_S")))
    meta = read_ijb(tmp_path / "IJBB", "ijbb")
    assert meta.name == "IJBB" and set(meta.galleries) == {"S1", "S2"}
    with pytest.raises(DataError, match="ijbc_name_5pts_score.txt: landmark list not found"):
        read_ijb(tmp_path / "IJBB", "IJBC")


@pytest.mark.parametrize(
    ("fname", "line", "text"),
    [
        ("ijbc_name_5pts_score.txt", 3, "img_x.png 1 2 3 4 5 6 7 8 9 10"),
        ("ijbc_name_5pts_score.txt", 5, "img_x.png 1 2 3 4 5 6 7 8 9 ten 0.5"),
        ("ijbc_face_tid_mid.txt", 2, "img_0001_0.png 3 five"),
        ("ijbc_template_pair_label.txt", 4, "3 10"),
        ("ijbc_template_pair_label.txt", 6, "3 10 2"),
        ("ijbc_template_pair_label.txt", 1, "3 x 1"),
        ("ijbc_1N_probe_mixed.csv", 3, "abc,1000,img.png,1"),
    ],
)
def test_malformed_meta_line_names_file_and_line(mini, tmp_path, fname, line, text) -> None:
    root = tmp_path / "IJBC"
    shutil.copytree(mini[0] / "meta", root / "meta")
    (root / "loose_crop").mkdir()
    f = root / "meta" / fname
    lines = f.read_text().splitlines()
    lines[line - 1] = text
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{fname}:{line}: malformed line"):
        read_ijb(root, "IJBC")


def test_meta_files_out_of_step_are_refused(mini, tmp_path) -> None:
    root = tmp_path / "IJBC"
    shutil.copytree(mini[0] / "meta", root / "meta")
    (root / "loose_crop").mkdir()
    f = root / "meta" / "ijbc_face_tid_mid.txt"
    lines = f.read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="image 1 is"):
        read_ijb(root, "IJBC")


def test_image_names_that_leave_loose_crop_only_with_the_flag(mini, tmp_path) -> None:
    root = tmp_path / "IJBC"
    shutil.copytree(mini[0] / "meta", root / "meta")
    (root / "loose_crop").mkdir()
    for fname in ("ijbc_name_5pts_score.txt", "ijbc_face_tid_mid.txt"):
        f = root / "meta" / fname
        lines = f.read_text().splitlines()
        lines[2] = "../../secret.png " + lines[2].split(" ", 1)[1]
        f.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"image 3 is '../../secret.png', which leaves .*-root"):
        read_ijb(root, "IJBC")
    meta = read_ijb(root, "IJBC", allow_outside_root=True)
    assert meta.images[2] == "../../secret.png"


def check_results(
    rep: dict, feats: np.ndarray, ref: dict, use_score: bool, fars: tuple = IJB_FARS
) -> None:
    """Every number of one model's IJB report against the loops."""
    tpl = ref_templates(feats, ref["tid"], ref["mid"], ref["score"] if use_score else None)
    scores = [float(np.dot(tpl[a], tpl[b])) for a, b in ref["pairs"]]
    v = rep["verification"]
    assert rep["num_templates"] == len(tpl) and rep["num_images"] == len(ref["tid"])
    assert v["num_pairs"] == len(scores) and v["num_genuine"] == sum(ref["label"])
    from sklearn.metrics import roc_auc_score

    # facerec pools and scores in float32: a genuine and an impostor score closer than float32
    # resolves may come out in either order, each such pair moving the AUC by 1/(P·N) at most
    lab, s = np.asarray(ref["label"], bool), np.asarray(scores)
    near = int((np.abs(s[lab][:, None] - s[~lab][None, :]) < 1e-6).sum())
    tol = (near + 1e-6) / (lab.sum() * (~lab).sum())
    assert v["auc"] == pytest.approx(roc_auc_score(ref["label"], scores), abs=tol)
    assert list(v["tar_at_far"]) == [far_key(x) for x in fars]
    for x in fars:
        key = far_key(x)
        assert v["tar_at_far_nearest"][key]["tar"] == ref_nearest_tar(scores, ref["label"], x)
        tar, thr = ref_calibrated(scores, ref["label"], x)
        assert v["tar_at_far"][key]["tar"] == tar
        if tar > 0:
            assert v["tar_at_far"][key]["threshold"] == pytest.approx(thr, abs=1e-5)
    ident = rep["identification"]
    probes = dict(ref["probes"])
    p_ids = np.array([probes[t] for t in sorted(probes)])
    pf = np.stack([tpl[t] for t in sorted(probes)])
    g1, g2 = ref["galleries"]["G1"], ref["galleries"]["G2"]
    for gname, rows in [("G1+G2", g1 + g2), ("G1", g1), ("G2", g2)]:
        gal = dict(rows)
        gf = np.stack([tpl[t] for t in sorted(gal)])
        r = ref_1n(pf, p_ids, gf, np.array([gal[t] for t in sorted(gal)]), (1e-2, 1e-1))
        got = ident[gname]
        for k in (1, 5, 10):
            assert got[f"rank{k}"] == pytest.approx(r[f"rank{k}"], abs=1e-12)
        for x, key in ((1e-2, "1e-2"), (1e-1, "1e-1")):
            tpir, th = r[f"ins{x}"]
            assert got["tpir_at_fpir_insightface"][key]["tpir"] == pytest.approx(tpir, abs=1e-12)
            assert got["tpir_at_fpir_insightface"][key]["threshold"] == pytest.approx(th, abs=1e-5)
            tpir, th = r[f"open{x}"]
            assert got["tpir_at_fpir"][key]["tpir"] == pytest.approx(tpir, abs=1e-12)


def assert_documented(obj: object) -> None:
    """Every key of an IJB report is in README's IJB section (FAR and gallery names aside)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            named = k[0].isdigit() or k in ("G1", "G2", "G1+G2")
            assert named or f"`{k}`" in IJB_JSON_KEYS_DOC, k
            assert_documented(v)


def test_facerec_eval_ijb_end_to_end(mini, fit_run, tmp_path, capsys) -> None:
    root, _ = mini
    out = tmp_path / "run"
    feats_file = tmp_path / "feats.npz"
    common = ["--ijb", str(root), "--workers", "1", "--batch-size", "32"]
    save = ["--save-features", str(feats_file), "--out", str(out)]
    rc = eval_main(["--checkpoint", str(fit_run.checkpoint), *common, *save])
    assert rc == 0
    text = capsys.readouterr().out
    assert "IJBC 1:1 TAR@FAR" in text and "IJBC 1:N" in text
    res = json.loads((out / "results.json").read_text())
    (model,) = res["models"].values()
    rep = model["ijb"]["IJBC"]
    meta = read_ijb(root, "IJBC")
    feats = load_features(feats_file, meta)
    assert feats.shape == (len(meta.images), model["embedding_dim"])
    ref = ref_meta(root)
    check_results(rep, feats, ref, use_score=True)
    assert (out / rep["plots"]["roc"]).stat().st_size > 0
    assert_documented(rep)
    for key in res["settings"]["ijb"]:
        assert f"`{key}`" in IJB_JSON_KEYS_DOC, key
    assert res["settings"]["ijb"]["detector_score"] is True
    # a second run from the saved features, without the detector score, other FARs: no network
    out2 = tmp_path / "run2"
    again = ["--load-features", str(feats_file), "--ijb-no-detector-score", "--out", str(out2)]
    rc = eval_main([*again, *common, "--ijb-fars", "0.1", "0.05", "0.01"])
    assert rc == 0
    res2 = json.loads((out2 / "results.json").read_text())
    (m2,) = res2["models"].values()
    assert m2["kind"] == "features"
    check_results(m2["ijb"]["IJBC"], feats, ref, use_score=False, fars=(0.01, 0.05, 0.1))


def test_cli_refuses_features_for_another_benchmark(mini, tmp_path, capsys) -> None:
    root, _ = mini
    missing = str(tmp_path / "none.npz")
    rc = eval_main(["--load-features", missing, "--ijb", str(root), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "none.npz: feature file not found" in capsys.readouterr().err
