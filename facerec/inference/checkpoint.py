"""The one facerec checkpoint loader: read safely, rebuild the embedding network, feed it.

A facerec checkpoint is a Lightning checkpoint with a ``facerec`` entry (written by
:meth:`facerec.training.module.FaceRecognitionModule.on_save_checkpoint`) holding the class names
and the
:class:`~facerec.inference.preprocess.Preprocess` the embedding network expects. Every ``.ckpt``
facerec opens (``facerec eval``/``export``/``embed``, ``init_from``, resuming) is read by
:func:`read_checkpoint_dict` (``torch.load(weights_only=True)``). :func:`load_facerec_checkpoint`
rebuilds only the ``backbone`` (backbone + embedding head) from the stored ``class_path`` /
``init_args`` and its ``backbone.*`` weights: the margin head, CenterLoss centres and optimiser
state are training-only and never built.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from facerec.data.image import ResizeMode
from facerec.errors import ConfigError, DataError, FacerecError

from .embedder import TorchEmbedder
from .preprocess import Preprocess

EXPECTED = "expected a .ckpt written by facerec fit"


@dataclass
class LoadedModel:
    """The embedding network of a checkpoint and what it expects as input.

    ``backbone``: (B, 3, H, W) normalised -> (B, D) raw embeddings, in eval mode on the CPU.
    ``preprocess``: the checkpoint's :class:`Preprocess`.
    """

    backbone: nn.Module
    preprocess: Preprocess
    path: Path
    class_names: list[str] | None = None
    facerec_version: str | None = None

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        return self.preprocess.input_size


#: Globals (classes, functions) a facerec checkpoint may ask the unpickler for, beyond the
#: tensors, storages and plain Python data ``torch.load(weights_only=True)`` builds anyway. Our
#: checkpoints need none: hyper-parameters are stored as plain data (class_path/init_args dicts,
#: see :class:`facerec.training.module.FaceRecognitionModule`) and every callback state is tensors
#: and plain values. Add a class here only if a facerec checkpoint really holds it.
SAFE_GLOBALS: tuple[Any, ...] = ()

#: Where a class named in a checkpoint's hyper-parameters may come from. ``load_from_checkpoint``
#: hyper-parameter keys under which a checkpoint may name a class, and the base class it must
#: be a subclass of (module path, class name). Loading imports and builds what a checkpoint
#: names (and calls ``head(embedding_dim, num_classes)``), so only the package's own classes of
#: the expected kind are admitted: a function, another facerec class, a torch.nn class or
#: anything else is refused before any name from the file is imported or called.
CLASS_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "backbone": (("facerec.models.base", "Backbone"),),
    "head": (("facerec.heads.base", "MarginHead"),),
    "margin": (("facerec.heads.base", "Margin"), ("facerec.heads.base", "MarginHead")),
    "metric_loss": (("facerec.losses.base", "MetricLoss"),),
}
#: hyper-parameter keys whose value is an option record (a dataclass: CenterLossOptions,
#: OptimOptions, LrMultipliers, FreezeOptions, DistillOptions), a dict of plain values or null.
#: jsonargparse reads a string given for a dataclass as an import path and imports it (an
#: importable instance of the class would do), so ``center_loss: facerec.__main__.X`` would run
#: the facerec command line on import: such a string is refused like a class path.
OPTION_KEYS = frozenset({"center_loss", "optim", "lr_multipliers", "freeze", "distill"})
#: the packages (and modules) whose exported classes (``__all__``) :data:`CLASS_KEYS` admits
CLASS_PACKAGES = ("facerec.models", "facerec.heads", "facerec.heads.sharded", "facerec.losses")
#: what Lightning itself stores: the instantiator LightningCLI records (Lightning checks it
#: against its own allow-list too) and nothing else
LIGHTNING_INSTANTIATORS = frozenset(
    {"pytorch_lightning.cli.instantiate_module", "lightning.pytorch.cli.instantiate_module"}
)
#: the one ``_class_path`` a checkpoint may hold (Lightning's subclass mode stores the module's
#: class there and imports it): facerec's own training module. An exact string, since
#: importing ``facerec.__main__`` (for ``facerec.__main__.FaceRecognitionModule``) runs the CLI.
MODULE_CLASS_PATHS = frozenset({"facerec.training.module.FaceRecognitionModule"})


@functools.cache
def allowed_classes() -> dict[str, tuple[str, ...]]:
    """The class paths a checkpoint may name -> the :data:`CLASS_KEYS` keys each may stand under.

    Built from facerec's own packages (never from a file): every public, concrete class that
    :data:`CLASS_PACKAGES` export and that subclasses a key's base, under both its package name
    (``facerec.heads.ArcFaceHead``) and its module name (``facerec.heads.arcface.ArcFaceHead``).
    A short name (``ArcFaceHead``, as ``from_config`` stores it when given so) is admitted under
    :func:`allowed_short_names`.
    """
    import importlib
    import inspect

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
    """Short class names (no dot) -> the :data:`CLASS_KEYS` keys they may stand under.

    jsonargparse resolves a short name among the imported subclasses of the parameter's type
    and refuses a name two classes share, so a name that one of facerec's admitted classes
    bears resolves to that class or fails. Only those names are admitted: any other bare name
    (``TripletMarginLoss`` resolved to ``torch.nn.TripletMarginLoss`` under ``metric_loss``, a
    path to a YAML file) is refused.
    """
    short: dict[str, set[str]] = {}
    for path, keys in allowed_classes().items():
        short.setdefault(path.rsplit(".", 1)[1], set()).update(keys)
    return {name: tuple(sorted(keys)) for name, keys in short.items()}


_REFUSED = (
    "refused: the file asks the unpickler for {what}, which a facerec checkpoint never holds "
    "(it was read with weights_only=True, so nothing in it ran); {expected}"
)


def _pickle_bytes(path: Path) -> bytes:
    """The pickle stream of ``path``: the ``data.pkl`` of a zip checkpoint, else the file."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return z.read(name) if name else b""
    return path.read_bytes()


