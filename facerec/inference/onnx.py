"""Running exported ONNX models: their metadata, an onnxruntime session, :class:`OnnxEmbedder`.

The preprocessing is stored in the ONNX metadata (``metadata_props``), one key each (see
:data:`METADATA_KEYS`): ``input_size`` "[H, W]", ``channel_order`` "RGB", ``mean`` and ``std``
"[m, m, m]" (pixel units, 0..255), ``layout`` "NCHW" or "NHWC", ``input_dtype`` "float32" or
"uint8", ``normalization_in_graph`` "true"/"false", ``embedding_dim`` "D", ``normalized_output``
"true"/"false", ``resize_mode`` "resize", ``align_template`` "arcface" or "dlib" (the crops'
5-point template), ``facerec_version``.

A file without these keys is read with the documented defaults (112×112 RGB, mean = std = 127.5,
float32 NCHW input, raw output, the ArcFace template; a static input size in the graph and a
uint8 input type override them), with a warning saying so. Writing models is
:mod:`facerec.export.onnx`'s job.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.align.transform import DEFAULT_TEMPLATE
from facerec.data.image import ResizeMode, fit_to_size
from facerec.errors import ConfigError, DataError, FacerecError

from .embedder import Embedder
from .preprocess import Preprocess

#: Metadata keys written by ``facerec export`` (values are strings; lists are JSON).
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
    "align_template",
)


def require_onnx() -> tuple[Any, Any]:
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


@dataclass
class OnnxMetadata(Preprocess):
    """A :class:`Preprocess` as stored in (or defaulted for) an ONNX file, plus how the graph
    takes its input (``input_dtype``, ``normalization_in_graph``).

    ``from_facerec`` is False when the file had no facerec metadata and the defaults (plus what
    the graph's input says) were used; ``notes`` then says what was assumed.
    """

    input_dtype: str = "float32"
    normalization_in_graph: bool = False
    facerec_version: str | None = None
    from_facerec: bool = True
    notes: list[str] = field(default_factory=list)

    @classmethod
    def for_export(
        cls,
        preprocess: Preprocess,
        bake_normalization: bool,
        l2_normalize: bool,
        version: str | None = None,
    ) -> OnnxMetadata:
        """The metadata of a model exported from ``preprocess`` (baked input: uint8 NHWC)."""
        return cls(
            input_size=preprocess.input_size,
            channel_order=preprocess.channel_order,
            mean=preprocess.mean,
            std=preprocess.std,
            layout="NHWC" if bake_normalization else "NCHW",
            embedding_dim=preprocess.embedding_dim,
            normalized_output=bool(l2_normalize or preprocess.normalized_output),
            resize_mode=preprocess.resize_mode,
            align_template=preprocess.align_template,
            input_dtype="uint8" if bake_normalization else "float32",
            normalization_in_graph=bake_normalization,
            facerec_version=version,
        )

    def to_props(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` (string -> string) for this metadata."""
        out: dict[str, str] = {}
        for k in METADATA_KEYS:
            v = getattr(self, k)
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
        """Parse ``metadata_props``; fall back to the defaults (and the graph input).

        ``input_type`` is onnxruntime's type string (``tensor(uint8)``) and ``input_shape`` its
        shape (ints or symbolic names) of the model's single input.
        """
        if "input_size" not in props:
            return cls._defaults(input_type, input_shape, source)
        try:
            size = json.loads(props["input_size"])
            dim = props.get("embedding_dim")
            meta = cls(
                input_size=(int(size[0]), int(size[1])),
                channel_order=props.get("channel_order", "RGB"),
                mean=json.loads(props.get("mean", "127.5")),
                std=json.loads(props.get("std", "127.5")),
                layout=props.get("layout", "NCHW"),
                input_dtype=props.get("input_dtype", "float32"),
                normalization_in_graph=props.get("normalization_in_graph", "false") == "true",
                embedding_dim=int(dim) if dim else None,
                normalized_output=props.get("normalized_output", "false") == "true",
                resize_mode=props.get("resize_mode", "resize"),  # type: ignore[arg-type]
                align_template=props.get("align_template", DEFAULT_TEMPLATE),
                facerec_version=props.get("facerec_version"),
            )
        except (ValueError, TypeError, IndexError, DataError, json.JSONDecodeError) as e:
            raise DataError(
                f"{source}: unreadable facerec metadata ({e}); expected the keys written by "
                'facerec export (input_size "[H, W]", mean, std, ...)'
            ) from None
        meta.validate(source)
        return meta

    @classmethod
    def _defaults(
        cls, input_type: str | None, input_shape: Sequence[Any] | None, source: str
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

    def validate(self, source: str = "<onnx>") -> OnnxMetadata:
        """Raise :class:`DataError` for values no facerec model can have."""
        if self.input_dtype not in ("float32", "uint8"):
            raise DataError(
                f"{source}: bad facerec metadata: input_dtype {self.input_dtype!r} "
                "(expected float32 or uint8)"
            )
        super().validate(source)
        return self


def read_onnx_metadata(path: str | os.PathLike[str]) -> OnnxMetadata:
    """Read the preprocessing of an ONNX file (defaults, with a note, when it has none)."""
    onnx, _ = require_onnx()
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
    _, ort = require_onnx()
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
    """An exported ONNX model as an :class:`~facerec.inference.embedder.Embedder` (onnxruntime).

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
        shape = list(inputs[0].shape)
        hw = shape[1:3] if self.meta.layout == "NHWC" else shape[2:4]
        fixed = [int(v) for v in hw if isinstance(v, int) and v > 0]
        if len(hw) == 2 and len(fixed) == 2 and tuple(fixed) != tuple(self.meta.input_size):
            h, w = self.meta.input_size
            raise DataError(
                f"{p}: the metadata says input_size {h}x{w} but the graph's input "
                f"{inputs[0].name!r} is {shape} ({fixed[0]}x{fixed[1]}); expected them to agree "
                "(a file edited after facerec export?)"
            )
        self.preprocess: Preprocess = self.meta
        self.input_size: tuple[int, int] = tuple(self.meta.input_size)  # type: ignore[assignment]
        self.resize_mode: ResizeMode = resize_mode or self.meta.resize_mode
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
        return m.normalize(images)

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


def load_onnx_embedder(
    path: str | os.PathLike[str],
    device: str = "cpu",
    batch_size: int = 256,
    resize_mode: ResizeMode | None = None,
) -> Embedder:
    """An exported ONNX model as an :class:`OnnxEmbedder` (a clear :class:`DataError` when the
    file is missing)."""
    return OnnxEmbedder(path, device=device, batch_size=batch_size, resize_mode=resize_mode)


__all__ = [
    "METADATA_KEYS",
    "OnnxEmbedder",
    "OnnxMetadata",
    "load_onnx_embedder",
    "make_session",
    "read_onnx_metadata",
    "require_onnx",
]
