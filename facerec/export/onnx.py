"""ONNX export of the embedding network, its self-check, and an onnxruntime :class:`Embedder`.

What is exported is the embedding network only (``module.backbone``: backbone + embedding head;
no margin head, no Lightning wrapper, so parameter names carry no ``backbone.``/``model.``
prefix), with a dynamic batch axis and opset 17 or newer. Two input conventions:

* plain (default): input ``input``, float32 (N, 3, H, W), already normalised as
  ``(x − mean) / std`` in the model's channel order (RGB: ``(x − 127.5) / 127.5``);
* baked normalisation (``bake_normalization=True``): input ``images``, **uint8 (N, H, W, 3)**
  in the model's channel order (RGB), exactly as decoded images come; the cast, the
  NHWC → NCHW transpose and ``(x − mean) / std`` are in the graph.

The output ``embedding`` is float32 (N, D): raw, or L2-normalised with ``l2_normalize=True``.

The preprocessing is stored in the ONNX metadata (``metadata_props``), one key each
(see :data:`METADATA_KEYS`): ``input_size`` "[H, W]", ``channel_order`` "RGB", ``mean`` and
``std`` "[m, m, m]" (pixel units, 0..255), ``layout`` "NCHW" or "NHWC", ``input_dtype``
"float32" or "uint8", ``normalization_in_graph`` "true"/"false", ``embedding_dim`` "D",
``normalized_output`` "true"/"false", ``resize_mode`` "resize", ``facerec_version``.

A file without these keys is read with the documented defaults (:data:`DEFAULT_PREPROCESS`:
112×112 RGB, mean = std = 127.5, float32 NCHW input, raw output; a static input size in the
graph and a uint8 input type override them), with a warning saying so.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facerec import __version__
from facerec.data.image import MEAN, STD, ResizeMode, fit_to_size
from facerec.errors import ConfigError, DataError, FacerecError

Exporter = Literal["dynamo", "torchscript"]
MIN_OPSET = 17
DEFAULT_OPSET = 18
MIN_COSINE = 0.9999
PLAIN_INPUT = "input"
BAKED_INPUT = "images"
OUTPUT = "embedding"
#: Metadata keys written by :func:`export_onnx` (values are strings; lists are JSON).
METADATA_KEYS = (
    "facerec_version",
    "input_size",
    "channel_order",
    "mean",
    "std",
    "layout",
    "input_dtype",
    "normalization_in_graph",
    "embedding_dim",
    "normalized_output",
    "resize_mode",
)
#: Used for an ONNX file without facerec metadata (the insightface ArcFace convention).
DEFAULT_PREPROCESS: dict[str, Any] = {
    "input_size": [112, 112],
    "channel_order": "RGB",
    "mean": [MEAN] * 3,
    "std": [STD] * 3,
    "layout": "NCHW",
    "input_dtype": "float32",
    "normalization_in_graph": False,
    "normalized_output": False,
    "resize_mode": "resize",
}


def _require_onnx() -> tuple[Any, Any]:
    """Import onnx and onnxruntime, or explain how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise FacerecError(
            f"ONNX support needs the onnx extra ({e.name} is not installed); expected "
            "`pip install 'facerec[onnx]'`"
        ) from None
    return onnx, onnxruntime


# --------------------------------------------------------------------------------------------
# metadata


