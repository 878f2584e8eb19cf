"""Recipes travel with the package: lookup by bare name, `facerec recipes`, and a real wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from facerec import recipes
from facerec.cli import main
from facerec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_are_the_checkout_configs() -> None:
    found = recipes.list_recipes()
    assert set(found) == {p.stem for p in (ROOT / "configs").glob("*.yaml")}
    assert found["quickstart"].read_bytes() == (ROOT / "configs/quickstart.yaml").read_bytes()


def test_bare_name_resolves_to_packaged_recipe(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for given in ("quickstart.yaml", "configs/quickstart.yaml"):
        path, packaged = recipes.resolve_config(given)
        assert packaged and Path(path) == recipes.find_recipe("quickstart")
    args = recipes.resolve_config_args(["--config", "quickstart.yaml", "--config=cosface_r50.yaml"])
    assert args[1] == str(recipes.find_recipe("quickstart"))
    assert args[2] == f"--config={recipes.find_recipe('cosface_r50')}"
    assert "using the packaged recipe" in capsys.readouterr().err


def test_local_file_wins(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("quickstart.yaml").write_text("seed_everything: 1\n")
    assert recipes.resolve_config("quickstart.yaml") == ("quickstart.yaml", False)
    # a missing path in another folder is left for LightningCLI to report
    assert recipes.resolve_config("elsewhere/cosface_r50.yaml")[1] is False
    assert recipes.resolve_config_args(["-c", "elsewhere/x.yaml"]) == ["-c", "elsewhere/x.yaml"]
    # a missing bare name that is no recipe either: one line naming the recipes
    assert recipes.resolve_config("nope.yaml") == ("nope.yaml", False)
    with pytest.raises(ConfigError, match=r"--config nope.yaml: no such file here and no "):
        recipes.resolve_config_args(["--config", "nope.yaml"])


def test_recipes_command_lists_and_copies(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "arcface_r50" in out and "ArcFace with IResNet-50" in out
    assert main(["recipes", "copy", "arcface_r50"]) == 0
    assert Path("arcface_r50.yaml").read_bytes() == (ROOT / "configs/arcface_r50.yaml").read_bytes()
    assert main(["recipes", "copy", "arcface_r50.yaml"]) == 2  # no silent overwrite
    assert "exists; pass --force" in capsys.readouterr().err
    Path("mine").mkdir()
    assert main(["recipes", "copy", "quickstart", "mine"]) == 0
    assert Path("mine/quickstart.yaml").is_file()
    with pytest.raises(ConfigError, match="no recipe called 'nope'; expected one of: "):
        recipes.find_recipe("nope")


def test_wheel_carries_recipes_and_fits_from_an_empty_folder(tmp_path) -> None:
    """Build a wheel, install it (no deps) into a fresh venv that sees this venv's packages
    through a .pth file, and run the quick start by its bare name from an empty folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for d in ("facerec", "configs"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip"]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, src],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("facerec-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", py, "install", "-q", "--no-deps", "--no-index", wheel],
        check=True,
        capture_output=True,
    )
    site = Path(
        subprocess.check_output(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # torch & co. from this venv; a plain path entry, so its editable facerec finder stays off
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [
            venv / "bin" / "facerec",
            "fit",
            "--config",
            "quickstart.yaml",
            "--trainer.max_steps",
            "2",
            # the recipe as shipped, on a smaller synthetic set (the full one renders 4,500
            # faces and validates twice: ~50 s on 2 vCPUs)
            "--data.synthetic.identities",
            "20",
            "--data.val_identities",
            "5",
            "--data.val_pairs",
            "50",
            "--data.batch_size",
            "32",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    packaged = site / "facerec" / "configs" / "quickstart.yaml"
    assert f"using the packaged recipe {packaged}" in r.stderr
    assert list((work / "runs" / "quickstart" / "checkpoints").glob("*.ckpt"))
    assert not (work / "configs").exists()
