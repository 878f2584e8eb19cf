"""One-line errors for checkpoints that are not what a command needs (issue 21 §4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from facerec.errors import ConfigError, DataError
from facerec.inference.checkpoint import load_facerec_checkpoint, state_dict_mismatch
from facerec.models import IResNet
from facerec.models.pretrained import identify_state_dict, load_foreign_state_dict
from tests.tiny_checkpoint import make_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(
        tmp_path_factory.mktemp("ck") / "checkpoints" / "last.ckpt", 16, 4, 2, 32
    )


def test_a_folder_is_named_as_a_folder_with_the_file_to_give(ckpt: Path):
    with pytest.raises(DataError, match=r"is a folder \(it holds checkpoints/last.ckpt: give"):
        load_facerec_checkpoint(ckpt.parent.parent)


def test_architecture_mismatch_names_the_tensors(ckpt: Path, tmp_path: Path):
    c = torch.load(ckpt, weights_only=True)
    c["hyper_parameters"]["backbone"]["init_args"]["depth"] = 34
    c["hyper_parameters"]["backbone"]["init_args"]["embedding_dim"] = 8
    bad = tmp_path / "bad.ckpt"
    torch.save(c, bad)
    with pytest.raises(DataError) as e:
        load_facerec_checkpoint(bad)
    msg = str(e.value)
    assert "do not fit the facerec.models.IResNet" in msg and "\n" not in msg
    assert "head.fc.weight (16, " in msg and "in the file vs (8, " in msg
    assert "missing from the file: layer1.2." in msg
    # and the architecture the weights hold: the IResNet-18 the file was trained as
    assert "; the weights are facerec IResNet-18 (width 0.25, 16-d) (facerec.models.IResNet " \
        "with depth: 18, width: 0.25, embedding_dim: 16)" in msg  # fmt: skip


def test_init_from_of_another_architecture_names_what_the_file_holds(ckpt: Path):
    from facerec.training.module import FaceRecognitionModule, load_init_weights

    module = FaceRecognitionModule.from_config(
        backbone={"class_path": "facerec.models.IResNet", "init_args": {
            "depth": 34, "width": 0.25, "embedding_dim": 16, "input_size": [32, 32]}},
        head={"class_path": "facerec.heads.ArcFaceHead"}, num_classes=4,
    )  # fmt: skip
    with pytest.raises(ConfigError) as e:
        load_init_weights(module, str(ckpt))
    msg = str(e.value)
    assert "\n" not in msg and "(backbone.layer1.2.bn1.weight missing, " in msg, msg
    assert "the weights are facerec IResNet-18 (width 0.25, 16-d)" in msg, msg


def test_state_dict_mismatch_is_empty_for_a_match():
    m = IResNet(depth=18, width=0.125, embedding_dim=8, input_size=(32, 32))
    assert state_dict_mismatch(m.state_dict(), m.state_dict()) == ""


def test_facerec_iresnet_state_dict_is_recognised_as_such():
    src = IResNet(depth=34, width=0.125, embedding_dim=8, input_size=(32, 32))
    found = identify_state_dict(src.state_dict())
    assert found is not None and found.kind == "facerec_iresnet"
    assert found.name == "facerec IResNet-34 (width 0.125, 8-d)"  # was "torchvision resnet34"
    dst = IResNet(depth=34, width=0.125, embedding_dim=8, input_size=(32, 32))
    load_foreign_state_dict(dst, found, "r34.pth")
    for a, b in zip(src.state_dict().values(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    small = IResNet(depth=18, width=0.125, embedding_dim=8, input_size=(32, 32))
    with pytest.raises(ConfigError, match="expected model.backbone to be facerec.models.IResNet "
                       "with depth: 34"):  # fmt: skip
        load_foreign_state_dict(small, found, "r34.pth")


def test_an_unpickling_error_without_a_named_cause_quotes_its_last_line(tmp_path, monkeypatch):
    """The reason quoted is the error's text, not a Python list of it."""
    import pickle

    import facerec.inference.checkpoint as ck

    f = tmp_path / "odd.ckpt"
    f.write_bytes(b"not empty")

    def load(*args, **kwargs):
        raise pickle.UnpicklingError("first line\nthe last line")

    monkeypatch.setattr(torch, "load", load)
    monkeypatch.setattr(ck, "pickle_globals", lambda p: [])
    with pytest.raises(DataError, match=r"damaged: the last line\); ") as e:
        ck.read_checkpoint_dict(f)
    assert "[" not in str(e.value)
