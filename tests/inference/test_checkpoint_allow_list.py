"""The checkpoint allow-list keeps up with the classes it guards (issue 21 §2).

jsonargparse imports a string given for a parameter typed as a class, a callable or a dataclass
(an import path), and resolves a short class name among the subclasses of the type. So every
such parameter of the training module and of every class a checkpoint may name must be a key
:func:`check_hyperparameters` inspects: a class key (only facerec's own classes) or an option
key (a dict, never a string). A new parameter of such a type fails here until it is added.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
import typing
from collections.abc import Sequence

import pytest

from facerec.errors import DataError
from facerec.inference.checkpoint import (
    CLASS_KEYS,
    MODULE_CLASS_PATHS,
    OPTION_KEYS,
    allowed_classes,
    allowed_short_names,
    check_hyperparameters,
)

PLAIN = (int, float, str, bool, type(None))


def is_plain(hint: object) -> bool:
    """A type whose value jsonargparse takes as data, never as an import path."""
    origin = typing.get_origin(hint)
    if hint in PLAIN:
        return True
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType, tuple, list, Sequence):
        return all(is_plain(a) for a in typing.get_args(hint) if a is not Ellipsis)
    return False


def _import(path: str) -> type:
    module, name = path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _params(cls: type) -> dict[str, object]:
    hints = typing.get_type_hints(cls.__init__)
    names = list(inspect.signature(cls.__init__).parameters)[1:]
    return {n: hints[n] for n in names if n in hints}


def test_every_importing_parameter_of_the_module_is_checked():
    from facerec.training.module import FaceRecognitionModule

    for name, hint in _params(FaceRecognitionModule).items():
        if is_plain(hint):
            continue
        assert name in CLASS_KEYS or name in OPTION_KEYS, (name, hint)
        if name in OPTION_KEYS:  # a dataclass of plain fields: nothing under it imports
            (record,) = [a for a in typing.get_args(hint) if a is not type(None)]
            assert dataclasses.is_dataclass(record), (name, hint)
            for f in dataclasses.fields(record):
                assert is_plain(typing.get_type_hints(record)[f.name]), (name, f.name)


def test_every_importing_parameter_of_an_allowed_class_is_a_class_key():
    for path in allowed_classes():
        for name, hint in _params(_import(path)).items():
            assert is_plain(hint) or name in CLASS_KEYS, (path, name, hint)


def test_allowed_names_are_the_classes_they_name():
    for path, keys in allowed_classes().items():
        cls = _import(path)
        assert inspect.isclass(cls) and not inspect.isabstract(cls), path
        for key in keys:
            assert issubclass(cls, tuple(_import(f"{m}.{n}") for m, n in CLASS_KEYS[key]))
    short = allowed_short_names()
    assert short["ArcFaceHead"] == ("head", "margin") and short["IResNet"] == ("backbone",)
    assert "TripletMarginLoss" not in short and "Module" not in short
    (module_path,) = MODULE_CLASS_PATHS
    assert _import(module_path).__name__ == "FaceRecognitionModule"


def test_a_module_built_from_short_names_reloads(tmp_path):
    """``from_config`` stores short names as given; the check admits the ones that are facerec's
    own classes, so such a checkpoint still loads."""
    import torch

    from facerec.training.module import FaceRecognitionModule

    m = FaceRecognitionModule.from_config(
        backbone={"class_path": "IResNet", "init_args": {"depth": 18, "width": 0.125,
                  "embedding_dim": 8, "input_size": [32, 32]}},
        head="ArcFaceHead", metric_loss={"class_path": "TripletLoss"}, num_classes=4,
    )  # fmt: skip
    check_hyperparameters({"hyper_parameters": dict(m.hparams)}, "m.ckpt")
    path = tmp_path / "m.ckpt"
    torch.save({"hyper_parameters": dict(m.hparams), "state_dict": m.state_dict(),
                "pytorch-lightning_version": "2.6.0"}, path)  # fmt: skip
    again = FaceRecognitionModule.load_from_checkpoint(path)
    assert type(again.head).__name__ == "ArcFaceHead" and again.embedding_dim == 8


@pytest.mark.parametrize(
    ("hparams", "words"),
    [
        ({"center_loss": "facerec.__main__.X"}, "'facerec.__main__.X' (center_loss)"),
        ({"freeze": ["facerec.io.atomic_write_text"]}, "(freeze); expected a dict"),
        ({"_class_path": "facerec.__main__.FaceRecognitionModule"}, "(_class_path)"),
        ({"metric_loss": "TripletMarginLoss"}, "'TripletMarginLoss' (metric_loss)"),
        ({"backbone": "/tmp/backbone.yaml"}, "'/tmp/backbone.yaml' (backbone)"),
        ({"head": {"class_path": "facerec.heads.ArcFaceHead", "init_args": {"margin": "x.y"}}},
         "'x.y' (margin)"),
    ],
)  # fmt: skip
def test_strings_jsonargparse_would_import_are_refused(hparams: dict, words: str):
    with pytest.raises(DataError, match=r"^m\.ckpt: refused: .*nothing from the file") as e:
        check_hyperparameters({"hyper_parameters": hparams}, "m.ckpt")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_hyperparameters_that_are_not_a_dict_are_refused():
    with pytest.raises(DataError, match="hyper_parameters are a list, expected a dict"):
        check_hyperparameters({"hyper_parameters": ["facerec.io.atomic_write_text"]}, "m.ckpt")


def test_plain_option_records_pass():
    check_hyperparameters(
        {"hyper_parameters": {
            "center_loss": {"weight": 0.1, "alpha": 0.5}, "freeze": None,
            "distill": {"teacher": "teacher.ckpt", "weight": 1.0, "loss": "cosine"},
            "lr_multipliers": {"backbone": 0.1, "embedding": 1.0, "head": 10.0},
            "init_from": "r50.pth", "_class_path": "facerec.training.module.FaceRecognitionModule",
        }},
        "m.ckpt",
    )  # fmt: skip
