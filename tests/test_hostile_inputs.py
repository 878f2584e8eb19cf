"""Hostile inputs: files a user is handed that try to run code or to derail a run.

One table, :data:`CASES`, that future bad-input cases join: each row builds a hostile input in a
temporary folder, hands it to one entry point (a ``facerec`` command run in-process, or a library
loader), and states the words its one-line refusal must have. Every row is also checked for:

* exit status 2 (or :class:`facerec.errors.FacerecError` from a library call), one line, no
  traceback, naming the file;
* for payloads: the payload did NOT run. Each payload, when unpickled by a plain ``torch.load``
  (weights_only=False) or ``pickle.load``, creates a marker folder; a positive control below proves
  that it does, so its absence after the refusal means facerec never ran it.

Payload shapes (issue 11): a zip checkpoint with an object inside, a bare pickle, and a real
facerec checkpoint with an object hidden in its ``facerec`` entry; plus a checkpoint whose
hyper-parameters name a function (``os.kill`` as the margin head) that Lightning would import and
call. Entry points: ``facerec eval --checkpoint``, ``facerec export``, ``facerec embed
--checkpoint``, ``facerec fit --model.init_from`` (also the path for insightface/torchvision
``.pth``), ``facerec fit --model.distill.teacher``, ``facerec fit --ckpt_path``, ``facerec
validate --ckpt_path``, ``FaceRecognitionModule.load_from_checkpoint``, ``load_facerec_checkpoint``.

Data and run-folder cases: a truncated ``last.ckpt`` on ``--ckpt_path last`` (names the newest
intact checkpoint beside it), a RecordIO ``property`` with fewer or more identities than its
labels, an identity whose images are all unreadable, a data root with one identity.

To add a case: write a ``make(env) -> Path`` for the input, pick (or add) an entry point, and
append a :class:`Case` with the words its one-line message must contain.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facerec.cli import main
from facerec.errors import FacerecError

ROOT = Path(__file__).resolve().parents[1]
#: a fit of a few seconds: 6 synthetic identities (4 training), 32x32, a tiny IResNet
TINY = [
    "--config", str(ROOT / "configs/quickstart.yaml"),
    "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "0",
    "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
    "--data.synthetic.identities", "6", "--data.synthetic.images_per_identity", "4",
    "--data.synthetic.size", "32", "--data.image_size", "[32,32]",
    "--data.val_identities", "2", "--data.val_pairs", "8",
    "--model.backbone.init_args.input_size", "[32,32]",
    "--model.backbone.init_args.width", "0.125", "--model.backbone.init_args.embedding_dim", "8",
    "--data.batch_size", "8", "--data.num_workers", "0",
]  # fmt: skip

#: the options of TINY that ``facerec validate`` takes too (no trainer.max_epochs/max_steps)
VALIDATE_TINY = [a for i, a in enumerate(TINY) if "max_epochs" not in a and
                 "max_epochs" not in TINY[i - 1]]  # fmt: skip

MARKER = "PAYLOAD_RAN"


class Payload:
    """Unpickling this object calls ``os.mkdir(<folder>/PAYLOAD_RAN)``: a visible side effect."""

    def __init__(self, folder: Path) -> None:
        self.marker = str(folder / MARKER)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real facerec checkpoint: ``facerec fit`` of the tiny config for 2 steps."""
    run = tmp_path_factory.mktemp("run")
    argv = ["fit", *TINY, "--trainer.max_steps", "2", "--trainer.default_root_dir", str(run)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    return run / "checkpoints" / "last.ckpt"


@dataclass
class Env:
    """What a case builds its input from: a scratch folder and a real checkpoint."""

    tmp: Path
    real_ckpt: Path

    def real(self) -> dict:
        return torch.load(self.real_ckpt, weights_only=True)


# ------------------------------------------------------------------ hostile files
def zip_with_object(env: Env) -> Path:
    """A zip (torch.save) checkpoint with a payload object beside a plausible state_dict."""
    path = env.tmp / "zip_object.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "facerec": {}, "x": Payload(env.tmp)}, path)
    return path


def bare_pickle(env: Env) -> Path:
    """A plain pickle (no zip container), the legacy ``.pth`` shape."""
    path = env.tmp / "bare.pth"
    path.write_bytes(pickle.dumps({"state_dict": {}, "x": Payload(env.tmp)}, protocol=2))
    return path


def hidden_in_facerec(env: Env) -> Path:
    """The real checkpoint, every tensor intact, with a payload in its ``facerec`` entry."""
    ckpt = env.real()
    ckpt["facerec"]["note"] = Payload(env.tmp)
    path = env.tmp / "hidden.ckpt"
    torch.save(ckpt, path)
    return path


def hparams_name_a_function(env: Env) -> Path:
    """The real checkpoint whose hyper-parameters make ``os.kill`` the head: Lightning would
    import it and call ``head(embedding_dim, num_classes)``."""
    ckpt = env.real()
    ckpt["hyper_parameters"]["head"] = "os.kill"
    path = env.tmp / "hparams.ckpt"
    torch.save(ckpt, path)
    return path


def damaged_last_ckpt(env: Env) -> Path:
    """A run folder whose last.ckpt was truncated (a full disk), with an intact older one."""
    ckdir = env.tmp / "run" / "checkpoints"
    ckdir.mkdir(parents=True)
    intact = ckdir / "epoch000-step000002.ckpt"
    intact.write_bytes(env.real_ckpt.read_bytes())
    last = ckdir / "last.ckpt"
    last.write_bytes(env.real_ckpt.read_bytes()[:5000])
    return last


def _faces(root: Path, identities: int, per_id: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for i in range(identities):
        (root / f"p{i}").mkdir(parents=True)
        for j in range(per_id):
            cv2.imwrite(str(root / f"p{i}" / f"{j}.png"), rng.integers(0, 255, (32, 32, 3)))
    return root


def recordio_property(said: int) -> Callable[[Env], Path]:
    """A RecordIO set of 4 identities whose ``property`` says ``said``."""

    def make(env: Env) -> Path:
        from facerec.data.recordio import pack_folder

        pack_folder(_faces(env.tmp / "faces", 4), env.tmp / "data", num_workers=1)
        prop = env.tmp / "data" / "property"
        prop.write_text(f"{said},32,32\n")
        return prop

    return make


def identity_all_unreadable(env: Env) -> Path:
    """A data root where every image of identity p1 is corrupt."""
    root = _faces(env.tmp / "data", 3)
    for f in (root / "p1").iterdir():
        f.write_bytes(b"not an image")
    return root / "p1"


def one_identity(env: Env) -> Path:
    return _faces(env.tmp / "data", 1)


PAYLOADS: dict[str, Callable[[Env], Path]] = {
    "zip_object": zip_with_object,
    "bare_pickle": bare_pickle,
    "hidden_in_facerec": hidden_in_facerec,
}


# ------------------------------------------------------------------ entry points
def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(argv)
    return rc, capsys.readouterr().err


def _library(call: Callable[[], object]) -> tuple[int, str]:
    try:
        call()
    except FacerecError as e:
        return 2, f"facerec: error: {e}\n"
    return 0, ""


def _images(env: Env) -> Path:
    folder = env.tmp / "images"
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "a.png"), np.full((32, 32, 3), 128, np.uint8))
    return folder


