"""The ``facerec`` command end to end: help, errors, fit on synthetic faces, reload."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facerec.cli import TOOL_COMMANDS, main
from facerec.training.module import FaceRecognitionModule

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--data.synthetic.identities",
    "16",
    "--data.synthetic.images_per_identity",
    "8",
    "--data.synthetic.size",
    "64",
    "--data.val_identities",
    "6",
    "--data.val_pairs",
    "40",
    "--data.num_workers",
    "0",
    "--trainer.enable_progress_bar",
    "false",
]


def fit(tmp: Path, *extra: str, config: str = "configs/quickstart.yaml") -> int:
    return main(
        [
            "fit",
            "--config",
            str(ROOT / config),
            "--trainer.default_root_dir",
            str(tmp),
            *SMALL,
            *extra,
        ]
    )


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("fit", "validate", "test", *TOOL_COMMANDS):
        assert f"  {cmd}" in out
    res = subprocess.run(
        [sys.executable, "-m", "facerec", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "fit" in res.stdout and "eval" in res.stdout


def _configurable_classes() -> list[type]:
    """Every class a recipe builds from its config (its docstring is its ``--help``)."""
    import inspect

    import facerec.heads as heads
    import facerec.losses as losses
    import facerec.models as models
    from facerec.data.datamodule import FaceDataModule
    from facerec.data.hard_identity import HardIdentityBatches
    from facerec.data.offline_triplets import OfflineTripletBatches
    from facerec.data.samplers import PKBatches
    from facerec.eval.callback import VerificationCallback
    from facerec.heads.base import CosineMarginHead, Margin
    from facerec.heads.sharded import ShardedMarginHead
    from facerec.losses.base import MetricLoss
    from facerec.models.base import Backbone

    found = [FaceRecognitionModule, FaceDataModule, PKBatches, HardIdentityBatches]
    found += [OfflineTripletBatches, VerificationCallback, ShardedMarginHead]
    for mod, base in ((models, Backbone), (heads, heads.MarginHead), (losses, MetricLoss)):
        for name in mod.__all__:
            c = getattr(mod, name)
            if inspect.isclass(c) and issubclass(c, base) and c not in (base, CosineMarginHead):
                found.append(c)
    found += [c for c in vars(heads).values() if inspect.isclass(c) and issubclass(c, Margin)]
    return [c for c in found if not inspect.isabstract(c) and c is not Margin]


def test_every_config_argument_has_help():
    """jsonargparse shows a class's docstring Args as ``--help``: every argument a config sets
    is described (a head's sizes come from the module, not the config)."""
    import inspect

    import docstring_parser

    classes = _configurable_classes()
    assert len(classes) > 25
    undocumented = []
    for c in classes:
        docs = [c.__doc__ or "", c.__init__.__doc__ or ""]
        described = {p.arg_name for d in docs for p in docstring_parser.parse(d).params}
        params = list(inspect.signature(c.__init__).parameters.values())[1:]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name not in described and p.name not in ("embedding_dim", "num_classes"):
                undocumented.append(f"{c.__name__}.{p.name}")
    assert not undocumented, undocumented


def test_a_named_heads_help_describes_its_margin(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model.head.help", "ArcFaceHead"])
    out = " ".join(capsys.readouterr().out.split())
    assert "m in radians" in out and "--model.head.easy_margin" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.foo", "3"], "--model.foo"),
        (["--model.backbone.init_args.depth", "19"], "depth 19 does not exist"),
        (["--data.root", "/no/such/dir"], "/no/such/dir does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    assert fit(tmp_path, "--trainer.max_steps", "1", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("facerec: error:") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_unknown_command(capsys):
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


def _losses(root: Path) -> list[float]:
    metrics = sorted(root.rglob("metrics.csv"))[-1]
    rows = list(csv.DictReader(metrics.open()))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


def test_quickstart_fits_loss_falls_and_checkpoint_reloads(tmp_path, capsys):
    steps = [
        "--trainer.max_steps",
        "24",
        "--trainer.log_every_n_steps",
        "1",
        "--data.batch_size",
        "32",
        "--model.optim.lr_reference_batch",
        "32",
    ]
    assert fit(tmp_path, *steps) == 0
    out = capsys.readouterr().out
    assert "trained network" in out and "untrained network" in out and "raw-pixel" in out
    losses = _losses(tmp_path)
    assert len(losses) >= 20
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.exists(), sorted(tmp_path.rglob("*.ckpt"))
    m = FaceRecognitionModule.load_from_checkpoint(ckpt).eval()
    meta = torch.load(ckpt, weights_only=False)["facerec"]
    assert meta["class_names"][:2] == ["id_00000", "id_00001"] and len(meta["class_names"]) == 16
    assert m.class_names == meta["class_names"] and meta["preprocess"]["input_size"] == [64, 64]
    x = torch.randn(3, 3, 64, 64)
    m2 = FaceRecognitionModule.load_from_checkpoint(ckpt).eval()
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))

    # a second run in the same folder works (LightningCLI's saved config is overwritten)
    assert fit(tmp_path, "--trainer.max_steps", "2") == 0
    # validate a checkpoint
    assert (
        main(
            [
                "validate",
                "--config",
                str(ROOT / "configs/quickstart.yaml"),
                *SMALL,
                "--trainer.default_root_dir",
                str(tmp_path),
                "--ckpt_path",
                str(ckpt),
            ]
        )
        == 0
    )


def test_arcface_r50_recipe_runs_two_steps(tmp_path):
    assert (
        fit(
            tmp_path,
            "--trainer.max_steps",
            "2",
            "--trainer.precision",
            "32-true",
            "--trainer.accelerator",
            "cpu",
            "--trainer.devices",
            "1",
            "--data.root",
            "null",
            "--data.batch_size",
            "4",
            "--data.num_workers",
            "0",
            "--data.pin_memory",
            "false",
            "--data.image_size",
            "[112, 112]",
            "--data.synthetic.size",
            "112",
            "--trainer.limit_val_batches",
            "1",
            config="configs/arcface_r50.yaml",
        )
        == 0
    )
    assert list(tmp_path.rglob("last.ckpt"))


# ---------------------------------------------------------------- run folders and resumes
TINY = [
    "--trainer.max_steps=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.limit_val_batches=0",
    "--trainer.logger=false",
    "--trainer.enable_model_summary=false",
    "--data.synthetic.identities=8",
    "--data.synthetic.images_per_identity=4",
    "--data.synthetic.size=32",
    "--data.image_size=[32, 32]",
    "--data.val_identities=0",
    "--data.batch_size=8",
    "--model.backbone.init_args.depth=18",
    "--model.backbone.init_args.width=0.0625",
    "--model.backbone.init_args.embedding_dim=16",
]


def tiny_fit(tmp: Path, *extra: str) -> int:
    return fit(tmp, *TINY, *extra)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("facerec: error:"), err[-5:]
    return err[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data.val_identities", "-3"], "data.val_identities is -3; expected an integer >= 0"),
        (["--data.batch_size", "-8"], "data.batch_size is -8; expected an integer >= 1"),
        (["--model.optim.lr", "-0.1"], "model.optim.lr is -0.1; expected a number >= 0"),
        (["--model.optim.weight_decay=-1e-4"], "model.optim.weight_decay is -0.0001; expected"),
        # keys renamed by issue 23: one line naming the new key
        (["--model.lr", "0.1"], "model.lr is no longer a key; write model.optim.lr"),
        (["--model.lr_schedule=poly"], "write model.optim.schedule"),
    ],
)
def test_negative_sizes_and_rates_are_one_line(tmp_path, capsys, args, message):
    assert tiny_fit(tmp_path, *args) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "checkpoints").exists()


