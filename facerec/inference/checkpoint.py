"""The one facerec checkpoint loader: read safely, rebuild the embedding network, feed it.

A facerec checkpoint is a Lightning checkpoint with a ``facerec`` entry (class names and the
:class:`~facerec.inference.preprocess.Preprocess` of the network). Every ``.ckpt`` facerec opens
is read by :func:`read_checkpoint_dict`; :func:`load_facerec_checkpoint` rebuilds only the
``backbone`` (backbone + embedding head), never the training-only parts.
"""

from __future__ import annotations

import csv
import functools
import importlib
import inspect
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerec.data.image import ResizeMode
from facerec.errors import ConfigError, DataError, FacerecError
from facerec.metrics.calibration import Calibration, calibration_in_checkpoint

from .embedder import TorchEmbedder
from .preprocess import Preprocess

EXPECTED = "expected a .ckpt written by facerec fit"


@dataclass
class LoadedModel:
    """``backbone``: (B, 3, H, W) normalised -> (B, D) raw embeddings (eval mode, CPU), fed as
    ``preprocess`` says."""

    backbone: nn.Module
    preprocess: Preprocess
    path: Path
    class_names: list[str] | None = None
    facerec_version: str | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        return self.preprocess.input_size


#: Globals the unpickler may build beyond tensors and plain data: none (hyper-parameters are
#: plain class_path/init_args dicts). Add a class only if a facerec checkpoint really holds it.
SAFE_GLOBALS: tuple[Any, ...] = ()

#: Hyper-parameter keys under which a checkpoint may name a class, and the base(s) it must
#: subclass (module, class name). Loading imports and builds what a checkpoint names, so only the
#: package's own classes of the expected kind are admitted, checked before anything is imported.
CLASS_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "backbone": (("facerec.models.base", "Backbone"),),
    "head": (("facerec.heads.base", "MarginHead"),),
    "margin": (("facerec.heads.base", "Margin"), ("facerec.heads.base", "MarginHead")),
    "metric_loss": (("facerec.losses.base", "MetricLoss"),),
}
#: keys whose value is an option record (a dict or null). jsonargparse imports a string given
#: for a dataclass (``center_loss: facerec.__main__.X`` would run the CLI), so one is refused.
OPTION_KEYS = frozenset({"center_loss", "optim", "lr_multipliers", "freeze", "distill"})
#: the packages whose exported classes (``__all__``) :data:`CLASS_KEYS` admits
CLASS_PACKAGES = ("facerec.models", "facerec.heads", "facerec.heads.sharded", "facerec.losses")
#: the ``_instantiator`` Lightning's CLI records (and checks against its own allow-list)
LIGHTNING_INSTANTIATORS = frozenset(
    {"pytorch_lightning.cli.instantiate_module", "lightning.pytorch.cli.instantiate_module"}
)
#: the one ``_class_path`` admitted (Lightning imports it): an exact string, since importing
#: ``facerec.__main__`` runs the CLI
MODULE_CLASS_PATHS = frozenset({"facerec.training.module.FaceRecognitionModule"})


@functools.cache
def allowed_classes() -> dict[str, tuple[str, ...]]:
    """Class paths a checkpoint may name -> the :data:`CLASS_KEYS` keys each may stand under.

    Every public concrete class :data:`CLASS_PACKAGES` export that subclasses a key's base, under
    its package and its module path; built from facerec itself, never from a file.
    """
    bases = {
        key: tuple(getattr(importlib.import_module(m), n) for m, n in spec)
        for key, spec in CLASS_KEYS.items()
    }
    found: dict[str, set[str]] = {}
    for pkg_name in CLASS_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for name in getattr(pkg, "__all__", ()):
            cls = getattr(pkg, name)
            if not inspect.isclass(cls) or inspect.isabstract(cls):
                continue
            keys = {k for k, b in bases.items() if issubclass(cls, b) and cls not in b}
            for path in (f"{pkg_name}.{name}", f"{cls.__module__}.{cls.__qualname__}"):
                found.setdefault(path, set()).update(keys)
    return {path: tuple(sorted(keys)) for path, keys in found.items() if keys}


@functools.cache
def allowed_short_names() -> dict[str, tuple[str, ...]]:
    """Short names (``ArcFaceHead``) of :func:`allowed_classes` -> their keys. jsonargparse
    resolves a short name among imported subclasses and refuses an ambiguous one, so only these
    are admitted (not e.g. ``TripletMarginLoss``, which is torch's)."""
    short: dict[str, set[str]] = {}
    for path, keys in allowed_classes().items():
        short.setdefault(path.rsplit(".", 1)[1], set()).update(keys)
    return {name: tuple(sorted(keys)) for name, keys in short.items()}


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0]


