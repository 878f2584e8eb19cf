"""Image decoding and resizing with OpenCV; the one place images are read.

Convention (the published ArcFace models'): images are RGB uint8 (H, W, 3); the network input is
``(x - 127.5) / 127.5`` in RGB channel order, shape (3, H, W) float32.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import cv2
import numpy as np

from facerec.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")
MEAN = 127.5
STD = 127.5
ResizeMode = Literal["resize", "center_crop"]


def decode_image(data: bytes | np.ndarray, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, PGM, ...) to RGB uint8 (H, W, 3).

    Greyscale is promoted to 3 channels and an alpha channel dropped. Raises :class:`DataError`
    naming ``source`` when the bytes do not decode.
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) else data
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
    if img is None:
        raise DataError(f"{source}: not a decodable image (expected JPEG, PNG, BMP or PGM data)")
    if img.dtype != np.uint8:  # 16-bit PNG/TIFF
        img = (img / (65535.0 if img.dtype == np.uint16 else img.max() or 1) * 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_image_bytes(path: str | os.PathLike[str]) -> bytes:
    """The encoded bytes of an image file; :class:`DataError` if missing or unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read image ({e.strerror})") from None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); :class:`DataError` if missing or corrupt."""
    return decode_image(read_image_bytes(path), source=str(path))


def encode_image(
    rgb: np.ndarray, fmt: str = "jpg", quality: int = 95, source: str = "<image>"
) -> bytes:
    """Encode an RGB uint8 (H, W, 3) image: ``fmt`` png, jpg/jpeg (``quality`` 0-100) or bmp.

    Raises :class:`DataError` naming ``source`` when OpenCV cannot encode it.
    """
    ext = "." + fmt.lower().lstrip(".")
    if ext not in (".png", ".jpg", ".jpeg", ".bmp"):
        raise DataError(f"{source}: image format {fmt!r} is not known; expected png, jpg or bmp")
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise DataError(f"{source}: OpenCV could not encode the image as {fmt}")
    return buf.tobytes()


def fit_to_size(img: np.ndarray, size: tuple[int, int], mode: ResizeMode = "resize") -> np.ndarray:
    """Bring an (H, W, 3) image to ``size`` = (height, width).

    ``resize`` scales to the exact size (aspect ratio not kept); ``center_crop`` scales the
    shorter side to fit and crops the centre, keeping the aspect ratio. An image already of the
    right size is returned unchanged.
    """
    h, w = size
    if img.shape[0] == h and img.shape[1] == w:
        return img
    if mode == "resize":
        interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
        return cv2.resize(img, (w, h), interpolation=interp)
    if mode != "center_crop":
        raise DataError(f"resize mode {mode!r} is not known; expected 'resize' or 'center_crop'")
    scale = max(h / img.shape[0], w / img.shape[1])
    nh, nw = max(h, round(img.shape[0] * scale)), max(w, round(img.shape[1] * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, (nw, nh), interpolation=interp)
    top, left = (nh - h) // 2, (nw - w) // 2
    return img[top : top + h, left : left + w]


def normalize(images: Any, mean: Any = MEAN, std: Any = STD, channel_order: str = "RGB") -> Any:
    """The one normalisation: RGB (N, 3, H, W) images, uint8 or float, a numpy array or a torch
    tensor -> float32 ``(x - mean) / std`` in ``channel_order`` (RGB or BGR), of the same kind (a
    tensor stays on its device and keeps its memory layout).

    ``mean`` and ``std`` are one number or one per channel, pixel units, in the model's channel
    order. A tensor is divided by a number as torch divides by a scalar (on CUDA: times its
    reciprocal, which can differ from a per-channel division by one ulp), so callers keep the
    form their numbers were always given in.
    """
    if isinstance(images, np.ndarray):
        x = images[:, ::-1] if channel_order == "BGR" else images
        m, s = (np.asarray(v, np.float32).reshape(-1, 1, 1) for v in (mean, std))
        return (x.astype(np.float32) - m) / s
    x = images.float()
    if channel_order == "BGR":
        x = x.flip(1)
    m, s = (
        v if isinstance(v, int | float) else x.new_tensor(v).view(1, -1, 1, 1) for v in (mean, std)
    )
    return (x - m) / s


def to_tensor_array(img: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> normalised float32 (3, H, W): (x - 127.5) / 127.5."""
    return np.ascontiguousarray(normalize(img.transpose(2, 0, 1)[None])[0])