def pickle_globals(path: Path, limit: int = 3) -> list[str]:
    """The classes/functions the pickle in ``path`` names (``module.name``), in file order.

    Reads the opcodes with :mod:`pickletools` only: nothing is imported or built. For a
    ``STACK_GLOBAL`` the two strings pushed last are taken (exact for pickles written by
    ``pickle``/``torch.save``). Returns at most ``limit`` names; [] for an unreadable stream.
    """
    import pickletools

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
    """Why ``path`` cannot be a checkpoint file, as one line, or None when it is a file: a
    folder is called a folder (naming a file of ``suffixes`` in it or in its ``checkpoints/``,
    the last by name, e.g. ``last.ckpt``: give that file), anything else missing is "``what``
    not found"."""
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


def safe_torch_load(path: str | os.PathLike[str], expected: str = EXPECTED) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, memory-mapped where possible.

    The one way facerec opens a ``.ckpt``/``.pth``/``.pt``: the unpickler builds only tensors and
    plain Python data (plus :data:`SAFE_GLOBALS`), so a file whose pickle names code (a
    ``__reduce__`` payload, any class) is refused before any of it runs.

    Raises:
        DataError: one line naming the file and, for a refused pickle, the global it asks for;
            ``expected`` ends the message.
    """
    import pickle

    import torch

    p = Path(path)
    problem = not_a_file(p, expected)
    if problem:
        raise DataError(problem)
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            try:
                return torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        import re

        named = re.findall(r"GLOBAL ([\w.]+)", str(e)) or pickle_globals(p)
        if named:
            raise DataError(f"{p}: " + _REFUSED.format(what=named[0], expected=expected)) from None
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        msg = next((x for x in lines if "Unsupported" in x or "rror" in x), lines[-1:] or [""])
        raise DataError(
            f"{p}: not a PyTorch checkpoint (a plain pickle, or damaged: {str(msg)[:120]}); "
            f"{expected}"
        ) from None
    except Exception as e:
        msg = (str(e).splitlines() or [""])[0].split(". This is an internal")[0][:160]
        raise DataError(
            f"{p}: not a PyTorch checkpoint (damaged or truncated? {type(e).__name__}: {msg}); "
            f"{expected}"
        ) from None


def check_hyperparameters(ckpt: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse a checkpoint whose hyper-parameters name anything but facerec's own model parts.

    ``load_from_checkpoint`` (and ``facerec fit --ckpt_path FILE``, which merges the file's
    hyper-parameters into the config), ``facerec eval/export/embed/doctor --checkpoint``,
    ``model.init_from`` and a distillation teacher import and build the classes a checkpoint
    names. This check runs first, on every one of those paths: a class may be named only under a
    key of :data:`CLASS_KEYS` (``backbone``, ``head``, ``margin``, ``metric_loss``), as a
    ``class_path`` or a bare string, at any depth, and must be in :func:`allowed_classes` (or
    :func:`allowed_short_names`) for that key; every string under such a key is such a name. A
    ``class_path`` anywhere else, a ``_class_path`` other than :data:`MODULE_CLASS_PATHS`, an
    ``_instantiator`` other than Lightning's, an option record of :data:`OPTION_KEYS` that is
    not a dict, or hyper-parameters that are not a dict are refused. Nothing from the file is
    imported or called.

    Raises:
        DataError: naming the file, the hyper-parameter and the class path, in one line.
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
                    if v not in LIGHTNING_INSTANTIATORS:
                        refuse(v, k, "expected Lightning's own instantiate_module")
                elif k == "_class_path":
                    if not (isinstance(v, str) and v in MODULE_CLASS_PATHS):
                        refuse(v, k, "expected facerec.training.module.FaceRecognitionModule")
                elif k in ("class_path", "_class_path"):
                    continue
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
    if hp is not None and not isinstance(hp, dict):
        raise DataError(
            f"{path}: refused: its hyper_parameters are a {type(hp).__name__}, expected a dict of "
            "the model's options; nothing from the file was imported or run"
        )
    if hp is not None:
        walk(hp, "")


def check_hparams_file(path: str | os.PathLike[str]) -> None:
    """Refuse a ``load_from_checkpoint(hparams_file=...)`` whose hyper-parameters name code.

    Lightning reads that file with ``yaml.full_load`` (which builds ``!!python/name:`` tags into
    functions) and merges it over the checkpoint's hyper-parameters before building the module,
    so it is read here with ``yaml.safe_load`` (a ``.csv``: rows of key, value) and given to
    :func:`check_hyperparameters`. Raises DataError in one line naming the file.
    """
    import csv

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
        first = (str(e).splitlines() or [""])[0][:160]
        raise DataError(
            f"{p}: refused: hparams_file is not plain YAML or CSV ({first}); {kinds}; nothing "
            "from the file was imported or run"
        ) from None
    check_hyperparameters({"hyper_parameters": {} if hp is None else hp}, p)


def read_checkpoint_dict(path: str | os.PathLike[str], expected: str = EXPECTED) -> dict[str, Any]:
    """:func:`safe_torch_load` of a file that must hold a checkpoint dict (DataError if not)."""
    ckpt = safe_torch_load(path, expected)
    if not isinstance(ckpt, dict):
        raise DataError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict; {expected}")
    return ckpt


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
    """The first differences between a model's state dict and one read from a file, as text
    ("" when they match): tensors whose shapes differ (``name (file) vs (model)``), then
    tensors the file lacks, then tensors the model lacks."""
    shape = shape_mismatches(model, found)
    missing = [k for k in model if k not in found]
    extra = [k for k in found if k not in model]
    parts = []
    if shape:
        parts.append(f"{len(shape)} tensors differ in shape: " + "; ".join(shape[:limit]))
    if missing:
        parts.append(f"{len(missing)} missing from the file: {', '.join(missing[:limit])}")
    if extra:
        parts.append(f"{len(extra)} not in the model: {', '.join(extra[:limit])}")
    return "; ".join(parts)


def weights_architecture(state: dict[str, Any]) -> str:
    """ "; the weights are <the architecture they hold> (<the backbone config that takes them>)"
    when the state dict is of a layout :func:`facerec.models.pretrained.identify_state_dict`
    knows (facerec's or insightface's IResNet, MobileFaceNet, ViT, torchvision's ResNet), else
    "": what a message about weights that do not fit says the file holds."""
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
        msg = (str(e).splitlines() or [""])[0][:200]
        raise DataError(
            f"{p}: the facerec model does not rebuild from this checkpoint "
            f"({type(e).__name__}: {msg}); {EXPECTED} by this facerec version"
        ) from None
    return backbone.eval()


#: names ``--checkpoint`` (and :func:`load_facerec_checkpoint`) take for a model that ships in
#: a package, not as a file; a file of that name in the working folder wins
PRETRAINED: dict[str, str] = {
    "dlib-r29": "dlib's face ResNet (29 conv layers, 150x150, 128-d), from face-recognition-models",
}


def _load_pretrained(name: str) -> LoadedModel:
    """The packaged model ``name`` of :data:`PRETRAINED` (weights read from the installed package;
    one line saying how to install it when it is missing), with the preprocessing it declares
    (dlib-r29: 150x150, dlib's face chip as its alignment template)."""
    from facerec.models.dlib_resnet import load_dlib_resnet

    backbone = load_dlib_resnet()
    return LoadedModel(
        backbone=backbone.eval(),
        preprocess=Preprocess.for_backbone(backbone),
        path=Path(name),
    )


def load_pretrained_into(backbone: nn.Module, name: str) -> list[str]:
    """Copy the packaged model ``name``'s weights into ``backbone`` (``model.init_from
    dlib-r29``); returns the names loaded (``backbone.…``).

    Raises:
        ConfigError: ``backbone`` is not that model's architecture (names the config expected).
        DataError: the weights package is not installed (says how to install it).
    """
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
    """Load the embedding network of the facerec checkpoint ``path`` onto the CPU.

    Raises:
        DataError: the file is missing, is not a PyTorch checkpoint, has no ``facerec`` entry
            (not written by facerec), names anything but facerec's own model parts (see
            :func:`check_hyperparameters`), or its model does not rebuild.
    """
    p = Path(path)
    if str(path) in PRETRAINED and not p.exists():
        return _load_pretrained(str(path))
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
    return LoadedModel(
        backbone=backbone,
        preprocess=Preprocess.from_dict(entry, str(p)),
        path=p,
        class_names=meta.get("class_names"),
        facerec_version=meta.get("version"),
    )


def load_checkpoint_embedder(
    path: str | os.PathLike[str],
    device: str = "cpu",
    batch_size: int = 256,
    resize_mode: ResizeMode | None = None,
) -> TorchEmbedder:
    """A facerec Lightning checkpoint as a :class:`TorchEmbedder` of its embedding network.

    The input size, resize mode, channel order, mean/std and alignment template come from the
    checkpoint's stored :class:`Preprocess` (what it lacks, from the model's declaration);
    ``resize_mode`` overrides the saved mode.

    Raises:
        DataError: the file is missing or is not a facerec checkpoint.
    """
    loaded = load_facerec_checkpoint(path)
    return TorchEmbedder.from_preprocess(
        loaded.backbone.to(device), loaded.preprocess, device, batch_size, resize_mode
    )
