"""``facerec embed`` (facerec.eval.embed_cli) and ``facerec eval --onnx`` on the models exported
by this folder's fixtures: output shape and order, options, parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facerec.cli import main
from facerec.data.image import fit_to_size, read_image
from facerec.eval.embed_cli import read_names
from facerec.inference.onnx import OnnxEmbedder

DIM = 64
FOLDER_ORDER = ["a.png", "b/x.bmp", "b/z.png", "c.png", "d.jpg"]  # sorted paths, recursive


def _embed(args: list[str], capsys) -> tuple[int, str]:
    rc = main(["embed", "--no-progress", *args])
    return rc, capsys.readouterr().err


def _reference(emb: OnnxEmbedder, paths: list[Path], flip: bool = False) -> np.ndarray:
    """One image at a time, straight through the embedder."""
    rows = []
    for p in paths:
        img = fit_to_size(read_image(p), emb.input_size, emb.resize_mode)[None]
        e = emb(img)
        if flip:
            e = e + emb(np.ascontiguousarray(img[:, :, ::-1]))
        rows.append(e[0])
    return np.stack(rows)


def test_embed_folder_and_file_shape_and_order(
    plain_onnx: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "emb.npy"
    extra = image_folder / "c.png"  # a file after the folder: kept in command-line order
    rc, err = _embed(
        ["--onnx", str(plain_onnx), str(image_folder), str(extra), "--out", str(out)], capsys
    )
    assert rc == 0, err
    emb = np.load(out)
    listed = read_names(tmp_path / "emb.jsonl")
    expected = [image_folder / n for n in FOLDER_ORDER] + [extra]
    assert listed == [str(p) for p in expected]
    assert emb.shape == (len(expected), DIM) and emb.dtype == np.float32
    ref = _reference(OnnxEmbedder(plain_onnx), expected)
    np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_array_equal(emb[3], emb[-1])  # the same file twice, the same row
    assert not np.allclose(emb[0], emb[1])  # rows are not all the same face


def test_embed_checkpoint_equals_onnx_with_flip_normalize_and_small_batches(
    ckpt: Path, plain_onnx: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    a, b = tmp_path / "ckpt.npy", tmp_path / "onnx.npy"
    lst = tmp_path / "files.names"
    common = [str(image_folder), "--flip", "--normalize"]
    rc, err = _embed(
        ["--checkpoint", str(ckpt), *common, "--out", str(a), "--batch-size", "2"], capsys
    )
    assert rc == 0, err
    rc, err = _embed(
        ["--onnx", str(plain_onnx), *common, "--out", str(b), "--list", str(lst)], capsys
    )
    assert rc == 0, err
    ea, eb = np.load(a), np.load(b)
    assert ea.shape == eb.shape == (len(FOLDER_ORDER), DIM)
    np.testing.assert_allclose(np.linalg.norm(eb, axis=1), 1.0, rtol=1e-5)
    assert (ea * eb).sum(1).min() >= 0.9999  # unit rows: the cosine
    assert (tmp_path / "ckpt.jsonl").read_text() == lst.read_text()
    assert not (tmp_path / "onnx.jsonl").exists()
    # flip-sum then L2, as documented
    paths = [image_folder / n for n in FOLDER_ORDER]
    ref = _reference(OnnxEmbedder(plain_onnx), paths, flip=True)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(eb, ref, atol=1e-5)


def test_embed_baked_model_equals_plain(
    plain_onnx: Path, baked_onnx: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    outs = []
    for k, model in enumerate((plain_onnx, baked_onnx)):
        out = tmp_path / f"{k}.npy"
        rc, err = _embed(["--onnx", str(model), str(image_folder), "--out", str(out)], capsys)
        assert rc == 0, err
        outs.append(np.load(out))
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-4 * np.abs(outs[0]).max())


def test_eval_onnx_matches_checkpoint_numbers(
    ckpt: Path, plain_onnx: Path, baked_onnx: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", str(ckpt), "--onnx", str(plain_onnx), "--onnx"]
    argv += [str(baked_onnx), "--synthetic", "--synthetic-pairs", "60"]
    argv += ["--device", "cpu", "--workers", "1", "--out", str(out)]
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    models = json.loads((out / "results.json").read_text())["models"]
    kinds = {m["kind"] for m in models.values()}
    assert kinds == {"checkpoint", "onnx"} and len(models) == 3
    reps = {name: m["verification"]["synthetic"] for name, m in models.items()}
    ref = next(r for n, r in reps.items() if models[n]["kind"] == "checkpoint")
    for name, rep in reps.items():
        assert models[name]["input_size"] == [64, 64]
        assert rep["num_pairs"] == ref["num_pairs"] == 60
        # the same embeddings up to float rounding: at most one pair may change side
        assert abs(rep["accuracy_mean"] - ref["accuracy_mean"]) <= 1 / 60 + 1e-9, name
        assert rep["auc"] == pytest.approx(ref["auc"], abs=2e-3), name
        assert rep["eer"] == pytest.approx(ref["eer"], abs=1 / 30 + 1e-9), name


def test_onnx_and_checkpoint_scores_agree_pair_by_pair(
    ckpt: Path, plain_onnx: Path, baked_onnx: Path
) -> None:
    """What `facerec eval` scores, pair by pair: the ONNX files give the checkpoint's cosines."""
    from facerec.eval.benchmarks import synthetic_pairs
    from facerec.eval.embed import score_benchmark
    from facerec.inference import load_checkpoint_embedder, load_onnx_embedder

    bench = synthetic_pairs(num_identities=20, images_per_identity=3, num_pairs=40, size=80)
    ref = score_benchmark(load_checkpoint_embedder(ckpt), bench.images, bench.pairs, 16)
    assert ref.std() > 1e-3  # the scores differ from pair to pair
    for model in (plain_onnx, baked_onnx):
        got = score_benchmark(load_onnx_embedder(model), bench.images, bench.pairs, 16)
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_embed_quality_file_and_min_quality(
    ckpt: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    """--quality writes one quality a row beside the embeddings (stability equals the scorer run
    by hand; auto is the embedding norm); --min-quality drops the rows below it from every output
    and says how many."""
    from facerec.inference import load_checkpoint_embedder
    from facerec.metrics.quality import QualityScorer

    out = tmp_path / "emb.npy"
    rc, _ = _embed(
        [
            "--checkpoint",
            str(ckpt),
            str(image_folder),
            "--out",
            str(out),
            "--quality",
            "stability",
            "--quality-passes",
            "4",
        ],
        capsys,
    )
    assert rc == 0
    q = np.load(tmp_path / "emb.quality.npy")
    names = read_names(tmp_path / "emb.jsonl")
    assert q.shape == (len(names),) == (5,) and q.dtype == np.float32
    scorer = QualityScorer(load_checkpoint_embedder(ckpt), "stability", passes=4, seed=0)
    by_hand = [scorer(fit_to_size(read_image(n), (64, 64), "resize")[None])[0, 0] for n in names]
    assert np.allclose(q, by_hand, atol=1e-5)
    # the cut between the 2nd and 3rd lowest keeps the three best
    cut = float(np.sort(q)[1:3].mean())
    out2 = tmp_path / "kept.npy"
    rc = main(
        [
            "embed",
            "--no-progress",
            "--checkpoint",
            str(ckpt),
            str(image_folder),
            "--out",
            str(out2),
            "--quality",
            "stability",
            "--min-quality",
            str(cut),
            "--quality-passes",
            "4",
        ]
    )
    said = capsys.readouterr().out
    assert rc == 0 and "dropped 2 of 5 below stability quality" in said
    kept = read_names(tmp_path / "kept.jsonl")
    assert kept == [n for n, v in zip(names, q, strict=True) if v >= cut]
    assert np.allclose(np.load(tmp_path / "kept.quality.npy"), q[q >= cut])
    assert np.allclose(np.load(out2), np.load(out)[q >= cut], atol=1e-5)
    # auto is the norm of the raw embedding (stability ranked degraded faces higher on ORL)
    out3 = tmp_path / "auto.npy"
    rc, _ = _embed(["--checkpoint", str(ckpt), str(image_folder), "--out", str(out3),
                    "--quality"], capsys)  # fmt: skip
    assert rc == 0
    assert np.allclose(
        np.load(tmp_path / "auto.quality.npy"), np.linalg.norm(np.load(out3), axis=1), rtol=1e-5
    )


def test_embed_quality_refusals(
    plain_onnx: Path, ckpt: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    """One line each, nothing written: norm on an L2-normalised model, a threshold above every
    image, one pass, --quality-out naming --out."""
    normed = tmp_path / "normed.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(normed), "--l2-normalize"]) == 0
    capsys.readouterr()
    out = tmp_path / "e.npy"
    base = [str(image_folder), "--out", str(out)]
    cases = [
        (["--onnx", str(normed), "--quality", "norm"], "returns L2-normalised"),
        (
            [
                "--onnx",
                str(plain_onnx),
                "--quality",
                "stability",
                "--min-quality",
                "2",
                "--quality-passes",
                "2",
            ],
            "leaves none of the 5 images",
        ),
        (
            ["--onnx", str(plain_onnx), "--quality", "stability", "--quality-passes", "1"],
            "--quality-passes",
        ),
        (["--onnx", str(plain_onnx), "--quality", "--quality-out", str(out)], "its own file"),
    ]
    for extra, msg in cases:
        rc, err = _embed([*extra, *base], capsys)
        assert rc == 2 and msg in err and err.count("\n") == 1, err
        assert not out.exists() and not (tmp_path / "e.quality.npy").exists()
    # norm on a raw model works and is the embedding's norm
    rc, _ = _embed(["--onnx", str(plain_onnx), "--quality", "norm", *base], capsys)
    assert rc == 0
    assert np.allclose(
        np.load(tmp_path / "e.quality.npy"), np.linalg.norm(np.load(out), axis=1), rtol=1e-5
    )
