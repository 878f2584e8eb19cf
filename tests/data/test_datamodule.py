import numpy as np
import pytest
import torch

from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.data.datasets import normalize_images
from facerec.data.folder import scan_image_folder
from facerec.data.pairs import make_pairs
from facerec.data.transforms import build_augment
from facerec.errors import ConfigError, DataError


def test_scan_folder_and_errors(image_folder, tmp_path):
    paths, labels, names = scan_image_folder(image_folder)
    assert names == [f"person_{i}" for i in range(4)]
    assert len(paths) == 12 and labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    with pytest.raises(DataError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")
    (image_folder / "empty_person").mkdir()
    (image_folder / "empty_person" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="empty_person has no image files"):
        scan_image_folder(image_folder)


def test_folder_datamodule_mixed_formats_and_sizes(image_folder):
    dm = FaceDataModule(
        root=str(image_folder),
        image_size=(32, 32),
        batch_size=4,
        num_workers=0,
        val_identities=2,
        val_pairs=5,
    )
    assert dm.num_classes == 2 and len(dm.class_names) == 2
    dm.setup("fit")
    x, y, bad = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8  # normalised on the device
    x = normalize_images(x)
    assert x.min() >= -1 and x.max() <= 1 and bad.sum() == 0
    assert dm.val_set is not None and len(dm.val_set) == 6
    i1, i2, same = dm.pairs
    assert same.sum() == 5 and (~same).sum() == 5


def test_val_list_file(image_folder, tmp_path):
    lst = tmp_path / "val.txt"
    lst.write_text("# held out\nperson_0\nperson_2\n")
    dm = FaceDataModule(root=str(image_folder), val_list=str(lst), num_workers=0)
    assert dm.class_names == ["person_1", "person_3"]
    lst.write_text("person_9\n")
    with pytest.raises(DataError, match="person_9"):
        FaceDataModule(root=str(image_folder), val_list=str(lst)).num_classes


def test_corrupt_image_is_skipped_and_counted_or_strict(image_folder):
    (image_folder / "person_1" / "001.png").write_bytes(b"garbage")
    dm = FaceDataModule(
        root=str(image_folder), image_size=(32, 32), val_identities=0, num_workers=0
    )
    dm.setup("fit")
    ds = dm.train_set
    bad_idx = next(i for i in range(len(ds)) if "person_1/001.png" in ds.loader.describe(i))
    with pytest.warns(UserWarning, match="001.png"):
        x, y, bad = ds[bad_idx]
    assert bad == 1 and y == ds.labels[bad_idx] and x.shape == (3, 32, 32)
    strict = FaceDataModule(
        root=str(image_folder), image_size=(32, 32), val_identities=0, strict=True, num_workers=0
    )
    strict.setup("fit")
    with pytest.raises(DataError, match="001.png"):
        strict.train_set[bad_idx]


def test_synthetic_datamodule_has_disjoint_validation():
    dm = FaceDataModule(
        image_size=(48, 48),
        batch_size=8,
        num_workers=0,
        synthetic=SyntheticOptions(identities=6, images_per_identity=3, size=64),
        val_identities=3,
        val_images_per_identity=2,
        val_pairs=4,
    )
    assert dm.num_classes == 6
    dm.setup("fit")
    assert len(dm.train_set) == 18 and len(dm.val_set) == 6
    train = np.stack([dm.train_set.load(i) for i in range(len(dm.train_set))])
    val = np.stack([dm.val_set.load(i) for i in range(len(dm.val_set))])
    assert not any(np.array_equal(v, t) for v in val for t in train)
    raw = dm.raw_pixel_accuracy()
    assert 0.0 <= raw <= 1.0


def test_augment_from_config_and_errors():
    aug = build_augment([{"name": "HorizontalFlip", "p": 1.0}])
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(aug(image=img)["image"], img[:, ::-1])
    with pytest.raises(ConfigError, match="NotATransform"):
        build_augment([{"name": "NotATransform"}])
    with pytest.raises(ConfigError, match="HorizontalFlip"):
        build_augment([{"name": "HorizontalFlip", "prob": 0.5}])
    with pytest.raises(ConfigError, match="data.sampler"):
        FaceDataModule(sampler="balanced")  # type: ignore[arg-type]


def test_make_pairs_balanced_and_deterministic():
    labels = np.repeat(np.arange(5), 4)
    a = make_pairs(labels, 20, seed=1)
    b = make_pairs(labels, 20, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    i1, i2, same = a
    assert np.array_equal(labels[i1] == labels[i2], same) and same.sum() == 20
    assert np.all(i1[same] != i2[same])
    with pytest.raises(DataError, match="at least two"):
        make_pairs(np.zeros(4, int), 3)
