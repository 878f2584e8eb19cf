import cv2
import numpy as np
import pytest

from facerec.data.image import decode_image, fit_to_size, read_image, to_tensor_array
from facerec.errors import DataError


def test_greyscale_pgm_promoted_to_rgb(tmp_path):
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    cv2.imwrite(str(tmp_path / "a.pgm"), grey)
    img = read_image(tmp_path / "a.pgm")
    assert img.shape == (12, 10, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], grey) and np.array_equal(img[..., 2], grey)


def test_channel_order_is_rgb(tmp_path):
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    cv2.imwrite(str(tmp_path / "b.png"), bgr)
    rgb = read_image(tmp_path / "b.png")
    assert rgb[0, 0].tolist() == [0, 0, 200]


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg: not a decodable image"):
        read_image(bad)
    with pytest.raises(DataError, match="missing.png: image file not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(DataError, match="<bytes>"):
        decode_image(b"")


def test_fit_to_size_modes():
    img = np.zeros((100, 50, 3), np.uint8)
    img[:, 20:30] = 255
    assert fit_to_size(img, (112, 112), "resize").shape == (112, 112, 3)
    crop = fit_to_size(img, (56, 56), "center_crop")
    assert crop.shape == (56, 56, 3)
    # centre crop keeps the aspect ratio: the white band stays a fifth of the width
    assert 9 <= (crop[0, :, 0] > 127).sum() <= 13
    with pytest.raises(DataError, match="resize mode"):
        fit_to_size(img, (56, 56), "stretch")  # type: ignore[arg-type]


def test_normalisation_convention():
    img = np.array([[[0, 127, 255]]], np.uint8)
    t = to_tensor_array(img)
    assert t.shape == (3, 1, 1)
    assert np.allclose(t[:, 0, 0], [-1.0, -0.5 / 127.5, 1.0])


def test_encode_image_round_trips_png_and_refuses_unknown_formats(tmp_path):
    from facerec.data.image import encode_image, read_image_bytes

    img = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    png = encode_image(img, "png")
    np.testing.assert_array_equal(decode_image(png), img)  # lossless, RGB kept
    jpg = encode_image(img, ".JPG", quality=90)
    assert jpg[:3] == b"\xff\xd8\xff" and decode_image(jpg).shape == img.shape
    with pytest.raises(DataError, match="format 'gif' is not known"):
        encode_image(img, "gif")
    with pytest.raises(DataError, match="image file not found"):
        read_image_bytes(tmp_path / "nope.png")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` followed by no pixel data at all."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


def test_huge_image_refused_from_its_header_before_decoding(monkeypatch):
    import facerec.data.image as image

    def no_decode(*a, **k):
        raise AssertionError("decoded although the header says it is too large")

    monkeypatch.setattr(image.cv2, "imdecode", no_decode)
    with pytest.raises(
        DataError,
        match=r"big.png: image of 30000x30000 pixels, 900 megapixels "
        r"is above the limit of 50 megapixels.*FACEREC_MAX_PIXELS",
    ):
        decode_image(_png_header_only(30000, 30000), source="big.png")


def test_pixel_limit_from_env_and_context(monkeypatch, tmp_path):
    from facerec.data.image import MAX_PIXELS_ENV, max_pixels, pixel_limit
    from facerec.errors import ConfigError

    img = np.full((20, 30, 3), 7, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    for name in ("a.png", "a.jpg"):
        assert read_image(tmp_path / name).shape == (20, 30, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "599")
    for name in ("a.png", "a.jpg"):
        with pytest.raises(DataError, match=f"{name}: image of 30x20 pixels"):
            read_image(tmp_path / name)
    with pixel_limit(600):
        assert read_image(tmp_path / "a.png").shape == (20, 30, 3)
    assert max_pixels() == 599  # restored after the block
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match="FACEREC_MAX_PIXELS='lots' is not a pixel count"):
        max_pixels()
    monkeypatch.delenv(MAX_PIXELS_ENV)
    assert max_pixels() == 50_000_000


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif", ".bmp", ".webp", ".ppm"])
def test_header_size_matches_the_decoded_size(ext):
    from facerec.data.image import image_size

    img = np.random.default_rng(0).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, img, params)
    assert ok
    assert image_size(buf.tobytes()) == (13, 21)
    assert decode_image(buf.tobytes()).shape == (13, 21, 3)


def test_float_tiff_in_unit_range_scaled_by_255(tmp_path):
    x = np.linspace(0, 1, 4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    cv2.imwrite(str(tmp_path / "f.tif"), x)  # RGB float32: Pillow cannot read its header
    img = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(img, np.rint(x[:, :, ::-1] * 255).astype(np.uint8))
    grey = np.full((3, 3), 0.5, np.float32)
    cv2.imwrite(str(tmp_path / "g.tif"), grey)
    assert (read_image(tmp_path / "g.tif") == 128).all()


@pytest.mark.parametrize(
    "value, words",
    [
        (np.nan, "1 of 27 float pixel values are NaN or infinite"),
        (np.inf, "1 of 27 float pixel values are NaN or infinite"),
        (-0.5, r"float pixel values range over \[-0.5, 0.9\]; expected float pixels in \[0, 1\]"),
        (200.0, r"float pixel values range over \[0.1, 200\]"),
    ],
)
def test_bad_float_tiff_refused_by_name(tmp_path, value, words):
    x = np.full((3, 3, 3), 0.1, np.float32)
    x[1, 1, 1] = 0.9
    x[0, 0, 0] = value
    cv2.imwrite(str(tmp_path / "bad.tif"), x)
    with pytest.raises(DataError, match=f"bad.tif: {words}"):
        read_image(tmp_path / "bad.tif")


def test_16_bit_scaled_and_rounded_signed_refused(tmp_path):
    v = np.array([[0, 128, 129, 257, 32767, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "a.png"), v)
    img = read_image(tmp_path / "a.png")
    assert img[0, :, 0].tolist() == [0, 0, 1, 1, 127, 255]  # round(v * 255 / 65535)
    cv2.imwrite(str(tmp_path / "b.tif"), np.stack([v] * 3, axis=-1))
    assert read_image(tmp_path / "b.tif")[0, :, 1].tolist() == [0, 0, 1, 1, 127, 255]
    cv2.imwrite(str(tmp_path / "s.tif"), np.full((4, 4), -3, np.int16))
    with pytest.raises(DataError, match="s.tif: int16 pixels are not supported"):
        read_image(tmp_path / "s.tif")
