"""ONNX export: parity for every backbone, dynamic batch, metadata, baked normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from facerec.export.check import check_onnx
from facerec.export.onnx import MIN_OPSET, export_onnx
from facerec.inference import Preprocess
from facerec.inference.checkpoint import load_facerec_checkpoint
from facerec.inference.onnx import OnnxEmbedder, make_session, read_onnx_metadata
from facerec.models import IResNet, TorchvisionResNet

INPUT, DIM, NUM_CLASSES = 64, 64, 10  # the conftest checkpoint's

BACKBONES = {
    "iresnet18": lambda: IResNet(18, width=0.125, embedding_dim=32, input_size=(32, 32)),
    "iresnet34": lambda: IResNet(34, width=0.125, embedding_dim=32, input_size=(32, 32)),
    "iresnet50": lambda: IResNet(50, width=0.125, embedding_dim=32, input_size=(32, 32)),
    "iresnet100": lambda: IResNet(100, width=0.125, embedding_dim=32, input_size=(32, 32)),
    "resnet18": lambda: TorchvisionResNet("resnet18", embedding_dim=32, input_size=(32, 32)),
    # torchvision's own 7x7/2 + max-pool stem here (no width option: keep the compute small)
    "resnet50": lambda: TorchvisionResNet(
        "resnet50", embedding_dim=32, input_size=(32, 64), face_stem=False
    ),
}


def _randomize_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Give BatchNorm layers non-trivial running statistics, as a trained network has."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_backbone_exports_with_parity_at_batch_1_and_7(name: str) -> None:
    torch.manual_seed(0)
    net = BACKBONES[name]().eval()
    _randomize_bn(net)
    pre = Preprocess.for_backbone(net)
    data = export_onnx(net, pre)
    model = onnx.load_from_string(data)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    # dynamic batch axis, fixed C, H, W
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")
    assert [d.dim_value for d in dims[1:]] == [3, *net.input_size]
    # parity with PyTorch at batch 1 and 7: random uint8 images and synthetic faces, normalised
    # outside the graph, through onnxruntime and through the PyTorch backbone
    results = check_onnx(data, net, pre, batch_sizes=(1, 7))
    assert {(r.name, r.batch) for r in results} == {
        (n, b) for n in ("random images", "synthetic faces") for b in (1, 7)
    }
    for r in results:
        assert r.min_cosine >= 0.9999, r
        assert r.max_abs_diff <= 1e-3 * r.max_abs_value, r


def test_export_holds_only_the_embedding_network_without_prefixes(
    ckpt: Path, plain_onnx: Path
) -> None:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert any(k.startswith("head.") for k in state)  # the margin head is in the checkpoint ...
    backbone_keys = {k[len("backbone.") :] for k in state if k.startswith("backbone.")}
    model = onnx.load(str(plain_onnx))
    names = [i.name for i in model.graph.initializer]
    assert not any(n.startswith(("backbone.", "model.", "_forward_module.")) for n in names)
    # every named initializer is a backbone parameter (or one the exporter derived from it,
    # such as a BatchNorm folded into a convolution: "conv1.weight_bias")
    named = [n for n in names if "." in n and not n.startswith(("onnx::", "val_"))]
    assert len(named) > 10
    stray = [n for n in named if not any(n == k or n.startswith(k + "_") for k in backbone_keys)]
    assert not stray, stray
    # ... but not in the export: no (num_classes, D) class-centre matrix
    shapes = [tuple(i.dims) for i in model.graph.initializer]
    assert (NUM_CLASSES, DIM) not in shapes
    assert [o.name for o in model.graph.output] == ["embedding"]


def test_metadata_reads_back(plain_onnx: Path, baked_onnx: Path) -> None:
    m = read_onnx_metadata(plain_onnx)
    assert m.from_facerec and not m.notes
    assert m.input_size == (INPUT, INPUT)
    assert m.channel_order == "RGB"
    assert m.mean == (127.5,) * 3 and m.std == (127.5,) * 3
    assert (m.layout, m.input_dtype, m.normalization_in_graph) == ("NCHW", "float32", False)
    assert m.embedding_dim == DIM and m.normalized_output is False
    b = read_onnx_metadata(baked_onnx)
    assert (b.layout, b.input_dtype, b.normalization_in_graph) == ("NHWC", "uint8", True)
    # onnxruntime sees the same keys
    props = make_session(plain_onnx).get_modelmeta().custom_metadata_map
    assert props["input_size"] == f"[{INPUT}, {INPUT}]"
    assert props["normalized_output"] == "false" and props["embedding_dim"] == str(DIM)
    model = onnx.load(str(baked_onnx))
    inp = model.graph.input[0].type.tensor_type
    assert inp.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in inp.shape.dim[1:]] == [INPUT, INPUT, 3]


def test_baked_normalisation_equals_external_normalisation(
    ckpt: Path, plain_onnx: Path, baked_onnx: Path, faces: np.ndarray
) -> None:
    plain, baked = make_session(plain_onnx), make_session(baked_onnx)
    x = read_onnx_metadata(plain_onnx).normalize(faces)
    np.testing.assert_allclose(x, (faces.astype(np.float32) - 127.5).transpose(0, 3, 1, 2) / 127.5)
    e_plain = plain.run(None, {"input": x})[0]
    e_baked = baked.run(None, {"images": faces})[0]
    np.testing.assert_allclose(e_baked, e_plain, rtol=1e-4, atol=1e-4 * np.abs(e_plain).max())
    # and both equal the checkpoint's PyTorch backbone
    loaded = load_facerec_checkpoint(ckpt)
    with torch.no_grad():
        ref = loaded.backbone(torch.from_numpy(x)).numpy()
    assert _cos(e_baked, ref).min() >= 0.9999
    # the embedder feeds each kind as its metadata says
    np.testing.assert_allclose(
        OnnxEmbedder(baked_onnx)(faces), OnnxEmbedder(plain_onnx)(faces), rtol=1e-4, atol=1e-3
    )


def test_l2_normalised_export_and_torchscript_exporter(
    ckpt: Path, export_dir: Path, faces: np.ndarray
) -> None:
    from facerec.export.cli import export_checkpoint

    out = export_dir / "l2_ts.onnx"
    logs: list[str] = []
    results = export_checkpoint(
        ckpt,
        out,
        bake_normalization=True,
        l2_normalize=True,
        exporter="torchscript",
        opset=17,
        log=logs.append,
    )
    assert {(r.name, r.batch) for r in results} == {
        (n, b) for n in ("random images", "synthetic faces") for b in (1, 8)
    }
    assert all(r.min_cosine >= 0.9999 for r in results)
    assert "min cosine" in "\n".join(logs)
    model = onnx.load(str(out))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    emb = OnnxEmbedder(out)
    assert emb.meta.normalized_output
    e = emb(faces)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    loaded = load_facerec_checkpoint(ckpt)
    with torch.no_grad():
        ref = loaded.backbone(torch.from_numpy(emb.meta.normalize(faces))).numpy()
    assert _cos(e, ref).min() >= 0.9999


def test_opset_below_17_is_refused(ckpt: Path, export_dir: Path, capsys) -> None:
    from facerec.export.cli import main

    out = export_dir / "old.onnx"
    assert main(["--checkpoint", str(ckpt), "--out", str(out), "--opset", str(MIN_OPSET - 1)]) == 2
    assert f"expected {MIN_OPSET} or newer" in capsys.readouterr().err
    assert not out.exists()


def test_failed_self_check_leaves_nothing_at_out(ckpt: Path, export_dir: Path, capsys) -> None:
    from facerec.export.cli import main

    out = export_dir / "strict.onnx"
    out.write_bytes(b"previous file")
    argv = ["--checkpoint", str(ckpt), "--out", str(out), "--exporter", "torchscript"]
    rc = main([*argv, "--min-cosine", "1.5"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "self-check failed" in captured.err and "was not written" in captured.err
    assert "min cosine" in captured.out  # the table was printed before failing
    assert out.read_bytes() == b"previous file"
    assert not [p for p in export_dir.iterdir() if p.name.startswith(".strict.onnx")]