def _pickle_bytes(path: Path) -> bytes:
    """The pickle stream of ``path``: the ``data.pkl`` of a zip checkpoint, else the file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.read(name) if name else b""
    return path.read_bytes()


def pickle_globals(path: Path, limit: int = 3) -> list[str]:
    """Up to ``limit`` globals (``module.name``) the pickle in ``path`` names, in file order.

    Reads opcodes with :mod:`pickletools` only (nothing is imported); a ``STACK_GLOBAL`` takes
    the two strings pushed last. [] for an unreadable stream.
    """
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(_pickle_bytes(path)):
            if isinstance(arg, str) and ("UNICODE" in op.name or op.name.endswith("STRING")):
                strings.append(str(arg))
            elif op.name == "GLOBAL" and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            if len(found) >= limit:
                break
    except Exception:  # a truncated or non-pickle stream: report what was found before it
        pass
    return [g for g in found if not g.startswith(("torch._utils.", "collections.OrderedDict"))]


def not_a_file(
    path: str | os.PathLike[str],
    expected: str = EXPECTED,
    what: str = "checkpoint",
    suffixes: tuple[str, ...] = (".ckpt",),
) -> str | None:
    """Why ``path`` is not a checkpoint file, in one line (None when it is a file). A folder is
    called one, naming its (or its ``checkpoints/``) last file of ``suffixes`` to give instead."""
    p = Path(path)
    if p.is_dir():
        in_folder = [[f for f in sorted(d.glob("*")) if f.suffix in suffixes and f.is_file()]
                     for d in (p, p / "checkpoints")]  # fmt: skip
        found = in_folder[0] or in_folder[1]
        also = f" (it holds {found[-1].relative_to(p)}: give that file)" if found else ""
        return f"{p}: is a folder{also}; {expected}"
    if not p.is_file():
        return f"{p}: {what} not found; {expected}"
    return None


def read_checkpoint_dict(path: str | os.PathLike[str], expected: str = EXPECTED) -> dict[str, Any]:
    """The checkpoint dict in ``path``: ``torch.load(weights_only=True)`` onto the CPU,
    memory-mapped where possible.

    Only tensors and plain data (plus :data:`SAFE_GLOBALS`) are built: a pickle naming code is
    refused before any of it runs. Raises DataError naming the file (and the refused global)
    and ending with ``expected``, also for a file that holds something else than a dict.
    """
    p = Path(path)
    if problem := not_a_file(p, expected):
        raise DataError(problem)
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            try:
                ckpt = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.findall(r"GLOBAL ([\w.]+)", str(e)) or pickle_globals(p)
        if named:
            raise DataError(
                f"{p}: refused: the file asks the unpickler for {named[0]}, which a facerec "
                "checkpoint never holds (it was read with weights_only=True, so nothing in it "
                f"ran); {expected}"
            ) from None
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        msg = next(
            (x for x in lines if "Unsupported" in x or "rror" in x), lines[-1] if lines else ""
        )
        raise DataError(
            f"{p}: not a PyTorch checkpoint (a plain pickle, or damaged: {msg[:120]}); {expected}"
        ) from None
    except Exception as e:
        msg = _first_line(e).split(". This is an internal")[0][:160]
        raise DataError(
            f"{p}: not a PyTorch checkpoint (damaged or truncated? {type(e).__name__}: {msg}); "
            f"{expected}"
        ) from None
    if not isinstance(ckpt, dict):
        raise DataError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict; {expected}")
    return ckpt


def check_hyperparameters(ckpt: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse a checkpoint whose hyper-parameters name anything but facerec's own model parts.

    Runs before every path that imports and builds what a checkpoint names. A class may be named
    only under a :data:`CLASS_KEYS` key (a ``class_path`` or a bare string, at any depth) and
    must be admitted for it; refused too: a ``class_path`` elsewhere, a ``_class_path`` not in
    :data:`MODULE_CLASS_PATHS`, another ``_instantiator`` than Lightning's, an
    :data:`OPTION_KEYS` value or hyper-parameters that are not a dict. Nothing is imported.
    Raises DataError naming the file, the hyper-parameter and the class path, in one line.
    """
    allowed = {**allowed_short_names(), **allowed_classes()}

    def refuse(value: Any, key: str, why: str) -> None:
        shown = repr(value) if len(repr(value)) <= 160 else repr(value)[:157] + "..."
        raise DataError(
            f"{path}: refused: its hyper-parameters name {shown} ({key}); {why}; nothing "
            "from the file was imported or run"
        )

    def admit(value: Any, key: str, where: str) -> None:
        if not isinstance(value, str):
            refuse(value, where, "expected a class path string")
        if key not in allowed.get(value, ()):
            kinds = " or ".join(n for _, n in CLASS_KEYS[key])
            refuse(value, where, f"expected one of facerec's own {kinds} classes")

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            if "class_path" in value:
                if key not in CLASS_KEYS:
                    refuse(
                        value["class_path"], "class_path", f"no class may be built under {key!r}"
                    )
                admit(value["class_path"], key, "class_path")
            for k, v in value.items():
                k = str(k)
                if k == "_instantiator":
                    if not (isinstance(v, str) and v in LIGHTNING_INSTANTIATORS):
                        refuse(v, k, "expected Lightning's own instantiate_module")
                elif k == "_class_path":
                    if not (isinstance(v, str) and v in MODULE_CLASS_PATHS):
                        refuse(v, k, "expected facerec.training.module.FaceRecognitionModule")
                elif k == "init_args":
                    walk(v, key)  # the arguments of the class under ``key``
                elif k in OPTION_KEYS and not (v is None or isinstance(v, dict)):
                    refuse(v, k, "expected a dict of its options (or null)")
                else:
                    walk(v, k)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key in CLASS_KEYS:
            admit(value, key, key)  # a dotted path is imported, a short name resolved

    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict | None):
        raise DataError(
            f"{path}: refused: its hyper_parameters are a {type(hp).__name__}, expected a dict of "
            "the model's options; nothing from the file was imported or run"
        )
    walk(hp, "")  # None: nothing to check