@dataclass
class OnnxMetadata:
    """The preprocessing an exported model expects, as stored in (or defaulted for) the file.

    ``from_facerec`` is False when the file had no facerec metadata and the defaults (plus what
    the graph's input says) were used; ``notes`` then says what was assumed.
    """

    input_size: tuple[int, int] = (112, 112)
    channel_order: str = "RGB"
    mean: list[float] = field(default_factory=lambda: [MEAN] * 3)
    std: list[float] = field(default_factory=lambda: [STD] * 3)
    layout: str = "NCHW"
    input_dtype: str = "float32"
    normalization_in_graph: bool = False
    embedding_dim: int | None = None
    normalized_output: bool = False
    resize_mode: str = "resize"
    facerec_version: str | None = None
    from_facerec: bool = True
    notes: list[str] = field(default_factory=list)

    def to_props(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` (string → string) for this metadata."""
        d = asdict(self)
        out: dict[str, str] = {}
        for k in METADATA_KEYS:
            v = d[k]
            if v is None:
                continue
            if isinstance(v, bool):
                out[k] = "true" if v else "false"
            elif isinstance(v, list | tuple):
                out[k] = json.dumps([float(x) if k in ("mean", "std") else int(x) for x in v])
            else:
                out[k] = str(v)
        return out

    @classmethod
    def from_props(
        cls,
        props: dict[str, str],
        input_type: str | None = None,
        input_shape: Sequence[Any] | None = None,
        source: str = "<onnx>",
    ) -> OnnxMetadata:
        """Parse ``metadata_props``; fall back to :data:`DEFAULT_PREPROCESS` (and the graph input).

        ``input_type`` is onnxruntime's type string (``tensor(uint8)``) and ``input_shape`` its
        shape (ints or symbolic names) of the model's single input.
        """
        if "input_size" not in props:
            return cls._defaults(props, input_type, input_shape, source)
        try:
            size = json.loads(props["input_size"])
            mean = [float(x) for x in np.broadcast_to(json.loads(props.get("mean", "127.5")), 3)]
            std = [float(x) for x in np.broadcast_to(json.loads(props.get("std", "127.5")), 3)]
            dim = props.get("embedding_dim")
            meta = cls(
                input_size=(int(size[0]), int(size[1])),
                channel_order=props.get("channel_order", "RGB").upper(),
                mean=mean,
                std=std,
                layout=props.get("layout", "NCHW").upper(),
                input_dtype=props.get("input_dtype", "float32"),
                normalization_in_graph=props.get("normalization_in_graph", "false") == "true",
                embedding_dim=int(dim) if dim else None,
                normalized_output=props.get("normalized_output", "false") == "true",
                resize_mode=props.get("resize_mode", "resize"),
                facerec_version=props.get("facerec_version"),
            )
        except (ValueError, TypeError, IndexError, json.JSONDecodeError) as e:
            raise DataError(
                f"{source}: unreadable facerec metadata ({e}); expected the keys written by "
                'facerec export (input_size "[H, W]", mean, std, ...)'
            ) from None
        meta.validate(source)
        return meta

    @classmethod
    def _defaults(
        cls,
        props: dict[str, str],
        input_type: str | None,
        input_shape: Sequence[Any] | None,
        source: str,
    ) -> OnnxMetadata:
        meta = cls(from_facerec=False)
        baked = input_type == "tensor(uint8)"
        shape = list(input_shape or [])
        if baked:
            meta.layout, meta.input_dtype, meta.normalization_in_graph = "NHWC", "uint8", True
            if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
                meta.layout = "NCHW"
        hw = shape[1:3] if meta.layout == "NHWC" else shape[2:4]
        size_note = "112x112"
        if len(hw) == 2 and all(isinstance(s, int) and s > 0 for s in hw):
            meta.input_size = (int(hw[0]), int(hw[1]))
            size_note = f"{hw[0]}x{hw[1]} (from the graph's input shape)"
        what = (
            f"uint8 {meta.layout} input with the normalisation in the graph"
            if baked
            else "float32 NCHW input normalised as (x - 127.5) / 127.5"
        )
        meta.notes.append(
            f"{source}: no facerec metadata; using the documented defaults: {size_note} RGB, "
            f"{what}, raw (not L2-normalised) output"
        )
        return meta

    def validate(self, source: str = "<onnx>") -> None:
        """Raise :class:`DataError` for values no facerec model can have."""
        problems = []
        if self.channel_order not in ("RGB", "BGR"):
            problems.append(f"channel_order {self.channel_order!r} (expected RGB or BGR)")
        if self.layout not in ("NCHW", "NHWC"):
            problems.append(f"layout {self.layout!r} (expected NCHW or NHWC)")
        if self.input_dtype not in ("float32", "uint8"):
            problems.append(f"input_dtype {self.input_dtype!r} (expected float32 or uint8)")
        if min(self.input_size) < 1 or min(abs(s) for s in self.std) == 0:
            problems.append(f"input_size {self.input_size} / std {self.std}")
        if problems:
            raise DataError(f"{source}: bad facerec metadata: {'; '.join(problems)}")


def metadata_from_preprocess(
    preprocess: dict[str, Any], bake_normalization: bool, l2_normalize: bool
) -> OnnxMetadata:
    """The :class:`OnnxMetadata` of a model exported from a checkpoint's ``preprocess``."""
    h, w = preprocess.get("input_size", (112, 112))
    return OnnxMetadata(
        input_size=(int(h), int(w)),
        channel_order=str(preprocess.get("channel_order", "RGB")).upper(),
        mean=[float(x) for x in np.broadcast_to(preprocess.get("mean", MEAN), 3)],
        std=[float(x) for x in np.broadcast_to(preprocess.get("std", STD), 3)],
        layout="NHWC" if bake_normalization else "NCHW",
        input_dtype="uint8" if bake_normalization else "float32",
        normalization_in_graph=bake_normalization,
        embedding_dim=int(preprocess["embedding_dim"]) if preprocess.get("embedding_dim") else None,
        normalized_output=bool(l2_normalize or preprocess.get("normalized_output", False)),
        resize_mode=str(preprocess.get("resize_mode", "resize")),
        facerec_version=__version__,
    )


def read_onnx_metadata(path: str | os.PathLike[str]) -> OnnxMetadata:
    """Read the preprocessing of an ONNX file (defaults, with a note, when it has none)."""
    onnx, _ = _require_onnx()
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: ONNX model not found; expected a .onnx written by facerec export")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:
        raise DataError(f"{p}: not an ONNX model ({type(e).__name__}); expected a .onnx") from None
    props = {m.key: m.value for m in model.metadata_props}
    inp = model.graph.input[0] if model.graph.input else None
    itype = shape = None
    if inp is not None:
        t = inp.type.tensor_type
        itype = f"tensor({onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name})"
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
    return OnnxMetadata.from_props(props, itype, shape, str(p))


# --------------------------------------------------------------------------------------------
# export


class ExportModule(nn.Module):
    """What goes into the ONNX file: the embedding network plus the optional in-graph steps.

    With ``bake_normalization`` the input is uint8 (N, H, W, 3) and the graph casts, transposes
    to NCHW and normalises it; with ``l2_normalize`` the output rows have unit length.
    """

    def __init__(
        self,
        backbone: nn.Module,
        mean: Sequence[float] = (MEAN,) * 3,
        std: Sequence[float] = (STD,) * 3,
        bake_normalization: bool = False,
        l2_normalize: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.bake_normalization = bake_normalization
        self.l2_normalize = l2_normalize
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), False
        )
        self.register_buffer(
            "inv_std", 1.0 / torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float normalised, or (N, H, W, 3) uint8 when baked -> (N, D)."""
        if self.bake_normalization:
            x = (x.permute(0, 3, 1, 2).to(torch.float32) - self.mean) * self.inv_std
        y = self.backbone(x)
        if self.l2_normalize:
            y = F.normalize(y, p=2.0, dim=1)
        return y


def _example_input(meta: OnnxMetadata, batch: int, rng: np.random.Generator) -> torch.Tensor:
    h, w = meta.input_size
    img = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    if meta.normalization_in_graph:
        return torch.from_numpy(img)
    return torch.from_numpy(normalize_images(img, meta))


def _strip_prefix(model: Any, prefix: str) -> None:
    """Rename initializers (and their uses) ``prefix + name`` -> ``name`` in place."""
    g = model.graph
    taken = {i.name for i in g.initializer} | {i.name for i in g.input}
    rename: dict[str, str] = {}
    for init in g.initializer:
        if init.name.startswith(prefix):
            new = init.name[len(prefix) :]
            if new not in taken:
                rename[init.name] = new
    if not rename:
        return
    for init in g.initializer:
        init.name = rename.get(init.name, init.name)
    for node in g.node:
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
    for vi in list(g.value_info) + list(g.input):
        vi.name = rename.get(vi.name, vi.name)


def _torch_export(
    module: nn.Module, example: torch.Tensor, input_name: str, opset: int, exporter: Exporter
) -> bytes:
    """Export ``module`` with a dynamic batch axis; the ONNX model as bytes."""
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1)
        with (
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                None,
                dynamo=True,
                opset_version=opset,
                input_names=[input_name],
                output_names=[OUTPUT],
                dynamic_shapes=({0: batch},),
                optimize=True,
                verbose=False,
            )
        return program.model_proto.SerializeToString()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[OUTPUT],
            dynamic_axes={input_name: {0: "batch"}, OUTPUT: {0: "batch"}},
            do_constant_folding=True,
        )
    return buf.getvalue()


def export_onnx(
    backbone: nn.Module,
    preprocess: dict[str, Any],
    bake_normalization: bool = False,
    l2_normalize: bool = False,
    opset: int = DEFAULT_OPSET,
    exporter: Exporter = "dynamo",
    doc: str = "",
) -> bytes:
    """Export the embedding network ``backbone`` to ONNX; returns the serialised model.

    Args:
        backbone: (B, 3, H, W) normalised -> (B, D) (a checkpoint's ``module.backbone``).
        preprocess: input size, channel order, mean, std (pixel units) and embedding size, as
            in a checkpoint's ``facerec.preprocess``; written to the metadata.
        bake_normalization: put cast, NHWC -> NCHW and normalisation in the graph, so the
            input is uint8 (N, H, W, 3) images in the model's channel order.
        l2_normalize: L2-normalise the output in the graph.
        opset: ONNX opset, 17 or newer.
        exporter: ``dynamo`` (torch.export based, the default) or ``torchscript`` (the legacy
            tracer; much faster to run, deprecated by PyTorch).
        doc: the model's ``doc_string`` (e.g. where it came from).
    """
    onnx, _ = _require_onnx()
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} is too old; expected {MIN_OPSET} or newer")
    if exporter not in ("dynamo", "torchscript"):
        raise ConfigError(f"exporter {exporter!r} is not known; expected dynamo or torchscript")
    meta = metadata_from_preprocess(preprocess, bake_normalization, l2_normalize)
    meta.validate()
    module = ExportModule(backbone, meta.mean, meta.std, bake_normalization, l2_normalize)
    was_training = backbone.training
    backbone.eval()
    try:
        example = _example_input(meta, 2, np.random.default_rng(0))
        with torch.no_grad():
            out = module(example)
        meta.embedding_dim = int(out.shape[1])
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
    finally:
        backbone.train(was_training)
    model = onnx.load_from_string(data)
    _strip_prefix(model, "backbone.")
    del model.metadata_props[:]
    for k, v in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "facerec"
    model.producer_version = __version__
    if doc:
        model.doc_string = doc
    onnx.checker.check_model(model)
    return model.SerializeToString()


# --------------------------------------------------------------------------------------------
# running


def normalize_images(images: np.ndarray, meta: OnnxMetadata) -> np.ndarray:
    """RGB uint8 (N, H, W, 3) -> float32 (N, 3, H, W) ``(x − mean) / std`` in the model's order."""
    x = images[..., ::-1] if meta.channel_order == "BGR" else images
    mean = np.asarray(meta.mean, np.float32)
    std = np.asarray(meta.std, np.float32)
    x = (x.astype(np.float32) - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _providers(device: str, ort: Any) -> tuple[list[Any], str | None]:
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            idx = int(device.split(":")[1]) if ":" in device else 0
            return [("CUDAExecutionProvider", {"device_id": idx}), "CPUExecutionProvider"], None
        return ["CPUExecutionProvider"], (
            f"device {device!r} asked for but this onnxruntime has no CUDA provider "
            "(install onnxruntime-gpu); running on the CPU"
        )
    if device not in ("cpu", "auto"):
        raise ConfigError(f"device {device!r} is not known; expected cpu, cuda or cuda:N")
    if device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], None
    return ["CPUExecutionProvider"], None


def make_session(
    model: str | os.PathLike[str] | bytes, device: str = "cpu", threads: int = 0
) -> Any:
    """An onnxruntime InferenceSession for a file or serialised model (all graph optimisations).

    ``threads`` is the intra-op thread count (0: onnxruntime's default, all cores).
    """
    _, ort = _require_onnx()
    providers, note = _providers(device, ort)
    if note:
        warnings.warn(note, stacklevel=2)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, sess_options=opts, providers=providers)
    except Exception as e:
        where = "<model bytes>" if isinstance(model, bytes) else str(model)
        msg = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(
            f"{where}: onnxruntime cannot load it ({msg}); expected an ONNX model"
        ) from None


class OnnxEmbedder:
    """An exported ONNX model as an :class:`facerec.eval.embed.Embedder` (onnxruntime).

    ``__call__(images)``: RGB uint8 (N, H, W, 3) -> float32 (N, D) embeddings (raw unless the
    model was exported with L2 normalisation). The preprocessing comes from the file's metadata
    (:class:`OnnxMetadata`): plain models get ``(x − mean) / std`` as float32 NCHW, models with
    the normalisation baked in get the uint8 images as they are (NHWC, or NCHW if so declared).
    Images not at ``input_size`` are brought to it with ``resize_mode``.

    Args:
        path: the .onnx file.
        device: cpu, cuda, cuda:N or auto (CUDA needs onnxruntime-gpu; else the CPU is used,
            with a warning).
        batch_size: images per onnxruntime call.
        resize_mode: overrides the file's resize mode.
        threads: intra-op threads (0: onnxruntime's default).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = "cpu",
        batch_size: int = 256,
        resize_mode: ResizeMode | None = None,
        threads: int = 0,
    ) -> None:
        p = Path(path)
        if not p.is_file():
            raise DataError(
                f"{p}: ONNX model not found; expected a .onnx written by facerec export"
            )
        if batch_size < 1:
            raise ConfigError(f"batch size {batch_size} must be >= 1")
        self.path = p
        self.session = make_session(p, device, threads)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise DataError(f"{p}: the model has {len(inputs)} inputs; expected one image input")
        self.input_name = inputs[0].name
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = OnnxMetadata.from_props(props, inputs[0].type, inputs[0].shape, str(p))
        for note in self.meta.notes:
            warnings.warn(note, stacklevel=2)
        want = "tensor(uint8)" if self.meta.input_dtype == "uint8" else "tensor(float)"
        if inputs[0].type != want:
            raise DataError(
                f"{p}: the input is {inputs[0].type} but the metadata says "
                f"{self.meta.input_dtype}; expected a file written by facerec export"
            )
        self.input_size: tuple[int, int] = tuple(self.meta.input_size)  # type: ignore[assignment]
        self.resize_mode: ResizeMode = resize_mode or self.meta.resize_mode  # type: ignore[assignment]
        self.batch_size = int(batch_size)
        self.normalized_output = self.meta.normalized_output

    @property
    def embedding_dim(self) -> int | None:
        """D, from the metadata (None for a foreign file)."""
        return self.meta.embedding_dim

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """RGB uint8 (N, H, W, 3) -> the array fed to the model's input."""
        m = self.meta
        if m.normalization_in_graph:
            x = images[..., ::-1] if m.channel_order == "BGR" else images
            if m.layout == "NCHW":
                x = x.transpose(0, 3, 1, 2)
            return np.ascontiguousarray(x, dtype=np.uint8)
        return normalize_images(images, m)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """RGB uint8 (N, H, W, 3) -> float32 (N, D)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[3] != 3:
            raise DataError(f"images of shape {images.shape}; expected (N, H, W, 3) RGB")
        if images.dtype != np.uint8:
            raise DataError(f"images of dtype {images.dtype}; expected uint8 RGB")
        if tuple(images.shape[1:3]) != self.input_size:
            images = np.stack([fit_to_size(im, self.input_size, self.resize_mode) for im in images])
        outs = []
        for s in range(0, images.shape[0], self.batch_size):
            x = self.prepare(images[s : s + self.batch_size])
            outs.append(np.asarray(self.session.run(None, {self.input_name: x})[0], np.float32))
        if not outs:
            return np.zeros((0, self.embedding_dim or 0), np.float32)
        return np.concatenate(outs)


# --------------------------------------------------------------------------------------------
# self-check


@dataclass
class CheckResult:
    """onnxruntime against PyTorch on one batch."""

    name: str
    batch: int
    max_abs_diff: float
    min_cosine: float
    max_abs_value: float

    def ok(self, min_cosine: float = MIN_COSINE) -> bool:
        """True when every embedding's cosine to PyTorch's is at least ``min_cosine``."""
        return bool(np.isfinite(self.min_cosine) and self.min_cosine >= min_cosine)


def synthetic_face_batch(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` synthetic faces of distinct identities at ``size``: RGB uint8 (n, H, W, 3)."""
    from facerec.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(num_identities=max(n, 1), images_per_identity=1, size=112, seed=seed)
    imgs = [fit_to_size(faces.render(i, 0), size) for i in range(n)]
    return np.stack(imgs) if imgs else np.zeros((0, *size, 3), np.uint8)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(na * nb, 1e-30)


def check_onnx(
    model: str | os.PathLike[str] | bytes,
    backbone: nn.Module,
    preprocess: dict[str, Any],
    batch_sizes: Sequence[int] = (1, 8),
    seed: int = 0,
    l2_normalize: bool | None = None,
) -> list[CheckResult]:
    """Compare onnxruntime with PyTorch eager on random images and on synthetic faces.

    For each batch size, a batch of uniform random uint8 images and a batch of synthetic faces
    go through the ONNX model (fed as its metadata says, baked normalisation or not) and through
    ``backbone`` with the checkpoint's normalisation done outside; returns the max abs difference
    and the minimum cosine of each.
    """
    import tempfile

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="facerec-check-") as d:
        if isinstance(model, bytes):
            f = Path(d) / "model.onnx"
            f.write_bytes(model)
            model = f
        emb = OnnxEmbedder(model, batch_size=max(batch_sizes))
        meta = emb.meta
        l2 = meta.normalized_output if l2_normalize is None else l2_normalize
        ref_meta = metadata_from_preprocess(preprocess, False, False)
        size = emb.input_size
        faces = synthetic_face_batch(max(batch_sizes), size, seed)
        results = []
        was_training = backbone.training
        backbone.eval()
        try:
            for b in batch_sizes:
                batches = {
                    "random images": rng.integers(0, 256, (b, *size, 3), dtype=np.uint8),
                    "synthetic faces": faces[:b],
                }
                for name, imgs in batches.items():
                    got = emb(imgs)
                    with torch.inference_mode():
                        ref = backbone(torch.from_numpy(normalize_images(imgs, ref_meta)))
                        if l2:
                            ref = F.normalize(ref, dim=1)
                    ref = ref.float().numpy()
                    if got.shape != ref.shape:
                        raise FacerecError(
                            f"the ONNX model returned shape {got.shape} for {name} where "
                            f"PyTorch returned {ref.shape}; expected the same"
                        )
                    results.append(
                        CheckResult(
                            name,
                            b,
                            float(np.abs(got - ref).max()),
                            float(_cosines(got, ref).min()),
                            float(np.abs(ref).max()),
                        )
                    )
        finally:
            backbone.train(was_training)
        del emb
    return results


def format_check(results: Sequence[CheckResult], min_cosine: float = MIN_COSINE) -> str:
    """A small table of :func:`check_onnx` results."""
    lines = [f"{'check':<16} {'batch':>5} {'max|diff|':>10} {'max|emb|':>10} {'min cosine':>12}"]
    for r in results:
        flag = "" if r.ok(min_cosine) else f"  < {min_cosine} FAIL"
        lines.append(
            f"{r.name:<16} {r.batch:>5} {r.max_abs_diff:>10.3g} {r.max_abs_value:>10.3g} "
            f"{r.min_cosine:>12.8f}{flag}"
        )
    return "\n".join(lines)
