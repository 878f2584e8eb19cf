"""`facerec eval` end to end: a checkpoint trained here by `facerec fit`, every output file."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_eval_confidence_quality import readme_json_keys

from facerec.cli import main as facerec_main
from facerec.data.synthetic import SyntheticFaces
from facerec.eval.benchmarks import write_bin
from facerec.eval.cli import main as eval_main


def bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)


def make_data(root: Path) -> dict[str, Path]:
    """A .bin, an LFW layout, a pairs CSV and gallery/probe/distractor folders of faces."""
    faces = SyntheticFaces(20, 4, size=40, seed=3)
    ids = range(500_000, 500_020)
    # .bin: 20 pairs, alternating genuine / impostor (each of the 10 contiguous folds holds one
    # of each, as insightface reads a .bin)
    bins, same = [], []
    for k in range(20):
        a, b = ids[k], ids[k] if k % 2 == 0 else ids[(k + 1) % 20]
        for who, idx in ((a, 0), (b, 1)):
            bins.append(cv2.imencode(".jpg", bgr(faces.render(who, idx)))[1].tobytes())
        same.append(k % 2 == 0)
    write_bin(root / "mini.bin", bins, same)
    # LFW: 2 folds x 2 pairs per class; images 40x48 (not the model's size)
    lfw = root / "lfw"
    names = [f"Person_{i}" for i in range(4)]
    for i, n in enumerate(names):
        (lfw / n).mkdir(parents=True)
        for j in range(1, 4):
            img = cv2.resize(faces.render(ids[i], j), (40, 48))
            cv2.imwrite(str(lfw / n / f"{n}_{j:04d}.jpg"), bgr(img))
    p = names
    (root / "pairs.txt").write_text(
        f"2 2\n{p[0]} 1 2\n{p[1]} 1 3\n{p[0]} 1 {p[1]} 2\n{p[2]} 1 {p[3]} 2\n"
        f"{p[2]} 1 2\n{p[3]} 2 3\n{p[1]} 3 {p[2]} 2\n{p[3]} 1 {p[0]} 3\n"
    )
    (root / "pairs.csv").write_text(
        "path1,path2,same\n"
        + "".join(
            f"lfw/{p[i]}/{p[i]}_0001.jpg,lfw/{p[j]}/{p[j]}_0002.jpg,{int(i == j)}\n"
            for i in range(4)
            for j in range(4)
        )
    )
    # identification: 6 enrolled identities, probes of 8 (2 unenrolled), 4 distractors
    for folder, people, images in (
        ("gallery", range(6), (0, 1)),
        ("probe", range(8), (2,)),
        ("distractors/any/depth", range(12, 16), (0,)),
    ):
        for i in people:
            d = root / folder / f"id{i}"
            d.mkdir(parents=True, exist_ok=True)
            for j in images:
                cv2.imwrite(str(d / f"{j}.png"), bgr(faces.render(ids[i], j)))
    return {"bin": root / "mini.bin", "pairs": root / "pairs.txt", "lfw": lfw}


@pytest.fixture
def checkpoint(fit_run) -> Path:
    """The checkpoint of the session's `facerec fit` run (tests/eval/conftest.py)."""
    return fit_run.checkpoint


