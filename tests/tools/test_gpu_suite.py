"""tools/bench/gpu_suite.py cannot rot: ``--smoke`` runs every part on the CPU, a hung part is
killed at its budget, and the way onto the GPU machine (tools/bench/device_install.py) is dry-run
here: the carried wheels and facerec's own installed with the device's command."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "tools" / "bench"
ROOT = BENCH.parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_runs_every_part(tmp_path) -> None:
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, str(BENCH / "gpu_suite.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    assert [p["part"] for p in result["parts"]] == [
        "train",
        "compile",
        "loader",
        "sharded",
        "search",
        "onnx",
    ]
    assert all(p["status"] == "done" for p in result["parts"])
    rows = result["rows"]
    assert not [r for r in rows if "error" in r]
    train = [r for r in rows if r["part"] == "train"]
    assert {(r["runner"], r["channels_last"]) for r in train} == {
        (runner, cl) for runner in ("plain loop", "facerec fit") for cl in (False, True)
    }
    assert all(r["img_s"] > 0 and r["train_gflop_per_img"] > 0 for r in train)
    compiled = [r for r in rows if r["part"] == "compile"]
    assert {r["runner"] for r in compiled} == {"plain loop", "facerec fit"}
    assert all(r["compile"] and r["img_s"] > 0 for r in compiled)
    loader = [r for r in rows if r["part"] == "loader"]
    assert [r["workers"] for r in loader] == [0, 1]
    assert all(r["fit_img_s"] > 0 and r["loader_alone_img_s"] > 0 for r in loader)
    assert sorted(r["sample_rate"] for r in rows if r["part"] == "sharded") == [0.1, 1.0]
    search = {r["method"]: r for r in rows if r["part"] == "search"}
    assert search["torch matmul + topk"]["seconds"] > 0
    faiss_row = search["faiss-gpu IndexFlatIP"]
    assert faiss_row["seconds"] is None and faiss_row["note"].startswith("skipped: ")
    runtimes = [r["runtime"] for r in rows if r["part"] == "onnx"]
    assert runtimes[0] == "torch fp32" and len(runtimes) == 2
    md = (out / "results.md").read_text()
    for heading in ("## Training", "## The real loader", "## Sharded head", "## Exact top-10"):
        assert heading in md


def test_a_hung_part_is_killed_at_its_budget(tmp_path, monkeypatch) -> None:
    suite = _load("gpu_suite")

    def hang(cfg, emit) -> None:
        emit({"part": "hang", "before": 1})
        time.sleep(600)

    def fail(cfg, emit) -> None:
        raise RuntimeError("broken part")

    monkeypatch.setitem(suite.PARTS, "hang", hang)
    monkeypatch.setitem(suite.PARTS, "fail", fail)
    rows = tmp_path / "rows.jsonl"
    t = time.perf_counter()
    status = suite.run_part("hang", {}, rows, budget=2.0)
    assert status["status"] == "timed out" and time.perf_counter() - t < 15
    assert suite.run_part("fail", {}, rows, budget=30)["status"] == "failed (exit 1)"
    got = [json.loads(line) for line in rows.read_text().splitlines()]
    assert got == [
        {"part": "hang", "before": 1},  # what a part wrote before its budget ran out is kept
        {"part": "fail", "error": "RuntimeError: broken part"},
    ]


def _python312() -> str | None:
    """A CPython 3.12 with pip here, if there is one."""
    for p in (shutil.which("python3.12"), "/root/.pyenv/versions/3.12.1/bin/python3.12"):
        if p and os.path.exists(p):
            if subprocess.run([p, "-m", "pip", "--version"], capture_output=True).returncode == 0:
                return p
    return None


PROBE = """
import sys
import albumentations, faiss, jsonargparse, facerec
import numpy as np
from facerec.data.transforms import DEFAULT_AUGMENT, apply_augment, build_augment

where = {m.__name__: m.__file__ for m in (albumentations, faiss, jsonargparse, facerec)}
assert all(f.startswith(sys.argv[1]) for f in where.values()), where
assert apply_augment(build_augment(DEFAULT_AUGMENT), np.zeros((8, 8, 3), np.uint8)).shape
index = faiss.IndexFlatIP(4)
index.add(np.eye(4, dtype=np.float32))
assert index.search(np.eye(4, dtype=np.float32)[2:3], 1)[1][0, 0] == 2
"""


def test_device_install_path_dry_run(tmp_path) -> None:
    """The way onto the GPU machine (tools/bench/device_install.py), dry-run on the CPU with the
    same commands: the carried wheels, downloaded for this Python, and facerec's own, installed
    with the device's command (--no-deps --target) into a folder put first on the path of this
    interpreter, whose torch, Lightning, numpy, OpenCV, onnxruntime ... stand in for the
    device's. facerec, albumentations, jsonargparse and faiss then come from that folder, work,
    and `facerec fit --print_config` runs. Where a CPython 3.12 exists, the device's own cp312
    wheels install with the command too. Needs PyPI (skipped without)."""
    install = _load("device_install")
    assert install.check() == []  # floors (with the onnx extra) against the device's versions
    src = _source_copy(tmp_path)
    here = "{}.{}".format(*sys.version_info[:2])
    pythons = {here: sys.executable}
    if here != install.DEVICE_PYTHON and (py312 := _python312()):
        pythons[install.DEVICE_PYTHON] = py312
    for version, py in pythons.items():
        wheels, site = tmp_path / f"whl{version}", tmp_path / f"site{version}"
        if install.download(wheels, version, src):
            pytest.skip("could not download the carried wheels (no PyPI?)")
        assert install.check(wheels, version) == []
        cmd = install.DEVICE_COMMAND.split(" && ")[0].replace("python3", py, 1)
        cmd = cmd.replace("/tmp/site", str(site)).replace(".whl/", f"{wheels}/")
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (site / "facerec" / "configs" / "quickstart.yaml").is_file()
    site = tmp_path / f"site{here}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(site)}
    run = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True, "timeout": 300}
    r = subprocess.run([sys.executable, "-c", PROBE, str(site)], **run)
    assert r.returncode == 0, r.stderr[-2000:]
    fit = [sys.executable, "-m", "facerec", "fit", "--config", "quickstart.yaml"]
    r = subprocess.run([*fit, "--print_config"], **run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"using the packaged recipe {site / 'facerec' / 'configs'}" in r.stderr
    assert "class_path: facerec." in r.stdout


def _source_copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for d in ("facerec", "configs"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    return src