def test_a_second_fit_in_a_busy_run_folder_is_refused_and_a_dead_ones_lock_taken_over(
    tmp_path, capsys
):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from facerec.training.callbacks import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('held', flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        assert tiny_fit(tmp_path) == 2
        line = _error_line(capsys)
        assert f"in use by another facerec fit (PID {holder.pid} on " in line
        assert not (tmp_path / "checkpoints").exists()  # the other run's files are untouched
    finally:
        holder.kill()  # dies holding the lock: the kernel drops it
        holder.wait()
    assert (tmp_path / "fit.lock").read_text().startswith(f"{holder.pid} ")
    assert tiny_fit(tmp_path) == 0
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_resume_problems_are_one_line(tmp_path, capsys):
    # no last.ckpt yet: a new run, said in one line (one script starts and requeues a run)
    assert tiny_fit(tmp_path, "--ckpt_path", "last") == 0
    err = capsys.readouterr().err
    assert f"--ckpt_path last: there is no {tmp_path}/checkpoints/last.ckpt yet; starting" in err
    assert "Traceback" not in err and "no last checkpoint available" not in err
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    capsys.readouterr()
    # a contradicting architecture, by name of the run's last or by file: named, not ignored
    for ckpt in ("last", str(last)):
        assert tiny_fit(tmp_path, "--ckpt_path", ckpt, "--model.backbone.init_args.depth=34") == 2
        assert last.read_bytes() == before
        assert "holds a model with model.backbone.init_args.depth=18 but this run sets 34" in (
            _error_line(capsys)
        )
    # another margin is no other architecture: the checkpoint's is used, and said so
    with pytest.warns(UserWarning, match=r"model.head.init_args.margin=0.4 \(the checkpoint's"):
        assert tiny_fit(tmp_path, "--ckpt_path", "last", "--model.head.init_args.margin=0.4") == 0
    before = last.read_bytes()
    # other identities: the head's size differs; the first mismatched tensors are named
    assert tiny_fit(tmp_path, "--ckpt_path", "last", "--data.synthetic.identities=10") == 2
    line = _error_line(capsys)
    assert "the checkpoint does not fit this model: head.weight (8, 16) in the file vs" in line
    assert "(10, 16) here" in line
    assert last.read_bytes() == before  # nothing lost


def test_unusable_run_folder_is_refused_before_training(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    assert tiny_fit(tmp_path / "file" / "run") == 2
    assert "--trainer.default_root_dir" in _error_line(capsys)
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    assert tiny_fit(tmp_path / "full") == 2
    assert "MiB free in" in _error_line(capsys)
    assert not (tmp_path / "full" / "checkpoints").exists()


def test_output_into_a_closed_pipe_ends_without_a_traceback():
    """`facerec recipes | head -0`: the reader is gone before facerec writes; it exits 1
    quietly (the pipe is closed before Python has even imported facerec)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "facerec", "recipes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