def test_facerec_eval_end_to_end(tmp_path, checkpoint, capsys):
    data = make_data(tmp_path)
    a = tmp_path / "model_a.ckpt"
    shutil.copy(checkpoint, a)
    out = tmp_path / "out"
    argv = [
        "eval",
        "--checkpoint", str(checkpoint),
        "--checkpoint", str(a),
        "--bin", str(data["bin"]),
        "--lfw-pairs", str(data["pairs"]), "--lfw-root", str(data["lfw"]),
        "--pairs-csv", str(tmp_path / "pairs.csv"),
        "--synthetic", "--synthetic-pairs", "20",
        "--gallery", str(tmp_path / "gallery"), "--probe", str(tmp_path / "probe"),
        "--distractors", str(tmp_path / "distractors"),
        "--batch-size", "64", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    # pairs.csv has 4 genuine pairs: 10 stratified folds cannot each hold one
    assert facerec_main(argv) == 2
    assert "4 genuine pairs cannot fill 10 folds; expected at most --folds 4" in (
        capsys.readouterr().err
    )
    argv += ["--folds", "4"]
    assert facerec_main(argv) == 0
    printed = capsys.readouterr().out
    assert "Verification" in printed and "Identification" in printed and "model_a" in printed

    res = json.loads((out / "results.json").read_text())
    benches = ["mini", "lfw", "pairs", "synthetic"]
    models = [checkpoint.stem, "model_a"]
    assert list(res["models"]) == models
    for m in models:
        entry = res["models"][m]
        assert entry["kind"] == "checkpoint" and entry["input_size"] == [32, 32]
        assert entry["embedding_dim"] == 32
        assert list(entry["verification"]) == benches
        for b in benches:
            v = entry["verification"][b]
            for key in ("accuracy_mean", "accuracy_std", "auc", "eer", "best_accuracy"):
                assert 0.0 <= v[key] <= 1.0, (m, b, key)
            assert set(v["tar_at_far"]) == {"1e-1", "1e-2", "1e-3", "1e-4", "1e-5", "1e-6"}
            assert v["tar_at_far"]["1e-6"]["resolvable"] is False
            assert (out / v["plots"]["histogram"]).is_file()
            assert (out / v["plots"]["roc"]).is_file()
        assert entry["verification"]["lfw"]["folds"] == 2  # folds from pairs.txt
        assert entry["verification"]["mini"]["num_pairs"] == 20
        assert entry["verification"]["synthetic"]["num_pairs"] == 20
        ident = entry["identification"]
        assert ident["num_gallery_identities"] == 6 and ident["num_mated"] == 6
        assert ident["num_nonmated"] == 2 + 4
        assert len(ident["cmc"]) == 10 and ident["rank10"] == 1.0  # 6 identities only
        assert set(ident["dir_at_far"]) == {"1e-1", "1e-2", "1e-3"}
    # every key of the file is documented in README's section
    documented = readme_json_keys()
    entry = res["models"]["model_a"]
    ver = entry["verification"]["lfw"]
    keyed = [res, res["settings"], entry, ver, ver["tar_at_far"]["1e-1"], ver["roc"]]
    keyed += [ver["plots"], entry["identification"], entry["identification"]["dir_at_far"]["1e-1"]]
    for d in keyed:
        for key in d:
            assert f"`{key}`" in documented or key in benches + models + ["1e-1"], key
    # the two models are the same network: identical numbers
    va, vb = (res["models"][m]["verification"]["mini"] for m in models)
    assert va["fold_accuracies"] == vb["fold_accuracies"]
    # every output file: one ROC per benchmark (both models on it), histograms, CMC
    expected = {"results.json", "cmc.png", ".facerec_eval_outputs.json"}
    expected |= {f"roc_{b}.png" for b in benches}
    expected |= {f"hist_{b}_{m}.png" for b in benches for m in models}
    assert {q.name for q in out.iterdir()} == expected
    for q in expected - {"results.json", ".facerec_eval_outputs.json"}:
        img = cv2.imread(str(out / q))
        assert img is not None and img.shape[0] > 100, q


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    evil = tmp_path / "evil.bin"
    evil.write_bytes(pickle.dumps(Evil()))
    bad_pairs = tmp_path / "pairs.txt"
    bad_pairs.write_text("1 1\nA 1 2\nA 1\n")
    cases = [
        ([], "no model given"),
        (["--checkpoint", "x.ckpt"], "nothing to evaluate"),
        (["--checkpoint", "x.ckpt", "--bin", str(evil)], "refused without running"),
        (["--checkpoint", "x.ckpt", "--lfw-pairs", str(bad_pairs), "--lfw-root", "."], "line 3"),
        (["--checkpoint", "x.ckpt", "--lfw-pairs", str(bad_pairs)], "go together"),
        (["--checkpoint", str(tmp_path / "none.ckpt"), "--synthetic"], "checkpoint not found"),
        (["--checkpoint", "x.ckpt", "--gallery", str(tmp_path / "g")], "--probe"),
    ]
    for argv, msg in cases:
        assert eval_main([*argv, "--out", str(tmp_path / "o")]) == 2, argv
        err = capsys.readouterr()
        assert "ran" not in err.out
        lines = err.err.strip().splitlines()
        assert lines[-1].startswith("facerec eval: error:") and msg in lines[-1], err.err


def test_onnx_models_go_through_the_onnx_loader(tmp_path, capsys, monkeypatch):
    import torch

    import facerec.inference.model as inference_model
    from facerec.inference import TorchEmbedder

    make_data(tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"stand-in")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8))
    monkeypatch.setattr(
        inference_model,
        "load_onnx_embedder",
        lambda p, d, bs, rm: TorchEmbedder(net, (16, 16), d, bs),
    )
    argv = ["--onnx", str(tmp_path / "m.onnx"), "--bin", str(tmp_path / "mini.bin")]
    assert eval_main([*argv, "--no-flip", "--out", str(tmp_path / "o")]) == 0
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    m = res["models"]["m"]
    assert m["kind"] == "onnx" and m["input_size"] == [16, 16] and m["embedding_dim"] == 8
    assert res["settings"]["flip"] is False
    assert "Calibrated cosine thresholds" in capsys.readouterr().out