def eval_cmd(path: Path, env: Env, capsys) -> tuple[int, str]:
    out = env.tmp / "eval_out"
    argv = ["eval", "--checkpoint", str(path), "--synthetic", "--synthetic-pairs", "20"]
    return _cli([*argv, "--out", str(out)], capsys)


def export_cmd(path: Path, env: Env, capsys) -> tuple[int, str]:
    return _cli(["export", "--checkpoint", str(path), "--out", str(env.tmp / "m.onnx")], capsys)


def embed_cmd(path: Path, env: Env, capsys) -> tuple[int, str]:
    argv = ["embed", "--checkpoint", str(path), "--out", str(env.tmp / "e.npy"), "--no-progress"]
    return _cli([*argv, str(_images(env))], capsys)


def fit_init_from(path: Path, env: Env, capsys) -> tuple[int, str]:
    argv = ["fit", *TINY, "--trainer.max_steps", "1", "--model.init_from", str(path)]
    return _cli([*argv, "--trainer.default_root_dir", str(env.tmp / "run")], capsys)


def fit_ckpt_path(path: Path, env: Env, capsys) -> tuple[int, str]:
    argv = ["fit", *TINY, "--trainer.max_steps", "4", "--ckpt_path", str(path)]
    return _cli([*argv, "--trainer.default_root_dir", str(env.tmp / "run")], capsys)