def check_hparams_file(path: str | os.PathLike[str]) -> None:
    """Refuse a ``load_from_checkpoint(hparams_file=...)`` whose hyper-parameters name code.

    Lightning reads it with ``yaml.full_load`` (``!!python/name:`` builds functions) and merges
    it over the checkpoint's; here it is read with ``yaml.safe_load`` (a ``.csv``: key, value
    rows) and checked by :func:`check_hyperparameters`. Raises DataError naming the file.
    """
    import yaml

    p = Path(path)
    kinds = "expected a .yaml, .yml or .csv of hyper-parameters"
    if p.suffix.lower() not in (".yaml", ".yml", ".csv"):
        raise DataError(f"{p}: hparams_file: {kinds}")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".csv":
            hp: Any = {row[0]: row[1] for row in csv.reader(text.splitlines()) if len(row) >= 2}
        else:
            hp = yaml.safe_load(text)
    except OSError as e:
        raise DataError(f"{p}: hparams_file cannot be read ({e.strerror or e}); {kinds}") from None
    except (yaml.YAMLError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(
            f"{p}: refused: hparams_file is not plain YAML or CSV ({_first_line(e)[:160]}); "
            f"{kinds}; nothing from the file was imported or run"
        ) from None
    check_hyperparameters({"hyper_parameters": {} if hp is None else hp}, p)


def shape_mismatches(
    model: dict[str, Any], found: dict[str, Any], here: str = "in the model"
) -> list[str]:
    """``name (file shape) in the file vs (model shape) <here>`` for each tensor both a model's
    state dict (or its tensors' shapes) and one read from a file hold with different shapes."""
    return [
        f"{k} {tuple(found[k].shape)} in the file vs {tuple(getattr(v, 'shape', v))} {here}"
        for k, v in model.items()
        if k in found
        and hasattr(found[k], "shape")
        and tuple(found[k].shape) != tuple(getattr(v, "shape", v))
    ]


def state_dict_mismatch(model: dict[str, Any], found: dict[str, Any], limit: int = 3) -> str:
    """The first differences between a model's state dict and one from a file ("" if none):
    shapes that differ, tensors the file lacks, tensors the model lacks."""
    kinds = (
        ("tensors differ in shape: ", shape_mismatches(model, found), "; "),
        ("missing from the file: ", [k for k in model if k not in found], ", "),
        ("not in the model: ", [k for k in found if k not in model], ", "),
    )
    return "; ".join(f"{len(v)} {what}{sep.join(v[:limit])}" for what, v, sep in kinds if v)


def weights_architecture(state: dict[str, Any]) -> str:
    """ "; the weights are <architecture> (<the backbone config that takes them>)" for a state
    dict :func:`facerec.models.pretrained.identify_state_dict` knows, else ""."""
    from facerec.models.pretrained import identify_state_dict

    try:
        found = identify_state_dict(state)
    except Exception:  # damaged shapes: the tensor names already say what differs
        found = None
    return f"; the weights are {found.name} ({found.expected})" if found is not None else ""


def _rebuild_backbone(ckpt: dict[str, Any], p: Path) -> nn.Module:
    """The backbone named by the checkpoint's hyper-parameters, with its ``backbone.*`` weights."""
    spec = (ckpt.get("hyper_parameters") or {}).get("backbone")
    if not (isinstance(spec, dict) and isinstance(spec.get("class_path"), str)):
        raise DataError(
            f"{p}: the checkpoint does not record its backbone as class_path/init_args (a model "
            f"built in Python rather than from a config?); {EXPECTED}"
        )
    from pytorch_lightning.cli import instantiate_class

    prefix = "backbone."
    state = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    try:
        backbone = instantiate_class((), spec)
        problem = state_dict_mismatch(backbone.state_dict(), state)
        if problem:
            raise DataError(
                f"{p}: its weights do not fit the {spec['class_path']} its hyper-parameters "
                f"describe ({problem}){weights_architecture(state)}; {EXPECTED} by this "
                "facerec version"
            )
        backbone.load_state_dict(state, strict=True)
    except FacerecError:
        raise
    except Exception as e:
        raise DataError(
            f"{p}: the facerec model does not rebuild from this checkpoint "
            f"({type(e).__name__}: {_first_line(e)[:200]}); {EXPECTED} by this facerec version"
        ) from None
    return backbone.eval()


#: names ``--checkpoint`` takes for a model that ships in a package (a file of that name wins)
PRETRAINED: dict[str, str] = {
    "dlib-r29": "dlib's face ResNet (29 conv layers, 150x150, 128-d), from face-recognition-models",
}


def load_pretrained_into(backbone: nn.Module, name: str) -> list[str]:
    """Copy the packaged model ``name``'s weights into ``backbone`` (``model.init_from
    dlib-r29``); returns the names loaded (``backbone.…``). ConfigError for another
    architecture, DataError when the weights package is not installed."""
    from facerec.models.dlib_resnet import DlibResNet, load_dlib_resnet

    if not isinstance(backbone, DlibResNet):
        raise ConfigError(
            f"model.init_from: {name} is {PRETRAINED[name]}; expected model.backbone to be "
            f"facerec.models.DlibResNet (it is {type(backbone).__name__})"
        )
    state = load_dlib_resnet().state_dict()
    backbone.load_state_dict(state)
    return [f"backbone.{k}" for k in state]


def load_facerec_checkpoint(path: str | os.PathLike[str]) -> LoadedModel:
    """Load the embedding network of the facerec checkpoint (or :data:`PRETRAINED` name)
    ``path`` onto the CPU.

    Raises:
        DataError: the file is missing, is not a PyTorch checkpoint, has no ``facerec`` entry,
            names anything but facerec's own model parts (:func:`check_hyperparameters`), or
            its model does not rebuild.
    """
    p = Path(path)
    if str(path) in PRETRAINED and not p.exists():
        from facerec.models.dlib_resnet import load_dlib_resnet

        backbone = load_dlib_resnet().eval()
        return LoadedModel(backbone, Preprocess.for_backbone(backbone), p)
    ckpt = read_checkpoint_dict(p)  # DataError "checkpoint not found" for a missing file
    check_hyperparameters(ckpt, p)
    meta = ckpt.get("facerec")
    if not isinstance(meta, dict) or "state_dict" not in ckpt:
        what = "a Lightning checkpoint" if "state_dict" in ckpt else "a checkpoint"
        raise DataError(
            f"{p}: {what} without the 'facerec' entry, so not a facerec checkpoint; {EXPECTED}"
        )
    backbone = _rebuild_backbone(ckpt, p)
    entry = {**Preprocess.for_backbone(backbone).to_dict(), **(meta.get("preprocess") or {})}
    preprocess = Preprocess.from_dict(entry, str(p))
    return LoadedModel(backbone, preprocess, p, meta.get("class_names"), meta.get("version"))


def checkpoint_calibration(path: str | os.PathLike[str]) -> Calibration | None:
    """The calibration a checkpoint stores (None without one, or for a :data:`PRETRAINED`
    name); DataError for a missing or unreadable file or a bad calibration entry."""
    if str(path) in PRETRAINED and not Path(path).exists():
        return None
    return calibration_in_checkpoint(read_checkpoint_dict(path), str(path))


def load_checkpoint_embedder(
    path: str | os.PathLike[str],
    device: str = "cpu",
    batch_size: int = 256,
    resize_mode: ResizeMode | None = None,
) -> TorchEmbedder:
    """A facerec checkpoint as a :class:`TorchEmbedder` fed as its stored :class:`Preprocess`
    says (``resize_mode`` overrides); DataError for a missing or non-facerec file."""
    loaded = load_facerec_checkpoint(path)
    return TorchEmbedder.from_preprocess(
        loaded.backbone.to(device), loaded.preprocess, device, batch_size, resize_mode
    )
