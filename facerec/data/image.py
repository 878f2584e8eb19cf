"""Image decoding and resizing with OpenCV; the one place images are read.

Images are RGB uint8 (H, W, 3); the network input is ``(x - 127.5) / 127.5`` in RGB order,
(3, H, W) float32 (the published ArcFace models' convention).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import cv2
import numpy as np

from facerec.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif", ".tiff")
MEAN = STD = 127.5  # pixel units
ResizeMode = Literal["resize", "center_crop"]
T = TypeVar("T")
R = TypeVar("R")
NOT_DECODABLE = "not a decodable image (expected JPEG, PNG, BMP, PGM/PPM, WebP or TIFF data)"
MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "FACEREC_MAX_PIXELS"
_TO_RGB = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}  # by channels


def max_pixels() -> int:
    """The largest image (width x height) :func:`decode_image` decodes: ``$FACEREC_MAX_PIXELS``
    when set (``1e8`` allowed; :class:`ConfigError` if not a positive number), else
    :data:`MAX_PIXELS` (50 megapixels)."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_PIXELS
    value = float("nan")
    with contextlib.suppress(ValueError):
        value = float(text)
    if not (value >= 1 and math.isfinite(value)):
        raise ConfigError(
            f"{MAX_PIXELS_ENV}={text!r} is not a pixel count; expected a positive integer "
            f"such as {MAX_PIXELS}"
        )
    return int(value)


@contextlib.contextmanager
def pixel_limit(limit: int | None) -> Iterator[None]:
    """Within the block, :func:`max_pixels` is ``limit`` (None: unchanged); for every thread and
    for worker processes started inside it (it sets ``$FACEREC_MAX_PIXELS``)."""
    if limit is None:
        yield
        return
    if limit < 1:
        raise ConfigError(f"the pixel limit must be >= 1, got {limit}")
    before = os.environ.get(MAX_PIXELS_ENV)
    os.environ[MAX_PIXELS_ENV] = str(int(limit))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MAX_PIXELS_ENV, None)
        else:
            os.environ[MAX_PIXELS_ENV] = before


