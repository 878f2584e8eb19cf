"""Running exported ONNX models: their metadata, an onnxruntime session, :class:`OnnxEmbedder`.

The preprocessing is stored in ``metadata_props``, one string per :data:`METADATA_KEYS` key
(lists as JSON: ``input_size`` "[H, W]", ``mean``/``std`` "[m, m, m]" in pixel units; booleans
"true"/"false"). A file without them is read with the documented defaults (112x112 RGB,
mean = std = 127.5, float32 NCHW input, raw output, the ArcFace template; a static input size
and a uint8 input in the graph override them), with a warning. Writing is
:mod:`facerec.export.onnx`'s job.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from facerec.data.image import ResizeMode, fit_to_size
from facerec.errors import ConfigError, DataError, FacerecError
from facerec.metrics.calibration import ONNX_KEY, Calibration

from .preprocess import Preprocess

#: Metadata keys written by ``facerec export``, in order (values are strings; lists are JSON).
METADATA_KEYS = (
    *("facerec_version", "input_size", "channel_order", "mean", "std", "layout", "input_dtype"),
    *("normalization_in_graph", "embedding_dim", "normalized_output", "resize_mode"),
    "align_template",
)
_FLAGS = ("normalization_in_graph", "normalized_output")


def _onnx_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: ONNX model not found; expected a .onnx written by facerec export")
    return p


def _static_size(shape: Sequence[Any] | None, layout: str) -> tuple[int, int] | None:
    """The (H, W) a graph input of ``shape`` fixes (None where it is symbolic or missing)."""
    hw = list(shape or [])[1:3] if layout == "NHWC" else list(shape or [])[2:4]
    ok = len(hw) == 2 and all(isinstance(v, int) and v > 0 for v in hw)
    return (int(hw[0]), int(hw[1])) if ok else None


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
    takes its input; ``from_facerec`` is False when the file had no facerec metadata (``notes``
    then says what was assumed)."""

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
        meta = cls(**{f.name: getattr(preprocess, f.name) for f in fields(Preprocess)})
        meta.layout = "NHWC" if bake_normalization else "NCHW"
        meta.normalized_output = bool(l2_normalize or preprocess.normalized_output)
        meta.input_dtype = "uint8" if bake_normalization else "float32"
        meta.normalization_in_graph = bake_normalization
        meta.facerec_version = version
        return meta

    def to_props(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` (string -> string) for this metadata."""
        out: dict[str, str] = {}
        for k in METADATA_KEYS:
            v = getattr(self, k)
            if isinstance(v, bool):
                out[k] = "true" if v else "false"
            elif isinstance(v, list | tuple):
                out[k] = json.dumps([float(x) if k in ("mean", "std") else int(x) for x in v])
            elif v is not None:
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
        """Parse ``metadata_props`` (keys it lacks keep their defaults); without them, the
        defaults and what the graph's single input says: ``input_type``, onnxruntime's type
        string (``tensor(uint8)``), and ``input_shape`` (ints or symbolic names)."""
        if "input_size" not in props:
            return cls._defaults(input_type, input_shape, source)
        try:
            kw: dict[str, Any] = {k: props[k] for k in METADATA_KEYS if k in props}
            size, dim = json.loads(kw["input_size"]), kw.get("embedding_dim")
            kw["input_size"] = (int(size[0]), int(size[1]))
            kw["embedding_dim"] = int(dim) if dim else None
            kw |= {k: json.loads(kw[k]) for k in ("mean", "std") if k in kw}
            kw |= {k: kw[k] == "true" for k in _FLAGS if k in kw}
            meta = cls(**kw)
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
        fixed = _static_size(shape, meta.layout)
        meta.input_size = fixed or meta.input_size
        size_note = f"{fixed[0]}x{fixed[1]} (from the graph's input shape)" if fixed else "112x112"
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


def load_onnx_model(path: str | os.PathLike[str], external_data: bool = True) -> Any:
    """The ``onnx.ModelProto`` in ``path``; DataError for a missing file or one not ONNX."""
    onnx, _ = require_onnx()
    p = _onnx_file(path)
    try:
        return onnx.load(str(p), load_external_data=external_data)
    except Exception as e:
        raise DataError(f"{p}: not an ONNX model ({type(e).__name__}); expected a .onnx") from None


def set_metadata_props(
    model: Any, props: dict[str, str], calibration: Calibration | None = None
) -> None:
    """Replace ``model``'s ``metadata_props`` by ``props`` in order, then ``calibration`` (JSON,
    under :data:`~facerec.metrics.calibration.ONNX_KEY`, last, replacing one in ``props``)."""
    props = {k: v for k, v in props.items() if k != ONNX_KEY or calibration is None}
    if calibration is not None:
        props[ONNX_KEY] = calibration.to_json()
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v


def read_onnx_metadata(path: str | os.PathLike[str]) -> OnnxMetadata:
    """Read the preprocessing of an ONNX file (defaults, with a note, when it has none)."""
    onnx, _ = require_onnx()
    model = load_onnx_model(path, external_data=False)
    props = {m.key: m.value for m in model.metadata_props}
    itype = shape = None
    if model.graph.input:
        t = model.graph.input[0].type.tensor_type
        itype = f"tensor({onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name})"
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
    return OnnxMetadata.from_props(props, itype, shape, str(Path(path)))


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
    """An onnxruntime InferenceSession for a file or serialised model (all graph optimisations;
    ``threads``: intra-op threads, 0: onnxruntime's default)."""
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

    RGB uint8 (N, H, W, 3) -> float32 (N, D), fed as the file's :class:`OnnxMetadata` says
    (``(x − mean) / std`` float32 NCHW, or uint8 as they are where the normalisation is in the
    graph); images of another size are brought to ``input_size`` with ``resize_mode`` (which
    overrides the file's). ``device``: cpu, cuda, cuda:N or auto (without onnxruntime-gpu, the
    CPU with a warning); ``threads``: intra-op threads (0: onnxruntime's default).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        device: str = "cpu",
        batch_size: int = 256,
        resize_mode: ResizeMode | None = None,
        threads: int = 0,
    ) -> None:
        p = _onnx_file(path)
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
        fixed = _static_size(inputs[0].shape, self.meta.layout)
        if fixed is not None and fixed != tuple(self.meta.input_size):
            h, w = self.meta.input_size
            raise DataError(
                f"{p}: the metadata says input_size {h}x{w} but the graph's input "
                f"{inputs[0].name!r} is {list(inputs[0].shape)} ({fixed[0]}x{fixed[1]}); "
                "expected them to agree (a file edited after facerec export?)"
            )
        self.preprocess: Preprocess = self.meta
        self.input_size: tuple[int, int] = tuple(self.meta.input_size)  # type: ignore[assignment]
        self.resize_mode: ResizeMode = resize_mode or self.meta.resize_mode
        self.batch_size = int(batch_size)
        self.normalized_output = self.meta.normalized_output
        self.embedding_dim = self.meta.embedding_dim  # D (None for a foreign file)

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


#: An exported ONNX model as an :class:`OnnxEmbedder` (DataError when the file is missing).
load_onnx_embedder = OnnxEmbedder
