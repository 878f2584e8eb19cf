"""Every packaged recipe trains from an installed wheel in an empty folder (issue 21 §1).

As a user of the wheel would: ``python -m facerec fit --config NAME.yaml`` (the packaged recipe
by its bare name), cwd an empty folder, with the recipe's own trainer settings and Lightning's
defaults untouched: the sanity check runs its default two validation batches, the recipe's
precision, accelerator, logger, callbacks and run folder stay. Only the cost is shrunk: two
training steps (``max_steps`` 2 with ``limit_train_batches`` 2, so the epoch ends and validation
runs), a tiny IResNet, 32×32 synthetic faces, and a held-out set of 160 images, more than the
sanity check's two batches of 64 (the IndexError of issue 21 §1 needed exactly that).

The wheel is the code under test, so the fits run in subprocesses with PYTHONPATH at the
wheel's install folder; all recipes run in two processes (one per core) to keep the file
around a minute. ``arcface_triplet_finetune`` starts from ``runs/arcface_r50/checkpoints/last.ckpt``
as its recipe says, i.e. from the arcface_r50 run before it in the same folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_configs import tiny_overrides

from facerec.models.dlib_resnet import PACKAGE as PRETRAINED_PACKAGE

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "configs").glob("*.yaml"))

DRIVER = r"""
import json, sys, traceback
import facerec
from facerec import recipes
from facerec.cli import main

print("@@facerec " + facerec.__file__, flush=True)
print("@@recipes " + json.dumps(sorted(recipes.list_recipes())), flush=True)
for name, args in json.loads(sys.argv[1]):
    print(f"@@start {name}", flush=True)
    try:
        rc = main(args)
    except BaseException:  # a raw traceback is a failure of the recipe, not of the driver
        traceback.print_exc(file=sys.stdout)
        rc = 99
    print(f"@@end {name} {rc}", flush=True)
"""


def _args(path: Path) -> list[str]:
    config = yaml.safe_load(path.read_text())
    args = [
        "fit",
        "--config",
        path.name,
        "--trainer.max_steps=2",
        "--trainer.limit_train_batches=2",
        *tiny_overrides(config),
        "--data.val_identities=4",
        "--data.val_images_per_identity=40",
        "--data.val_pairs=50",
    ]
    if path.stem == "finetune_small":
        args.append("--model.init_from=null")  # its backbone.pth is the user's download
    if path.stem == "finetune_dlib_r29" and importlib.util.find_spec(PRETRAINED_PACKAGE) is None:
        args.append("--model.init_from=null")  # dlib's weights come with facerec[pretrained]
    if path.stem == "partial_fc_r50":  # 8 GPUs; the recipe's own line for a try on CPUs
        args += ["--trainer.accelerator=cpu", "--trainer.devices=2"]
    return args


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """facerec built as a wheel (from a copy of the checkout) and installed into a folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for d in ("facerec", "configs"):
        shutil.copytree(ROOT / d, src / d, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q"]
    wheels = tmp / "wheels"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, src],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("facerec-*.whl")
    site = tmp / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", site, wheel],
        check=True,
        capture_output=True,
    )
    return site


def _sections(out: str) -> dict[str, tuple[int, str]]:
    """Recipe -> (exit code, its output) from the driver's markers."""
    found = {}
    for m in re.finditer(r"@@start (\S+)\n(.*?)@@end \1 (-?\d+)\n", out, re.S):
        found[m.group(1)] = (int(m.group(3)), m.group(2))
    return found


def test_every_packaged_recipe_fits_from_the_wheel(wheel_site: Path, tmp_path: Path) -> None:
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env |= {"PYTHONPATH": str(wheel_site), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    runs = [(p.stem, _args(p)) for p in RECIPES]
    # DDP (partial_fc_r50 on 2 CPU processes) re-runs its command in each process: on its own,
    # as `python -m facerec fit`; the others in two halves, one process each
    (ddp,) = [r for r in runs if r[0] == "partial_fc_r50"]
    runs.remove(ddp)
    halves = [runs[: len(runs) // 2], runs[len(runs) // 2 :]]
    names = [n for n, _ in halves[0]]
    assert names.index("arcface_r50") < names.index("arcface_triplet_finetune")
    commands = [[sys.executable, "-c", DRIVER, json.dumps(half)] for half in halves]
    commands.append([sys.executable, "-m", "facerec", *ddp[1]])
    procs = [
        subprocess.Popen(
            cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for cmd in commands
    ]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs[:2]), outs[0][-3000:] + outs[1][-3000:]
    outs[2] = f"@@start {ddp[0]}\n{outs[2]}@@end {ddp[0]} {procs[2].returncode}\n"
    out = "".join(outs)
    assert f"@@facerec {wheel_site / 'facerec' / '__init__.py'}" in out  # the wheel, not the tree
    (listed,) = re.findall(r"@@recipes (.*)", out)[:1]
    assert json.loads(listed) == [p.stem for p in RECIPES]  # the wheel carries every recipe

    sections = _sections(out)
    assert sorted(sections) == [p.stem for p in RECIPES]
    for path in RECIPES:
        rc, text = sections[path.stem]
        assert rc == 0, f"{path.name} from the wheel:\n{text[-3000:]}"
        assert f"using the packaged recipe {wheel_site / 'facerec' / 'configs' / path.name}" in text
        assert "Traceback" not in text, text[-3000:]
        assert re.search(r"trained network  : \d+\.\d\d%  \(step 2;", text), text[-3000:]
        run_dir = yaml.safe_load(path.read_text())["trainer"]["default_root_dir"]
        assert list((work / run_dir / "checkpoints").glob("*.ckpt")), f"{path.name}: no ckpt"
    assert sorted(os.listdir(work)) == ["runs"]  # nothing else written into the user's folder