def _jpeg_size(b: bytes) -> tuple[int, int] | None:
    """(height, width) of the first frame header (SOFn) of JPEG bytes; None if there is none."""
    i, n = 2, len(b)
    while i + 9 <= n:
        if b[i] != 0xFF:
            return None
        m = b[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m in (0x01, 0xD8) or 0xD0 <= m <= 0xD7:  # markers without a length
            i += 2
            continue
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(b[i + 5 : i + 7], "big"), int.from_bytes(b[i + 7 : i + 9], "big")
        i += 2 + int.from_bytes(b[i + 2 : i + 4], "big")
    return None


def _tiff_size(b: bytes) -> tuple[int, int] | None:
    """(height, width) of the first image of TIFF or BigTIFF bytes; None if not readable.
    (PIL cannot open every TIFF OpenCV decodes, e.g. RGB float32.)"""
    order = {b"II": "<", b"MM": ">"}.get(b[:2])
    if order is None:
        return None
    try:
        (magic,) = struct.unpack_from(order + "H", b, 2)
        big = magic == 43
        if magic not in (42, 43):
            return None
        (off,) = struct.unpack_from(order + ("Q" if big else "I"), b, 8 if big else 4)
        count_fmt, entry, value_at = ("Q", 20, 12) if big else ("H", 12, 8)
        (count,) = struct.unpack_from(order + count_fmt, b, off)
        first = off + struct.calcsize(count_fmt)
        size: dict[int, int] = {}
        for k in range(min(count, 4096)):
            at = first + k * entry
            tag, kind = struct.unpack_from(order + "HH", b, at)
            if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG or LONG8 (else KeyError)
                fmt = {3: "H", 4: "I", 16: "Q"}[kind]
                (size[tag],) = struct.unpack_from(order + fmt, b, at + value_at)
        return size[257], size[256]
    except (struct.error, KeyError):
        return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) of encoded image bytes from their header alone; None when the format is
    not known or the header is broken. PNG, JPEG and TIFF are parsed here, others by Pillow's
    ``Image.open``; an image over Pillow's hard limit gives ``(pixels, 0)`` (it names no size).
    """
    head = bytes(data[:24])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])[::-1]  # (width, height) stored
    if head[:3] == b"\xff\xd8\xff":
        return _jpeg_size(bytes(data))
    if head[:2] in (b"II", b"MM") and (size := _tiff_size(bytes(data))) is not None:
        return size
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size[::-1]
    except Image.DecompressionBombError as e:  # over twice Pillow's own limit (179 megapixels)
        found = re.search(r"\((\d+) pixels\)", str(e))
        return (int(found[1]) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1), 0
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error):
        return None


def _to_uint8(img: np.ndarray, source: str) -> np.ndarray:
    """8-bit pixels as they are; 16-bit scaled by 255/65535 and rounded; float in [0, 1]
    scaled by 255 and rounded; anything else refused with one line naming ``source``."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if img.dtype.kind == "f":
        x = img.astype(np.float32, copy=False)
        if bad := int(np.count_nonzero(~np.isfinite(x))):
            raise DataError(
                f"{source}: {bad} of {x.size} float pixel values are NaN or infinite; expected "
                "finite float pixels in [0, 1]"
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise DataError(
                f"{source}: float pixel values range over [{lo:g}, {hi:g}]; expected float "
                "pixels in [0, 1] (scale the image to [0, 1] or save it as 8- or 16-bit)"
            )
        return np.rint(x * 255).astype(np.uint8)
    raise DataError(
        f"{source}: {img.dtype} pixels are not supported; expected 8- or 16-bit unsigned "
        "integers or float in [0, 1]"
    )


def decode_image(data: bytes | np.ndarray, source: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, BMP, PGM, WebP, TIFF, ...) to RGB uint8 (H, W, 3).

    Greyscale is promoted to 3 channels and alpha dropped; pixel types as :func:`_to_uint8`
    (non-finite or out-of-range float and signed integers are refused). An image of more than
    :func:`max_pixels` pixels is refused from its header, before decoding.
    Raises :class:`DataError` naming ``source`` when the bytes do not decode or are refused.
    """
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    size = image_size(buf.tobytes() if isinstance(data, np.ndarray) else data) if buf.size else None
    if size is None:
        raise DataError(f"{source}: {NOT_DECODABLE}")
    limit = max_pixels()
    pixels = size[0] * size[1] if size[1] else size[0]
    if pixels > limit:
        dims = f"{size[1]}x{size[0]} pixels, " if size[1] else ""
        raise DataError(
            f"{source}: image of {dims}{pixels / 1e6:.3g} megapixels is above the limit of "
            f"{limit / 1e6:g} megapixels; expected a smaller image (raise the limit with "
            f"--max-pixels or the environment variable {MAX_PIXELS_ENV})"
        )
    img = None
    with contextlib.suppress(cv2.error):
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{source}: {NOT_DECODABLE}")
    img = _to_uint8(img, source)
    if img.ndim == 3 and img.shape[2] not in (3, 4):  # grey + alpha, or extra samples
        img = img[:, :, 0]
    return cv2.cvtColor(img, _TO_RGB[img.shape[2] if img.ndim == 3 else 1])


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


def read_or_error(read: Callable[[T], np.ndarray], item: T) -> np.ndarray | DataError:
    """``read(item)``, or the :class:`DataError` it raised (a batch reads on past a bad image)."""
    try:
        return read(item)
    except DataError as e:
        return e


def read_ahead(load: Callable[[T], R], batches: Sequence[T]) -> Iterator[tuple[T, R]]:
    """``(batch, load(batch))`` for each batch, the next batch loading in a background thread
    while the caller works on this one; ``load``'s error is raised where its batch is due."""
    with ThreadPoolExecutor(1) as ahead:
        pending = ahead.submit(load, batches[0]) if batches else None
        for batch, following in zip(batches, [*batches[1:], None], strict=True):
            loaded = pending.result()  # type: ignore[union-attr]
            pending = ahead.submit(load, following) if following is not None else None
            yield batch, loaded


def image_bar(total: int, desc: str, show: bool, **options: Any) -> Any:
    """A tqdm progress bar over ``total`` images on stderr, hidden unless ``show``."""
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=desc, file=sys.stderr, disable=not show, **options)


def encode_image(
    rgb: np.ndarray, fmt: str = "jpg", quality: int = 95, source: str = "<image>"
) -> bytes:
    """Encode an RGB uint8 (H, W, 3) image: ``fmt`` png, jpg/jpeg (``quality`` 0-100) or bmp;
    :class:`DataError` naming ``source`` when it cannot."""
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
    """Bring an (H, W, 3) image to ``size`` = (height, width): ``resize`` scales to it (aspect
    ratio not kept), ``center_crop`` scales the shorter side to fit and crops the centre."""
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
    """The one normalisation: RGB (N, 3, H, W) images, uint8 or float, numpy or torch ->
    float32 ``(x - mean) / std`` in ``channel_order`` (RGB or BGR), of the same kind (a tensor
    stays on its device). ``mean`` and ``std`` are one number or one per channel (pixel units,
    the model's channel order); a tensor is divided by a number as torch divides by a scalar.
    """
    if isinstance(images, np.ndarray):
        x = images[:, ::-1] if channel_order == "BGR" else images
        m, s = (np.asarray(v, np.float32).reshape(-1, 1, 1) for v in (mean, std))
        return (x.astype(np.float32) - m) / s
    x = images.float().flip(1) if channel_order == "BGR" else images.float()
    m, s = (
        v if isinstance(v, int | float) else x.new_tensor(v).view(1, -1, 1, 1) for v in (mean, std)
    )
    return (x - m) / s


def to_tensor_array(img: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> normalised float32 (3, H, W): (x - 127.5) / 127.5."""
    return np.ascontiguousarray(normalize(img.transpose(2, 0, 1)[None])[0])