def fit_distill_teacher(path: Path, env: Env, capsys) -> tuple[int, str]:
    argv = ["fit", *TINY, "--trainer.max_steps", "1", "--model.distill.teacher", str(path)]
    return _cli([*argv, "--trainer.default_root_dir", str(env.tmp / "run")], capsys)


def validate_ckpt_path(path: Path, env: Env, capsys) -> tuple[int, str]:
    argv = ["validate", *VALIDATE_TINY, "--ckpt_path", str(path)]
    return _cli([*argv, "--trainer.default_root_dir", str(env.tmp / "run")], capsys)


def run_test_ckpt_path(path: Path, env: Env, capsys) -> tuple[int, str]:
    argv = ["test", *VALIDATE_TINY, "--ckpt_path", str(path)]
    return _cli([*argv, "--trainer.default_root_dir", str(env.tmp / "run")], capsys)


def fit_resume_last(path: Path, env: Env, capsys) -> tuple[int, str]:
    argv = ["fit", *TINY, "--trainer.max_steps", "4", "--ckpt_path", "last"]
    return _cli([*argv, "--trainer.default_root_dir", str(env.tmp / "run")], capsys)


def fit_data(path: Path, env: Env, capsys) -> tuple[int, str]:
    """``facerec fit`` on the data root ``env.tmp/data``."""
    argv = ["fit", *TINY, "--trainer.max_steps", "2", "--data.root", str(env.tmp / "data")]
    argv += ["--data.val_identities", "0", "--trainer.default_root_dir", str(env.tmp / "run")]
    return _cli(argv, capsys)


def load_from_checkpoint(path: Path, env: Env, capsys) -> tuple[int, str]:
    from facerec.training.module import FaceRecognitionModule

    return _library(lambda: FaceRecognitionModule.load_from_checkpoint(path))


def load_facerec_checkpoint(path: Path, env: Env, capsys) -> tuple[int, str]:
    from facerec.inference.checkpoint import load_facerec_checkpoint as load

    return _library(lambda: load(path))


def doctor_cmd(path: Path, env: Env, capsys) -> tuple[int, str]:
    data = _faces(env.tmp / "doctor_data", 2)
    argv = ["doctor", "--data", str(data), "--checkpoint", str(path)]
    return _cli([*argv, "--out", str(env.tmp / "doctor_out")], capsys)


ENTRY_POINTS: dict[str, Callable[..., tuple[int, str]]] = {
    "eval": eval_cmd,
    "export": export_cmd,
    "embed": embed_cmd,
    "fit_init_from": fit_init_from,
    "fit_ckpt_path": fit_ckpt_path,
    "fit_distill_teacher": fit_distill_teacher,
    "validate_ckpt_path": validate_ckpt_path,
    "test_ckpt_path": run_test_ckpt_path,
    "load_from_checkpoint": load_from_checkpoint,
    "load_facerec_checkpoint": load_facerec_checkpoint,
    "doctor": doctor_cmd,
}


# ------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Case:
    """One hostile input: ``make`` writes it, ``entry`` consumes it, ``words`` must be said."""

    id: str
    make: Callable[[Env], Path]
    entry: Callable[..., tuple[int, str]]
    words: tuple[str, ...]


