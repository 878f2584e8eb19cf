"""`facerec eval --quality / --min-quality / --calibrate` and `facerec.eval.evaluate` (issue 24):
run as a user runs them on a checkpoint trained here by `facerec fit`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from facerec.eval import EvalOptions, evaluate
from facerec.eval.benchmarks import synthetic_pairs
from facerec.eval.cli import main as eval_main
from facerec.eval.verify_cli import read_calibration
from facerec.inference import load_embedder
from facerec.metrics.calibration import Calibration


def readme_json_keys() -> str:
    """README.md's section "`results.json` keys", the one documentation of the file's keys."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    found = re.search(r"^### `results\.json` keys\n(.*?)^#", readme, re.MULTILINE | re.DOTALL)
    assert found, "README.md has no section '### `results.json` keys'"
    return found.group(1)


def assert_documented(entries: list[dict]) -> None:
    """Every key of these results.json entries is in README's `results.json` keys section."""
    section = readme_json_keys()
    missing = [k for d in entries for k in d if f"`{k}`" not in section]
    assert not missing, missing


def test_quality_min_quality_and_erc(fit_run, tmp_path, capsys):
    out = tmp_path / "q"
    base = ["--checkpoint", str(fit_run.checkpoint), "--synthetic", "--synthetic-pairs", "400"]
    assert eval_main([*base, "--quality", "--report", "--out", str(out)]) == 0
    first = json.loads((out / "results.json").read_text())
    v = first["models"]["last"]["verification"]["synthetic"]
    q = v["quality"]
    assert q["method"] == "norm" and first["settings"]["quality"] == "norm"
    erc = q["erc"]
    assert erc["reject"][0] == 0 and len(erc["fnmr"]) == len(erc["reject"]) == 11
    assert erc["area_oracle"] <= erc["area"] + 1e-12  # nothing beats the oracle
    assert erc["fnmr"][0] == pytest.approx(erc["area_random"])  # no rejection: the plain FNMR
    assert (out / "erc_synthetic.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert 'class="erc"' in html and "Face-image quality" in html
    assert_documented([first["settings"], q, q["image_quality"], erc, v["plots"]])
    console = capsys.readouterr().out
    assert "Face-image quality" in console and f"{100 * erc['area']:.2f}" in console

    # --min-quality at the median image quality leaves out pairs; every number is over the rest
    thr = q["image_quality"]["median"]
    out2 = tmp_path / "q2"
    assert eval_main([*base, "--min-quality", str(thr), "--out", str(out2)]) == 0
    err = capsys.readouterr().err
    v2 = json.loads((out2 / "results.json").read_text())["models"]["last"]["verification"]
    q2 = v2["synthetic"]["quality"]
    assert 0 < q2["pairs_dropped"] < 400 and q2["pairs_kept"] + q2["pairs_dropped"] == 400
    assert v2["synthetic"]["num_pairs"] == q2["pairs_kept"]
    assert q2["images_below"] > 0
    assert f"leaves out {q2['images_below']} of" in err and f"{q2['pairs_dropped']} of 400" in err

    # a minimum no image reaches: one line, nothing scored
    assert eval_main([*base, "--min-quality", "1e9", "--out", str(tmp_path / "q3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "after --min-quality 1e+09" in err and "expected a lower --min-quality" in err


def test_calibrate_writes_a_copy_verify_reads_and_onnx_carries(fit_run, tmp_path, capsys):
    out = tmp_path / "cal"
    ckpt = fit_run.checkpoint
    before = ckpt.read_bytes()
    args = ["--checkpoint", str(ckpt), "--synthetic", "--calibrate", "--report", "--out", str(out)]
    assert eval_main(args) == 0
    res = json.loads((out / "results.json").read_text())
    c = res["models"]["last"]["calibration"]
    assert c["method"] == "isotonic" and c["benchmark"] == "synthetic" and c["n_pairs"] == 2000
    assert c["ece"] < 0.05  # held-out folds (issue 24's bound)
    copy = out / "last.calibrated.ckpt"
    assert c["written_to"] == str(copy) and ckpt.read_bytes() == before  # the input untouched
    stored = read_calibration(checkpoint=copy)
    record = {k: v for k, v in c.items() if k not in ("plot", "written_to", "not_written")}
    assert stored is not None and stored.to_dict() == Calibration.from_dict(record).to_dict()
    # the copy is the same model: same weights, only the calibration added
    a, b = torch.load(ckpt, weights_only=True), torch.load(copy, weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert_documented([c])
    html = (out / "report.html").read_text()
    m = re.search(r'class="ece">([0-9.]+)<', html)
    assert m and float(m.group(1)) == pytest.approx(c["ece"], abs=1e-4)
    assert (out / "reliability_last.png").stat().st_size > 1000
    console = capsys.readouterr().out
    assert "Match confidence" in console and f"{c['ece']:.4f}" in console

    # a later run in the same folder without --calibrate keeps the calibrated model
    assert eval_main(["--checkpoint", str(ckpt), "--synthetic", "--out", str(out)]) == 0
    assert copy.is_file() and not (out / "reliability_last.png").exists()

    # ONNX: calibrate the exported model; the thresholds round-trip through its metadata
    pytest.importorskip("onnxruntime")
    from facerec.export.cli import main as export_main

    onnx_path = tmp_path / "m.onnx"
    assert export_main(["--checkpoint", str(copy), "--out", str(onnx_path)]) == 0
    carried = read_calibration(onnx=onnx_path)
    assert carried is not None and carried.thresholds == stored.thresholds
    out_o = tmp_path / "cal_onnx"
    assert eval_main(["--onnx", str(onnx_path), "--synthetic", "--calibrate", "logistic",
                      "--out", str(out_o)]) == 0  # fmt: skip
    written = read_calibration(onnx=out_o / "m.calibrated.onnx")
    assert written is not None and written.method == "logistic"
    assert read_calibration(onnx=onnx_path).method == "isotonic"  # the input untouched


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pairs-csv", "CSV", "--folds", "2", "--calibrate"], "--calibrate needs one benchmark"),
        (["--calibrate", "--calibrate-on", "lfw"], "--calibrate-on 'lfw' is not a benchmark"),
        (["--calibrate", "--calibrate-folds", "1"], "--calibrate-folds must be >= 2"),
        (["--quality", "--quality-passes", "1"], "--quality-passes must be >= 2"),
    ],
)
def test_bad_options_are_one_line(fit_run, tmp_path, capsys, extra, message):
    extra = [str(_pairs_csv(tmp_path)) if a == "CSV" else a for a in extra]
    args = ["--checkpoint", str(fit_run.checkpoint), "--synthetic", "--synthetic-pairs", "50"]
    assert eval_main([*args, *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("facerec eval: error:")


def _pairs_csv(root):
    """A small pairs CSV of synthetic faces (genuine and impostor pairs)."""
    import cv2

    from facerec.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(4, 3, size=32, seed=1)
    rows = ["path1,path2,same"]
    for i in range(4):
        for j in range(3):
            img = faces.render(900 + i, j)
            cv2.imwrite(str(root / f"f{i}_{j}.png"), img[:, :, ::-1])
    for i in range(4):
        rows.append(f"f{i}_0.png,f{i}_1.png,1")
        rows.append(f"f{i}_0.png,f{(i + 1) % 4}_2.png,0")
    (root / "pairs.csv").write_text("\n".join(rows) + "\n")
    return root / "pairs.csv"


def test_evaluate_is_callable_without_argparse(fit_run, tmp_path):
    emb = load_embedder(str(fit_run.checkpoint), None, "cpu", 64)
    bench = synthetic_pairs(num_pairs=200)
    opts = EvalOptions(folds=5, quality="norm", calibrate="logistic", workers=0)
    res = evaluate([("mine", emb)], [bench], options=opts)  # no out: nothing written
    assert not any(tmp_path.iterdir())
    v = res["models"]["mine"]["verification"]["synthetic"]
    assert v["num_pairs"] == 200 and 0.0 <= v["accuracy_mean"] <= 1.0 and v["folds"] == 5
    assert res["models"]["mine"]["calibration"]["not_written"].startswith("an embedder object")
    # the same numbers as the command on the same pairs
    by_path = evaluate([str(fit_run.checkpoint)], [bench], options=EvalOptions(folds=5))
    w = by_path["models"]["last"]["verification"]["synthetic"]
    assert w["accuracy_mean"] == v["accuracy_mean"] and w["auc"] == v["auc"]
    assert np.isfinite(v["quality"]["erc"]["area"])


def test_groups_end_to_end_console_json_html_agree(fit_run, tmp_path, capsys):
    """`facerec eval --pairs-csv --groups GROUPS.csv --report`: per-group numbers in all three
    outputs are the same, and each group's accuracy is that of its own pairs."""
    import cv2

    from facerec.data.synthetic import SyntheticFaces
    from facerec.eval import groups as gr
    from facerec.eval.html_report import groups_html
    from facerec.metrics.verification import verification_report

    faces = SyntheticFaces(8, 4, size=32, seed=5)
    rows, groups = ["path1,path2,same"], ["identity,group"]
    for i in range(8):
        (tmp_path / f"p{i}").mkdir()
        for j in range(4):
            cv2.imwrite(str(tmp_path / f"p{i}" / f"{j}.png"), faces.render(700 + i, j)[:, :, ::-1])
        groups.append(f"p{i},{'north' if i < 4 else 'south'}")
    for i in range(8):  # within each group: 6 genuine and 4 impostor pairs per identity
        base = 0 if i < 4 else 4
        for j, k in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)):
            rows.append(f"p{i}/{j}.png,p{i}/{k}.png,1")
        for d in (1, 2):
            o = base + (i - base + d) % 4
            rows += [f"p{i}/0.png,p{o}/{d}.png,0", f"p{i}/3.png,p{o}/2.png,0"]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "groups.csv").write_text("\n".join(groups) + "\n")
    out = tmp_path / "out"
    args = ["--checkpoint", str(fit_run.checkpoint), "--pairs-csv", str(tmp_path / "pairs.csv")]
    args += ["--groups", str(tmp_path / "groups.csv"), "--folds", "4", "--report"]
    assert eval_main([*args, "--out", str(out)]) == 0
    console = capsys.readouterr().out
    v = json.loads((out / "results.json").read_text())["models"]["last"]["verification"]["pairs"]
    entry = v["groups"]
    assert sorted(entry["groups"]) == ["north", "south"]
    spread = entry["spread"]
    assert_documented([entry, entry["deployed"], spread, spread["accuracy"]])
    assert_documented([{k: 0 for k in entry["groups"]["north"] if k not in v}])
    assert sum(g["num_pairs"] for g in entry["groups"].values()) == v["num_pairs"] == 80
    assert "\n".join(gr.format_groups("last", "pairs", entry)) in console
    page = (out / "report.html").read_text()
    assert groups_html("last", "pairs", entry) in page
    # a group's numbers are those of its own pairs (scores recomputed from the run's pairs)
    from facerec.eval.benchmarks import read_pairs_csv
    from facerec.eval.embed import score_benchmark

    b = read_pairs_csv(tmp_path / "pairs.csv")
    emb = load_embedder(str(fit_run.checkpoint), None, "cpu", 64)
    scores = score_benchmark(emb, b.images, b.pairs, 64, True, 0)
    north = np.array(["p0" <= r.split("/")[0] <= "p3" for r in rows[1:]])
    want = verification_report(scores[north], b.issame[north], n_folds=4)
    assert entry["groups"]["north"]["auc"] == pytest.approx(want["auc"], abs=1e-9)


def test_readme_holds_the_results_json_keys():
    section = readme_json_keys()
    assert section.lstrip().startswith("`results.json` holds every number")
    assert_documented([dict.fromkeys(["facerec_version", "settings", "models", "plots"])])
