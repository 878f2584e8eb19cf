"""ONNX export of the embedding network (writing only; running is :mod:`facerec.inference.onnx`).

Only ``module.backbone`` (backbone + embedding head, parameter names without the ``backbone.``
prefix) is exported, with a dynamic batch axis. The input is ``input``, float32 (N, 3, H, W)
normalised as ``(x - mean) / std`` in the model's channel order, or with baked normalisation
``images``, uint8 (N, H, W, 3) as decoded images come (cast, transpose and normalisation in the
graph). The output ``embedding`` is float32 (N, D), raw or L2-normalised. The preprocessing goes
into the metadata as :class:`facerec.inference.onnx.OnnxMetadata` writes it.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facerec import __version__
from facerec.errors import ConfigError, FacerecError
from facerec.inference import eval_mode
from facerec.inference.onnx import OnnxMetadata, require_onnx, set_metadata_props
from facerec.inference.preprocess import Preprocess
from facerec.metrics.calibration import Calibration

Exporter = Literal["dynamo", "torchscript"]
MIN_OPSET = 17
DEFAULT_OPSET = 18
PLAIN_INPUT = "input"
BAKED_INPUT = "images"
OUTPUT = "embedding"


class ExportModule(nn.Module):
    """What goes into the ONNX file: the embedding network plus the optional in-graph steps."""

    def __init__(
        self,
        backbone: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        bake_normalization: bool = False,
        l2_normalize: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.bake_normalization = bake_normalization
        self.l2_normalize = l2_normalize
        m, sd = (torch.tensor(list(v), dtype=torch.float32).view(1, 3, 1, 1) for v in (mean, std))
        self.register_buffer("mean", m, False)
        self.register_buffer("inv_std", 1.0 / sd, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float normalised, or (N, H, W, 3) uint8 when baked -> (N, D)."""
        if self.bake_normalization:
            x = (x.permute(0, 3, 1, 2).to(torch.float32) - self.mean) * self.inv_std
        y = self.backbone(x)
        return F.normalize(y, p=2.0, dim=1) if self.l2_normalize else y


def _strip_prefix(model: Any, prefix: str) -> None:
    """Rename initializers (and their uses) ``prefix + name`` -> ``name`` in place."""
    g = model.graph
    taken = {i.name for i in g.initializer} | {i.name for i in g.input}
    rename = {
        i.name: i.name.removeprefix(prefix)
        for i in g.initializer
        if i.name.startswith(prefix) and i.name.removeprefix(prefix) not in taken
    }
    for init in g.initializer:
        init.name = rename.get(init.name, init.name)
    for node in g.node:
        for k, name in enumerate(node.input):
            node.input[k] = rename.get(name, name)
    for vi in list(g.value_info) + list(g.input):
        vi.name = rename.get(vi.name, vi.name)


def _torch_export(
    module: nn.Module, example: torch.Tensor, input_name: str, opset: int, exporter: Exporter
) -> bytes:
    """Export ``module`` with a dynamic batch axis; the ONNX model as bytes."""
    kw: dict[str, Any] = dict(opset_version=opset, input_names=[input_name], output_names=[OUTPUT])
    dynamo = exporter == "dynamo"
    with (
        contextlib.redirect_stdout(io.StringIO()) if dynamo else contextlib.nullcontext(),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        if dynamo:
            kw.update(dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False)
            program = torch.onnx.export(module, (example,), None, dynamo=True, optimize=True, **kw)
            return program.model_proto.SerializeToString()
        buf = io.BytesIO()
        axes = {input_name: {0: "batch"}, OUTPUT: {0: "batch"}}
        kw.update(dynamic_axes=axes, do_constant_folding=True)
        torch.onnx.export(module, (example,), buf, dynamo=False, **kw)
    return buf.getvalue()


def export_onnx(
    backbone: nn.Module,
    preprocess: Preprocess | dict[str, Any],
    bake_normalization: bool = False,
    l2_normalize: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: Exporter = "dynamo",
    doc: str = "",
    calibration: Calibration | None = None,
) -> bytes:
    """Export ``backbone`` ((B, 3, H, W) normalised -> (B, D)) to ONNX; the serialised model.

    Args:
        preprocess: a :class:`Preprocess` or a checkpoint's ``facerec.preprocess`` dict, written
            to the metadata.
        exporter: ``dynamo`` (torch.export) or ``torchscript`` (the legacy tracer; faster).
        doc: the model's ``doc_string``.
        calibration: stored as JSON under the metadata key ``facerec.calibration``.
    """
    onnx, _ = require_onnx()
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} is too old; expected {MIN_OPSET} or newer")
    if exporter not in ("dynamo", "torchscript"):
        raise ConfigError(f"exporter {exporter!r} is not known; expected dynamo or torchscript")
    pre = Preprocess.coerce(preprocess)
    meta = OnnxMetadata.for_export(pre, bake_normalization, l2_normalize, __version__)
    meta.validate()
    module = ExportModule(backbone, meta.mean, meta.std, bake_normalization, l2_normalize)
    with eval_mode(backbone):
        img = np.random.default_rng(0).integers(0, 256, (2, *meta.input_size, 3), dtype=np.uint8)
        example = torch.from_numpy(img if bake_normalization else meta.normalize(img))
        with torch.no_grad():
            meta.embedding_dim = int(module(example).shape[1])
        name = BAKED_INPUT if bake_normalization else PLAIN_INPUT
        try:
            data = _torch_export(module, example, name, opset, exporter)
        except FacerecError:
            raise
        except Exception as e:
            msg = (str(e).strip().splitlines() or [""])[0][:300]
            hint = " (try --exporter torchscript)" if exporter == "dynamo" else ""
            raise FacerecError(
                f"ONNX export with the {exporter} exporter failed: {type(e).__name__}: {msg}{hint}"
            ) from e
    model = onnx.load_from_string(data)
    _strip_prefix(model, "backbone.")
    set_metadata_props(model, meta.to_props(), calibration)
    model.producer_name = "facerec"
    model.producer_version = __version__
    if doc:
        model.doc_string = doc
    onnx.checker.check_model(model)
    return model.SerializeToString()
