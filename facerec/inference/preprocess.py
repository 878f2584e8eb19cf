"""The one preprocessing record: what an embedding network expects as input and gives as output.

:class:`Preprocess` plays the role of timm's pretrained config. The network declares it
(``Backbone.preprocessing``); it is stored in checkpoints (``checkpoint["facerec"]["preprocess"]``)
and, as :class:`facerec.inference.onnx.OnnxMetadata`, in ONNX ``metadata_props``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from facerec.align.transform import DEFAULT_TEMPLATE, TEMPLATES
from facerec.data.image import MEAN, STD, ResizeMode, normalize
from facerec.errors import DataError


def _three(value: Any, what: str, source: str) -> tuple[float, float, float]:
    try:
        a = np.broadcast_to(np.asarray(value, np.float64), (3,))
    except (ValueError, TypeError):
        raise DataError(
            f"{source}: {what} is {value!r}; expected one number or one per channel"
        ) from None
    return float(a[0]), float(a[1]), float(a[2])


@dataclass
class Preprocess:
    """What an embedding network expects: RGB uint8 images in, (N, D) embeddings out.

    Attributes:
        input_size: (height, width) of the network input.
        channel_order: "RGB" or "BGR", the order the network was trained in.
        mean, std: per channel, pixel units (0..255), in that order: ``(x - mean) / std``.
        layout: "NCHW" (or "NHWC" for an ONNX model that takes images as they are).
        normalized_output: True when the output rows already have unit length.
        resize_mode: how images of another size are brought to ``input_size``.
        align_template: the 5-point template of its crops (:data:`~facerec.align.TEMPLATES`).
    """

    input_size: tuple[int, int] = (112, 112)
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (MEAN, MEAN, MEAN)
    std: tuple[float, float, float] = (STD, STD, STD)
    layout: str = "NCHW"
    embedding_dim: int | None = None
    normalized_output: bool = False
    resize_mode: ResizeMode = "resize"
    align_template: str = DEFAULT_TEMPLATE

    def __post_init__(self) -> None:
        h, w = (self.input_size,) * 2 if isinstance(self.input_size, int) else self.input_size
        self.input_size = (int(h), int(w))
        self.channel_order = str(self.channel_order).upper()
        self.layout = str(self.layout).upper()
        self.mean = _three(self.mean, "mean", "preprocess")
        self.std = _three(self.std, "std", "preprocess")
        self.embedding_dim = int(self.embedding_dim) if self.embedding_dim else None
        self.normalized_output = bool(self.normalized_output)
        self.align_template = str(self.align_template)

    def validate(self, source: str = "preprocess") -> Preprocess:
        """Raise :class:`DataError` naming ``source`` for values no facerec model can have."""
        problems = []
        if self.channel_order not in ("RGB", "BGR"):
            problems.append(f"channel_order {self.channel_order!r} (expected RGB or BGR)")
        if self.layout not in ("NCHW", "NHWC"):
            problems.append(f"layout {self.layout!r} (expected NCHW or NHWC)")
        if self.resize_mode not in ("resize", "center_crop"):
            problems.append(f"resize_mode {self.resize_mode!r} (expected resize or center_crop)")
        if self.align_template not in TEMPLATES:
            problems.append(
                f"align_template {self.align_template!r} (expected {' or '.join(TEMPLATES)})"
            )
        if min(self.input_size) < 1 or min(abs(s) for s in self.std) == 0:
            problems.append(f"input_size {self.input_size} / std {self.std}")
        if problems:
            raise DataError(f"{source}: bad preprocessing: {'; '.join(problems)}")
        return self

    def normalize(self, images: Any) -> Any:
        """RGB (N, H, W, 3) images, numpy or torch -> float32 (N, 3, H, W) ``(x - mean) / std``
        in the model's channel order (an array comes back contiguous, a tensor on its device)."""
        if isinstance(images, np.ndarray):
            x = normalize(images.transpose(0, 3, 1, 2), self.mean, self.std, self.channel_order)
            return np.ascontiguousarray(x)
        return normalize(images.permute(0, 3, 1, 2), self.mean, self.std, self.channel_order)

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint entry: plain lists and numbers."""
        return asdict(self) | {k: list(getattr(self, k)) for k in ("input_size", "mean", "std")}

    @classmethod
    def from_dict(cls, entry: dict[str, Any], source: str = "checkpoint") -> Preprocess:
        """Read a checkpoint entry (keys it does not name keep their defaults); DataError for a
        key this record does not have or a value no model can have."""
        if not isinstance(entry, dict):
            what = type(entry).__name__
            raise DataError(f"{source}: preprocess entry is a {what}; expected a dict")
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(entry) - known):
            raise DataError(
                f"{source}: unknown preprocess key(s) {', '.join(unknown)}; expected "
                f"{', '.join(sorted(known))}"
            )
        try:
            return cls(**entry).validate(source)
        except (TypeError, ValueError) as e:
            raise DataError(f"{source}: unreadable preprocess entry ({e})") from None

    @classmethod
    def coerce(cls, value: Preprocess | dict[str, Any], source: str = "preprocess") -> Preprocess:
        """A :class:`Preprocess` as it is, anything else through :meth:`from_dict`."""
        return value if isinstance(value, Preprocess) else cls.from_dict(value, source)

    @classmethod
    def for_backbone(cls, backbone: Any) -> Preprocess:
        """What ``backbone`` declares (``Backbone.preprocessing``); for a module without the
        declaration, its ``input_size`` and ``embedding_dim`` and the defaults."""
        declared = getattr(backbone, "preprocessing", None)
        if callable(declared):
            return cls(**declared()).validate(type(backbone).__name__)
        size = getattr(backbone, "input_size", (112, 112))
        return cls(input_size=size, embedding_dim=int(getattr(backbone, "embedding_dim", 0)))


__all__ = ["Preprocess"]
