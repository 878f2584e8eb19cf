"""The uint8 data path: samples leave the workers as uint8 and are normalised on the device,
with results identical, bit for bit, to the float32 path normalised on the CPU."""

from types import SimpleNamespace

import numpy as np
import torch
from pytorch_lightning.plugins.precision import HalfPrecision
from torch.utils.data import DataLoader

from facerec.data.datamodule import FaceDataModule
from facerec.data.datasets import (
    FaceDataset,
    IndexedDataset,
    normalize_images,
    to_chw_uint8,
)
from facerec.data.image import to_tensor_array
from facerec.data.transforms import apply_augment, build_augment
from facerec.models import IResNet
from facerec.training.module import FaceRecognitionModule

AUGMENT = [
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "RandomBrightnessContrast", "brightness_limit": 0.3, "contrast_limit": 0.3, "p": 0.8},
    {"name": "Affine", "rotate": (-10, 10), "scale": (0.9, 1.1), "p": 0.7},
]


def _images(n: int = 12, size: int = 40) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _augment(seed: int):
    aug = build_augment(AUGMENT)
    aug.set_random_seed(seed)
    return aug


def test_uint8_batches_normalise_to_the_old_float_path_bit_for_bit() -> None:
    images = _images()
    labels = np.arange(len(images)) // 3
    ds = FaceDataset(images, labels, image_size=(32, 32), augment=_augment(7))
    batch = next(iter(DataLoader(ds, batch_size=len(ds), num_workers=0)))
    x, y, bad = batch
    assert x.dtype == torch.uint8 and x.shape == (12, 3, 32, 32) and x.is_contiguous()
    # the old path: the same images and augmentation draws, normalised to float32 on the CPU
    old_aug = _augment(7)
    old = torch.stack(
        [torch.from_numpy(to_tensor_array(apply_augment(old_aug, ds.load(i)))) for i in range(12)]
    )
    new = normalize_images(x)
    assert new.dtype == torch.float32 and torch.equal(new, old)
    assert not torch.equal(
        old, torch.stack([torch.from_numpy(to_tensor_array(ds.load(i))) for i in range(12)])
    )  # augmentation did act
    # validation samples: not augmented, same normalisation
    val, idx = next(iter(DataLoader(IndexedDataset(ds), batch_size=12)))
    plain = torch.stack([torch.from_numpy(to_tensor_array(ds.load(i))) for i in range(12)])
    assert val.dtype == torch.uint8 and torch.equal(normalize_images(val), plain)
    assert torch.equal(idx, torch.arange(12))
    # a float tensor is taken as already normalised
    assert normalize_images(plain) is plain
    assert torch.equal(to_chw_uint8(images[0]), torch.from_numpy(images[0]).permute(2, 0, 1))


def test_module_normalises_after_transfer_and_in_forward() -> None:
    torch.manual_seed(0)
    backbone = IResNet(depth=18, width=0.125, embedding_dim=16, input_size=(32, 32))
    m = FaceRecognitionModule(backbone=backbone, num_classes=4).eval()
    x = torch.from_numpy(np.stack([to_chw_uint8(im) for im in _images(4, 32)]).copy())
    labels, bad = torch.arange(4), torch.zeros(4, dtype=torch.long)
    out = m.on_after_batch_transfer([x, labels, bad], 0)
    assert isinstance(out, list) and out[1] is labels and out[2] is bad
    assert torch.equal(out[0], normalize_images(x))
    val = m.on_after_batch_transfer((x, labels), 0)  # validation batches: (images, index)
    assert isinstance(val, tuple) and torch.equal(val[0], out[0])
    with torch.no_grad():
        assert torch.equal(m(x), m(out[0]))  # forward accepts uint8 too (embedding loops)
    # the run's input precision: bf16-true gets bf16 images (what Lightning gave float batches)
    m._trainer = SimpleNamespace(precision_plugin=HalfPrecision("bf16-true"))
    half = m.on_after_batch_transfer([x, labels], 0)[0]
    assert half.dtype == torch.bfloat16 and torch.equal(half, out[0].to(torch.bfloat16))


def test_pin_memory_follows_the_device_unless_set() -> None:
    assert FaceDataModule(num_workers=0)._pin_memory() is False  # no trainer, no CUDA
    assert FaceDataModule(num_workers=0, pin_memory=True)._pin_memory() is True


# ------------------------------------------ unreadable training images (issue 11)
class _Flaky:
    """An image source for which some indices are unreadable (raise DataError, as a corrupt
    file does)."""

    def __init__(self, images: np.ndarray, bad: set[int]) -> None:
        self.images, self.bad = images, bad

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> np.ndarray:
        if i in self.bad:
            from facerec.errors import DataError

            raise DataError(f"file_{i}.jpg: not a decodable image")
        return self.images[i]

    def describe(self, i: int) -> str:
        return f"file_{i}.jpg"


def test_replacement_is_always_of_the_same_identity() -> None:
    import warnings

    images = _images(12, 32)
    labels = np.arange(12) // 4  # identities 0, 1, 2 of four images each
    ds = FaceDataset(_Flaky(images, {4, 5, 6}), labels, image_size=(32, 32), names=["a", "b", "c"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in (4, 5, 6, (4, 3), (6, 9)):
            x, y, bad = ds[key]
            assert y == 1 and torch.equal(x, to_chw_uint8(images[7]))  # b's one readable image
            assert set(bad[bad >= 0].tolist()) <= {4, 5, 6}


def test_identity_with_no_readable_image_is_refused_by_name() -> None:
    import pytest

    from facerec.errors import DataError

    images = _images(12, 32)
    labels = np.arange(12) // 4
    ds = FaceDataset(_Flaky(images, {8, 9, 10, 11}), labels, image_size=(32, 32),
                     names=["ann", "bo", "cy"])  # fmt: skip
    with pytest.warns(UserWarning), pytest.raises(DataError) as e:
        ds[9]
    msg = str(e.value)
    assert "identity 'cy' (label 2): all its 4 images are unreadable" in msg and "file_9" in msg
    assert ds[0][1] == 0  # the other identities still load


def test_symlink_loops_and_dangling_links_are_counted_not_dropped_silently(tmp_path):
    """A looping or dangling link named like an image (or as an identity) is skipped with one
    warning that counts them (issue 21 §4), in both scanners."""
    import os
    import warnings

    import cv2
    import numpy as np

    from facerec.data.folder import list_images, scan_image_folder

    for who in ("a", "b"):
        (tmp_path / who).mkdir()
        cv2.imwrite(str(tmp_path / who / "0.png"), np.zeros((4, 4, 3), np.uint8))
    os.symlink("loop2.jpg", tmp_path / "a" / "loop1.jpg")
    os.symlink("loop1.jpg", tmp_path / "a" / "loop2.jpg")
    os.symlink("gone.png", tmp_path / "b" / "dangling.png")
    os.symlink("c", tmp_path / "c")  # an identity folder that is a loop
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths, labels, names = scan_image_folder(tmp_path)
        found = list_images(tmp_path)
    assert names == ["a", "b"] and len(paths) == 2 and len(found) == 2
    messages = [str(w.message) for w in caught]
    assert messages[0].startswith(f"skipped 4 symbolic link(s) under {tmp_path} that lead nowhere")
    assert messages[1].startswith("skipped 4 symbolic link(s)")  # list_images sees c as a file
