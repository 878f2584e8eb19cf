"""tools/bench/gpu_suite.py cannot rot: ``--smoke`` runs every part on the CPU, a hung part is
killed at its budget, and the way onto the GPU machine (tools/bench/device_install.py) is dry-run
here: facerec's wheel installed with the device's command, under Python 3.12 when one exists."""

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
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]


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


def _python312() -> str:
    for p in (shutil.which("python3.12"), "/root/.pyenv/versions/3.12.1/bin/python3.12"):
        if (
            p
            and os.path.exists(p)
            and subprocess.run([p, "-V"], capture_output=True).returncode == 0
        ):
            return p
    return sys.executable  # the same commands under this Python


def test_device_install_path_dry_run(tmp_path) -> None:
    """facerec's wheel, installed with the device command (--no-deps --target), imports and
    finds its recipes; its requirements are met by the device's packages plus the carried ones."""
    install = _load("device_install")
    assert install.check() == []  # floors against the device's versions (no wheel folder)
    wheels = tmp_path / ".whl"
    subprocess.run(
        [*PIP_WHEEL, "-w", str(wheels), str(_source_copy(tmp_path))],
        check=True,
        capture_output=True,
    )
    problems = install.check(wheels)
    assert problems and all("no wheel in" in p for p in problems)  # only the carried ones
    assert not any(p.startswith("facerec") for p in problems)
    py = _python312()
    if subprocess.run([py, "-m", "pip", "--version"], capture_output=True).returncode:
        pytest.skip(f"{py} has no pip")
    cmd = install.DEVICE_COMMAND.split(" && ")[0].replace("python3", py, 1)
    cmd = cmd.replace("/tmp/site", str(tmp_path / "site")).replace(".whl/", f"{wheels}/")
    subprocess.run(cmd, shell=True, check=True, capture_output=True, timeout=120)
    probe = "import facerec.recipes as r, sys; print(sys.version_info[:2], r.recipe_dir())"
    out = subprocess.run(
        [py, "-c", probe],
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": os.environ["PATH"]},
        cwd=tmp_path,  # not the checkout: the installed copy must be the one imported
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(tmp_path / "site" / "facerec" / "configs") in out


def _source_copy(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for d in ("facerec", "configs"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    return src
