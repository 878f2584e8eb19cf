"""Each packaged recipe's first training losses at a fixed seed, shrunk to run on a CPU.

    .venv/bin/python tools/bench/recipe_losses.py [--steps 3] [NAME ...]

Every recipe in ``configs/`` is fitted through ``facerec fit`` exactly as
``tests/test_configs.py`` does (the recipe as written; only its cost shrunk by that file's
``tiny_overrides``: a tiny IResNet, 32×32 synthetic faces, a batch of 8 or P×K = 4×2), for
``--steps`` steps on one CPU in float32 with seed 0, each in its own process. Prints one
line per recipe, ``NAME  loss1 loss2 ...`` (the logged ``train/loss`` of each step), so two
checkouts can be compared on the same machine: run it from each (the overrides come from that
checkout's tests/test_configs.py, so a renamed key is shrunk the same way).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _losses(run: Path) -> list[float]:
    files = sorted(run.rglob("metrics.csv"))
    if not files:
        return []
    rows = list(csv.DictReader(files[-1].open()))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


def run_recipe(path: Path, steps: int) -> tuple[list[float], str]:
    """(losses of the first ``steps`` steps, last error line or "") of recipe ``path``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_configs import _overrides

    config = yaml.safe_load(path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "fit",
            "--config",
            str(path),
            *_overrides(config, Path(tmp)),
            f"--trainer.max_steps={steps}",
            "--seed_everything=0",
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.run(
            [sys.executable, "-m", "facerec", *args],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )
        err = ""
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            err = lines[-1] if lines else f"exit {proc.returncode}"
        return _losses(Path(tmp)), err


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="recipe names (default: all in configs/)")
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args(argv)
    paths = sorted((ROOT / "configs").glob("*.yaml"))
    if a.names:
        paths = [p for p in paths if p.stem in a.names]
    print(f"# {ROOT}: first {a.steps} training losses, seed 0, tiny CPU shrink")
    for p in paths:
        losses, err = run_recipe(p, a.steps)
        shown = " ".join(f"{v:.6f}" for v in losses)
        print(f"{p.stem:<28} {shown}" + (f"  ERROR: {err}" if err else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
