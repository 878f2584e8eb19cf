"""The alignment template a model declares travels with it: Preprocess, checkpoints, ONNX
metadata; records written before templates existed read as before (issues 22, 23)."""

from __future__ import annotations

import pytest
import torch

from facerec.errors import DataError
from facerec.inference.checkpoint import load_checkpoint_embedder, load_facerec_checkpoint
from facerec.inference.onnx import OnnxMetadata
from facerec.inference.preprocess import Preprocess
from facerec.models import DlibResNet, IResNet
from tests.tiny_checkpoint import make_checkpoint


def test_preprocess_round_trip_and_defaults() -> None:
    pre = Preprocess(input_size=150, embedding_dim=128, align_template="dlib")
    assert Preprocess.from_dict(pre.to_dict()) == pre
    old = pre.to_dict()
    del old["align_template"]  # a checkpoint written before templates were recorded
    assert Preprocess.from_dict(old).align_template == "arcface"
    with pytest.raises(DataError, match=r"align_template 'mtcnn' \(expected arcface or dlib\)"):
        Preprocess.from_dict({**pre.to_dict(), "align_template": "mtcnn"}, "x.ckpt")


def test_backbones_declare_their_own() -> None:
    assert Preprocess.for_backbone(IResNet(depth=18, width=0.25)).align_template == "arcface"
    pre = Preprocess.for_backbone(DlibResNet())
    assert (pre.align_template, pre.input_size, pre.embedding_dim) == ("dlib", (150, 150), 128)

    class Odd(IResNet):  # a model with other statistics declares them; Preprocess reads them
        input_channel_order = "BGR"
        input_mean = (104.0, 117.0, 123.0)
        input_std = (1.0, 1.0, 1.0)

    odd = Preprocess.for_backbone(Odd(depth=18, width=0.25))
    assert odd.channel_order == "BGR" and odd.mean == (104.0, 117.0, 123.0)
    assert odd.std == (1.0, 1.0, 1.0)


def test_onnx_metadata_round_trip() -> None:
    pre = Preprocess(input_size=150, embedding_dim=128, align_template="dlib")
    props = OnnxMetadata.for_export(pre, bake_normalization=True, l2_normalize=False).to_props()
    assert props["align_template"] == "dlib"
    assert OnnxMetadata.from_props(props).align_template == "dlib"
    del props["align_template"]  # a file exported before templates were recorded
    assert OnnxMetadata.from_props(props).align_template == "arcface"
    with pytest.raises(DataError, match="align_template 'x'"):
        OnnxMetadata.from_props({**props, "align_template": "x"}, source="m.onnx")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.ckpt", 16, 4, 2, 32)


def test_checkpoint_records_the_template_and_old_ones_load_as_before(tiny, tmp_path) -> None:
    ckpt = torch.load(tiny, weights_only=True)
    assert ckpt["facerec"]["preprocess"]["align_template"] == "arcface"  # written by training
    assert load_checkpoint_embedder(tiny).preprocess.align_template == "arcface"
    # the same run as a DlibResNet, its preprocess entry from before templates: the model's
    # declaration fills the key; an entry that names it is kept as written
    ckpt["hyper_parameters"]["backbone"] = {"class_path": "facerec.models.DlibResNet"}
    net = DlibResNet()
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith("backbone.")}
    state.update({f"backbone.{k}": v for k, v in net.state_dict().items()})
    ckpt["state_dict"] = state
    old = Preprocess.for_backbone(net).to_dict()
    del old["align_template"]
    ckpt["facerec"]["preprocess"] = old
    torch.save(ckpt, tmp_path / "dlib.ckpt")
    assert load_facerec_checkpoint(tmp_path / "dlib.ckpt").preprocess.align_template == "dlib"
    emb = load_checkpoint_embedder(tmp_path / "dlib.ckpt")
    assert emb.preprocess.align_template == "dlib" and emb.input_size == (150, 150)
    ckpt["facerec"]["preprocess"] = {**old, "align_template": "arcface"}
    torch.save(ckpt, tmp_path / "as_written.ckpt")
    got = load_facerec_checkpoint(tmp_path / "as_written.ckpt").preprocess
    assert got.align_template == "arcface"
