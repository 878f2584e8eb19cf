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