CASES: list[Case] = [
    *(
        Case(f"{shape}-{entry}", make, run, ("refused", "posix.mkdir", "nothing in it ran"))
        for shape, make in PAYLOADS.items()
        for entry, run in ENTRY_POINTS.items()
    ),
    *(
        Case(f"hparams_function-{entry}", hparams_name_a_function, ENTRY_POINTS[entry],
             ("refused", "'os.kill' (head)", "facerec's own MarginHead"))
        for entry in ("eval", "export", "fit_ckpt_path", "load_from_checkpoint")
    ),
    Case("damaged_last_ckpt-fit_resume_last", damaged_last_ckpt, fit_resume_last,
         ("cannot resume", "not a PyTorch checkpoint", "newest intact checkpoint beside it is",
          "--ckpt_path", "epoch000-step000002.ckpt")),
    Case("recordio_property_fewer-fit", recordio_property(2), fit_data,
         ("says 2 identities", "run 0..3", "index past the margin head", "to be 4")),
    Case("recordio_property_more-fit", recordio_property(7), fit_data,
         ("says 7 identities", "identities that do not exist", "to be 4")),
    Case("identity_all_unreadable-fit", identity_all_unreadable, fit_data,
         ("identity 'p1' (label 1): all its 3 images are unreadable",)),
    Case("one_identity-fit", one_identity, fit_data,
         ("has 1 identity; at least 2 training identities are needed",)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_refused_in_one_line(case: Case, real_ckpt: Path, tmp_path: Path, capsys):
    env = Env(tmp_path, real_ckpt)
    path = case.make(env)
    rc, err = case.entry(path, env, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.match(r"facerec( [\w-]+)?: error: ", lines[0]), err
    assert str(path) in err, err
    for words in case.words:
        assert words in err, (words, err)
    assert not (tmp_path / MARKER).exists(), "the payload ran"


@pytest.mark.parametrize("shape", list(PAYLOADS))
def test_payloads_are_live(shape: str, real_ckpt: Path, tmp_path: Path):
    """Positive control: a plain (unsafe) load of each payload file does run it, so the absence
    of the marker above means facerec refused the file before any of it ran."""
    path = PAYLOADS[shape](Env(tmp_path, real_ckpt))
    with warnings.catch_warnings(), contextlib.suppress(RuntimeError):
        warnings.simplefilter("ignore")
        torch.load(path, weights_only=False)  # a bare pickle runs, then fails the magic number
    assert (tmp_path / MARKER).is_dir()


def test_real_checkpoint_loads_through_every_safe_path(real_ckpt: Path, tmp_path: Path):
    """Our own checkpoints need nothing beyond weights_only=True (no allow-listed globals)."""
    from facerec.inference.checkpoint import SAFE_GLOBALS, load_facerec_checkpoint
    from facerec.training.module import FaceRecognitionModule

    assert SAFE_GLOBALS == ()
    ckpt = torch.load(real_ckpt, weights_only=True)
    assert ckpt["facerec"]["class_names"] and "hyper_parameters" in ckpt
    loaded = load_facerec_checkpoint(real_ckpt)
    module = FaceRecognitionModule.load_from_checkpoint(real_ckpt)
    assert loaded.input_size == (32, 32) and module.embedding_dim == 8
    with pytest.raises(FacerecError, match="weights_only=True"):
        FaceRecognitionModule.load_from_checkpoint(real_ckpt, weights_only=False)


def test_module_built_in_python_saves_plain_hyperparameters(tmp_path: Path):
    """A module built from objects (not a config) stores CenterLossOptions as a dict, so its
    checkpoint loads with weights_only=True."""
    from facerec.heads import ArcFaceHead
    from facerec.models.iresnet import IResNet
    from facerec.training.module import CenterLossOptions, FaceRecognitionModule

    backbone = IResNet(depth=18, width=0.125, embedding_dim=8, input_size=(32, 32))
    m = FaceRecognitionModule(
        backbone=backbone, head=ArcFaceHead, num_classes=4, center_loss=CenterLossOptions(0.1)
    )
    assert m.hparams["center_loss"] == {"weight": 0.1, "alpha": 0.5}
    path = tmp_path / "hp.pt"
    torch.save({"hyper_parameters": dict(m.hparams)}, path)
    assert torch.load(path, weights_only=True)["hyper_parameters"]["center_loss"]["weight"] == 0.1


# ------------------------------------------------- crafted hyper-parameters (issue 21 §2)
WRITTEN = "WRITTEN_BY_CHECKPOINT.pth"


def _write_spec(env: Env) -> dict:
    """``facerec.io.atomic_write_text(path, text)`` as a class_path: built, it writes a file."""
    return {
        "class_path": "facerec.io.atomic_write_text",
        "init_args": {"path": str(env.tmp / WRITTEN), "text": "import os"},
    }


def _payload_module(env: Env) -> str:
    """A module on ``env.tmp`` (which the crafted tests put on sys.path) whose import writes
    ``WRITTEN``: the stand-in for any module with an import-time effect (``facerec.__main__``
    runs the command line). Named after the folder, so no earlier test's import is cached."""
    name = "facerec_payload_" + re.sub(r"\W", "_", env.tmp.name)
    code = f"from pathlib import Path\nPath({str(env.tmp / WRITTEN)!r}).write_text('import os')\n"
    (env.tmp / f"{name}.py").write_text(code)
    return name


def _replace(hp: dict, new: dict) -> None:
    hp.clear()
    hp.update(new)


#: name -> (edit of the real checkpoint's hyper-parameters, the words the refusal names). The
#: kinds of issue 21 §2: functions, other facerec classes, torch.nn classes with side-effect
#: arguments, builtins, class paths nested in init_args or under other keys, a short name, a
#: string jsonargparse would import, non-string class paths, non-dict hyper-parameters.
CRAFTED: dict[str, tuple[Callable[[dict, Env], None], str]] = {
    "function_as_backbone": (
        lambda hp, env: hp.update(backbone=_write_spec(env)), "'facerec.io.atomic_write_text'"),
    "function_as_head_string": (
        lambda hp, env: hp.update(head="facerec.io.atomic_write_text"),
        "'facerec.io.atomic_write_text' (head)"),
    "os_system_as_head": (lambda hp, env: hp.update(head="os.system"), "'os.system' (head)"),
    "builtin_open": (
        lambda hp, env: hp.update(backbone={"class_path": "builtins.open",
                                            "init_args": {"file": str(env.tmp / WRITTEN),
                                                          "mode": "w"}}),
        "'builtins.open' (class_path)"),
    "other_facerec_class": (
        lambda hp, env: hp.update(backbone={"class_path": "facerec.data.datamodule.FaceDataModule",
                                            "init_args": {"root": str(env.tmp)}}),
        "'facerec.data.datamodule.FaceDataModule'"),
    "facerec_callback": (
        lambda hp, env: hp.update(head={"class_path": "facerec.training.callbacks.RunLock",
                                        "init_args": {"folder": str(env.tmp / WRITTEN)}}),
        "'facerec.training.callbacks.RunLock'"),
    "lightning_cli_class": (
        lambda hp, env: hp.update(backbone={"class_path": "pytorch_lightning.cli.LightningCLI"}),
        "'pytorch_lightning.cli.LightningCLI'"),
    "facerec_class_of_another_kind": (
        lambda hp, env: hp.update(head={"class_path": "facerec.models.IResNet"}),
        "'facerec.models.IResNet'"),
    "torch_nn_class": (
        lambda hp, env: hp.update(metric_loss={"class_path": "torch.nn.TripletMarginLoss"}),
        "'torch.nn.TripletMarginLoss'"),
    "torch_nn_short_name": (
        lambda hp, env: hp.update(metric_loss="TripletMarginLoss"),
        "'TripletMarginLoss' (metric_loss)"),
    "torch_nn_with_arguments": (
        lambda hp, env: hp.update(backbone={"class_path": "torch.nn.Module",
                                            "init_args": {"path": str(env.tmp / WRITTEN)}}),
        "'torch.nn.Module'"),
    "nested_in_sharded_margin": (
        lambda hp, env: hp.update(head={"class_path": "facerec.heads.sharded.ShardedMarginHead",
                                        "init_args": {"margin": _write_spec(env)}}),
        "'facerec.io.atomic_write_text' (class_path)"),
    "nested_in_backbone_init_args": (
        lambda hp, env: hp["backbone"]["init_args"].update(block=_write_spec(env)),
        "'facerec.io.atomic_write_text' (class_path); no class may be built under 'block'"),
    "under_an_option_key": (
        lambda hp, env: hp.update(distill=_write_spec(env)), "'facerec.io.atomic_write_text'"),
    "under_dict_kwargs": (
        lambda hp, env: hp["backbone"].update(dict_kwargs={"head": "facerec.io.atomic_write_text"}),
        "'facerec.io.atomic_write_text' (head)"),
    "import_path_as_option_record": (
        lambda hp, env: hp.update(center_loss=f"{_payload_module(env)}.X"),
        "(center_loss); expected a dict of its options"),
    "module_class_path": (
        lambda hp, env: hp.update(_class_path=f"{_payload_module(env)}.FaceRecognitionModule"),
        "(_class_path); expected facerec.training.module.FaceRecognitionModule"),
    "non_string_class_path": (
        lambda hp, env: hp.update(backbone={"class_path": ["facerec.io", "atomic_write_text"]}),
        "['facerec.io', 'atomic_write_text']"),
    "instantiator": (
        lambda hp, env: hp.update(_instantiator="facerec.io.atomic_write_text"),
        "'facerec.io.atomic_write_text' (_instantiator)"),
    "unhashable_instantiator": (
        lambda hp, env: hp.update(_instantiator={"a": 1}), "{'a': 1} (_instantiator)"),
    "class_path_at_the_top": (
        lambda hp, env: _replace(hp, _write_spec(env)), "'facerec.io.atomic_write_text'"),
}  # fmt: skip


def crafted(name: str) -> Callable[[Env], Path]:
    def make(env: Env) -> Path:
        ckpt = env.real()
        CRAFTED[name][0](ckpt["hyper_parameters"], env)
        path = env.tmp / f"{name}.ckpt"
        torch.save(ckpt, path)
        return path

    return make


#: the entry points that only read a checkpoint (about 0.1 s each): every crafted file goes
#: through each; the ones that start a fit (about 1 s each) take two kinds of crafted file
READERS = ("eval", "export", "embed", "doctor", "load_facerec_checkpoint", "load_from_checkpoint")
CRAFTED_CASES = [
    *((name, entry) for name in CRAFTED for entry in READERS),
    *((name, entry) for name in ("function_as_backbone", "import_path_as_option_record")
      for entry in ENTRY_POINTS if entry not in READERS),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "entry"), CRAFTED_CASES, ids=[f"{n}-{e}" for n, e in CRAFTED_CASES]
)
def test_crafted_hyperparameters_build_nothing(
    name: str, entry: str, real_ckpt: Path, tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.syspath_prepend(str(tmp_path))  # where _payload_module writes its module
    env = Env(tmp_path, real_ckpt)
    path = crafted(name)(env)
    rc, err = ENTRY_POINTS[entry](path, env, capsys)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "refused" in err and CRAFTED[name][1] in err, err
    assert str(path) in err and "nothing from the file was imported or run" in err, err
    assert not (tmp_path / WRITTEN).exists(), "the checkpoint wrote a file"


def test_crafted_payload_is_live(tmp_path: Path, real_ckpt: Path):
    """Positive control: built as Lightning would build it, the spec does write its file."""
    from pytorch_lightning.cli import instantiate_class

    spec = _write_spec(Env(tmp_path, real_ckpt))
    instantiate_class((), {"class_path": spec["class_path"], "init_args": spec["init_args"]})
    assert (tmp_path / WRITTEN).read_text() == "import os"


def test_builtin_open_payload_is_live(tmp_path: Path, real_ckpt: Path):
    """Positive control: the old rebuild (instantiate_class of the backbone spec) creates it."""
    from pytorch_lightning.cli import instantiate_class

    hp = Env(tmp_path, real_ckpt).real()["hyper_parameters"]
    CRAFTED["builtin_open"][0](hp, Env(tmp_path, real_ckpt))
    instantiate_class((), hp["backbone"]).close()
    assert (tmp_path / WRITTEN).exists()


@pytest.mark.parametrize("name", ["import_path_as_option_record", "torch_nn_short_name"])
def test_import_and_short_name_payloads_are_live(
    name: str, tmp_path: Path, real_ckpt: Path, monkeypatch
):
    """Positive control: Lightning's builder (what load_from_checkpoint and fit --ckpt_path
    hand the hyper-parameters to) imports a string given for an option record, running the
    module, and resolves a bare class name to torch.nn's class."""
    from pytorch_lightning.cli import instantiate_module

    from facerec.training.module import FaceRecognitionModule

    monkeypatch.syspath_prepend(str(tmp_path))
    env = Env(tmp_path, real_ckpt)
    hp = env.real()["hyper_parameters"]
    CRAFTED[name][0](hp, env)
    hp.pop("_instantiator", None)
    with warnings.catch_warnings(), contextlib.suppress(Exception):
        warnings.simplefilter("ignore")
        module = instantiate_module(FaceRecognitionModule, hp)
        assert type(module.metric_loss) is torch.nn.TripletMarginLoss  # the short name
    if name == "import_path_as_option_record":
        assert (tmp_path / WRITTEN).exists()  # the import ran (the build then failed)


def test_hparams_file_of_load_from_checkpoint_is_checked(real_ckpt: Path, tmp_path: Path):
    """``load_from_checkpoint(hparams_file=...)`` merges a YAML over the checkpoint's options:
    it is checked too (read with safe_load: a ``!!python/name`` tag is refused)."""
    from facerec.inference.checkpoint import check_hparams_file
    from facerec.training.module import FaceRecognitionModule

    bad = tmp_path / "hp.yaml"
    bad.write_text(f"center_loss: {_payload_module(Env(tmp_path, real_ckpt))}.X\n")
    tag = tmp_path / "tag.yaml"
    tag.write_text("head: !!python/name:os.system\n")
    for f, named in ((bad, "(center_loss)"), (tag, "not plain YAML or CSV")):
        rc, err = _library(lambda f=f: FaceRecognitionModule.load_from_checkpoint(
            real_ckpt, hparams_file=f))  # fmt: skip
        assert rc == 2 and named in err and str(f) in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / WRITTEN).exists()
    good = tmp_path / "good.yaml"
    good.write_text("lr: 0.05\nhead: {class_path: facerec.heads.CosFaceHead}\n")
    check_hparams_file(good)  # plain options and facerec's own classes pass


def test_newest_intact_checkpoint_is_never_a_crafted_one(
    real_ckpt: Path, tmp_path: Path, capsys, monkeypatch
):
    """A damaged last.ckpt: the checkpoint proposed instead is the intact one, never a newer
    file whose hyper-parameters name code; with only such a file beside it, none is proposed."""
    from facerec.training.callbacks import newest_intact_checkpoint

    env = Env(tmp_path, real_ckpt)
    last = damaged_last_ckpt(env)  # beside it: an intact epoch000-step000002.ckpt
    ckdir = last.parent
    os.utime(ckdir / "epoch000-step000002.ckpt", (1, 1))  # the oldest file
    hostile = crafted("function_as_backbone")(env).replace(ckdir / "epoch001-step000004.ckpt")
    assert newest_intact_checkpoint(ckdir, exclude=last) == ckdir / "epoch000-step000002.ckpt"
    rc, err = fit_resume_last(last, env, capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "newest intact checkpoint beside it is" in err and "epoch000-step000002" in err, err
    assert hostile.name not in err, err
    (ckdir / "epoch000-step000002.ckpt").unlink()
    assert newest_intact_checkpoint(ckdir, exclude=last) is None
    assert not (tmp_path / WRITTEN).exists()


def test_allow_list_holds_only_model_parts():
    from facerec.heads import ArcFaceHead
    from facerec.inference.checkpoint import allowed_classes
    from facerec.models import IResNet

    allowed = allowed_classes()
    assert allowed["facerec.models.IResNet"] == ("backbone",)
    assert allowed["facerec.models.iresnet.IResNet"] == ("backbone",)
    assert set(allowed["facerec.heads.ArcFaceHead"]) == {"head", "margin"}
    assert "facerec.heads.sharded.ShardedMarginHead" in allowed
    assert not [p for p in allowed if not p.startswith(("facerec.models.", "facerec.heads.",
                                                        "facerec.losses."))]  # fmt: skip
    assert IResNet and ArcFaceHead  # the names above are the classes users configure


@pytest.mark.parametrize(
    ("hparams", "named"),
    [
        ({"head": "os.kill"}, "'os.kill' (head)"),
        ({"head": {"class_path": "facerec.heads.sharded.ShardedMarginHead",
                   "init_args": {"margin": "os.kill"}}}, "'os.kill' (margin)"),
        ({"metric_loss": {"class_path": "subprocess.Popen", "init_args": {"args": ["x"]}}},
         "'subprocess.Popen' (class_path)"),
        ({"backbone": {"class_path": "builtins.exec"}}, "'builtins.exec' (class_path)"),
    ],
)  # fmt: skip
def test_hyperparameters_naming_code_outside_facerec_are_refused(hparams: dict, named: str):
    from facerec.errors import DataError
    from facerec.inference.checkpoint import check_hyperparameters

    with pytest.raises(DataError, match=re.escape(named)):
        check_hyperparameters({"hyper_parameters": hparams}, "x.ckpt")


def test_plain_hyperparameters_pass():
    from facerec.inference.checkpoint import check_hyperparameters

    check_hyperparameters(
        {"hyper_parameters": {
            "backbone": {"class_path": "facerec.models.IResNet", "init_args": {"depth": 18}},
            "metric_loss": {"class_path": "facerec.losses.TripletLoss"},
            "head": {"class_path": "facerec.heads.sharded.ShardedMarginHead",
                     "init_args": {"margin": {"class_path": "facerec.heads.ArcFaceHead"}}},
            "init_from": "model.ckpt", "optimizer": "sgd",
            "_instantiator": "pytorch_lightning.cli.instantiate_module",
        }},
        "x.ckpt",
    )  # fmt: skip
