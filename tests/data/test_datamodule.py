from pathlib import Path

import numpy as np
import pytest
import torch

from facerec.data.datamodule import FaceDataModule, SyntheticOptions
from facerec.data.datasets import normalize_images
from facerec.data.folder import scan_image_folder
from facerec.data.pairs import make_pairs
from facerec.data.transforms import build_augment
from facerec.errors import ConfigError, DataError

ROOT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


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
    assert x.min() >= -1 and x.max() <= 1 and bool((bad < 0).all())  # no bad file met
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
    bad_idx = next(i for i in range(len(ds)) if "person_1/001.png" in ds.describe(i))
    with pytest.warns(UserWarning, match="001.png"):
        x, y, bad = ds[bad_idx]
    assert bad.tolist() == [bad_idx] + [-1] * 7  # the bad file's index, for a distinct count
    assert y == ds.labels[bad_idx] and x.shape == (3, 32, 32)
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
    with pytest.raises(ConfigError, match="data.sampler is 'balanced'; expected null"):
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


# ------------------------------------------------ held-out images, RecordIO validation (issue 11)
def test_unreadable_held_out_image_is_left_out_at_setup_and_named(image_folder, tmp_path):
    """Validation reads strictly; a bad held-out image is found when the data are set up (not
    after an epoch of training), named, and left out with its pairs."""
    from torch.utils.data import DataLoader

    from facerec.data.datasets import IndexedDataset

    bad = sorted((image_folder / "person_2").iterdir())[1]
    bad.write_bytes(b"garbage")
    lst = tmp_path / "val.txt"
    lst.write_text("person_2\nperson_3\n")
    dm = FaceDataModule(
        root=str(image_folder), image_size=(32, 32), val_list=str(lst), val_pairs=6,
        num_workers=0,
    )  # fmt: skip
    with pytest.warns(UserWarning, match=rf"skipped 1 unreadable images \(.*person_2/{bad.name}\)"):
        dm.setup("fit")
    assert len(dm.val_set) == 5  # 2 identities x 3 images, less the bad one
    assert all(dm.val_set.describe(i) != str(bad) for i in range(5))
    i1, i2, _ = dm.pairs
    assert max(i1.max(), i2.max()) < 5
    images, index = next(iter(DataLoader(IndexedDataset(dm.val_set), batch_size=8)))
    assert images.shape == (5, 3, 32, 32) and index.tolist() == [0, 1, 2, 3, 4]


def test_fit_with_a_corrupt_held_out_image_validates_and_checkpoints(image_folder, tmp_path):
    """The case of issue 11: the fit runs its epoch, validates and writes its best checkpoint."""
    from facerec.cli import main

    bad = sorted((image_folder / "person_3").iterdir())[0]
    bad.write_bytes(b"\x00" * 20)
    lst = tmp_path / "val.txt"
    lst.write_text("person_2\nperson_3\n")
    root = ROOT_CONFIG
    argv = [
        "fit", "--config", str(root), "--trainer.default_root_dir", str(tmp_path / "run"),
        "--data.root", str(image_folder), "--data.val_list", str(lst), "--data.val_identities",
        "0", "--data.val_pairs", "6", "--data.image_size", "[32,32]", "--data.batch_size", "2",
        "--data.num_workers", "0",
        "--model.backbone.init_args.width", "0.125",
        "--model.backbone.init_args.embedding_dim", "8", "--trainer.max_epochs", "1",
        "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    with pytest.warns(UserWarning, match=f"person_3/{bad.name}"):
        assert main(argv) == 0
    best = list((tmp_path / "run" / "checkpoints").glob("epoch*.ckpt"))
    assert len(best) == 1 and "acc" in best[0].name


def write_folder(root: Path, identities: int, per_id: int) -> Path:
    """root/person_<i>/<j>.png: random 36x36 RGB images."""
    import cv2

    rng = np.random.default_rng(1)
    for i in range(identities):
        (root / f"person_{i}").mkdir(parents=True)
        for j in range(per_id):
            img = rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)
            assert cv2.imwrite(str(root / f"person_{i}" / f"{j:03d}.png"), img)
    return root


def _packed(image_folder, tmp_path):
    from facerec.data.recordio import pack_folder

    out = tmp_path / "rec"
    pack_folder(image_folder, out, size=32, num_workers=1)
    return out


def test_recordio_holds_out_identities_by_label(tmp_path):
    folder = write_folder(tmp_path / "faces", identities=6, per_id=3)
    rec = _packed(folder, tmp_path)
    dm = FaceDataModule(root=str(rec), image_size=(32, 32), val_identities=2, val_pairs=4,
                        num_workers=0)  # fmt: skip
    assert dm.has_validation and dm.num_classes == 4
    dm.setup("fit")
    held = sorted(set(map(str, range(6))) - set(dm.class_names))
    assert len(held) == 2 and len(dm.val_set) == 6 and len(dm.train_set) == 12
    assert sorted(set(dm.train_set.labels.tolist())) == [0, 1, 2, 3]
    # the held-out samples are those of the held-out labels, the training ones the others
    from facerec.data.recordio import RecordIODataset

    src = RecordIODataset(rec)
    val_keys = {int(i) for i in dm._build_index()["val"].indices}
    assert {str(src.labels[i]) for i in val_keys} == set(held)
    assert dm.pairs is not None
    # val_list names RecordIO identities by label
    lst = tmp_path / "val.txt"
    lst.write_text("0\n5\n")
    dm2 = FaceDataModule(root=str(rec), image_size=(32, 32), val_list=str(lst), num_workers=0,
                         val_pairs=4)  # fmt: skip
    assert dm2.class_names == ["1", "2", "3", "4"]


def test_too_few_identities_say_two_training_identities_are_needed(tmp_path):
    one = write_folder(tmp_path / "one", identities=1, per_id=2)
    with pytest.raises(DataError, match="has 1 identity; at least 2 training identities"):
        FaceDataModule(root=str(one)).num_classes
    three = write_folder(tmp_path / "three", identities=3, per_id=2)
    with pytest.raises(DataError, match=r"at least 2 training identities are needed, so "
                       r"expected data.val_identities <= 1"):  # fmt: skip
        FaceDataModule(root=str(three), val_identities=2).num_classes
    assert FaceDataModule(root=str(three), val_identities=1).num_classes == 2


def test_print_config_shows_the_augmentation_that_applies(capsys):
    from facerec.cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    out = capsys.readouterr().out
    data = out[out.index("data:") :]
    assert "augment:\n  - name: HorizontalFlip\n    p: 0.5" in data, data[:800]
    assert "augment: null" not in out


def _batches(dm: FaceDataModule, epoch: int, skip: int = 0) -> list[torch.Tensor]:
    loader = dm.train_dataloader()
    sampler = dm.train_batch_sampler
    sampler.set_epoch(epoch)
    if skip:
        loader.load_state_dict(
            {
                "epoch": epoch,
                "batches_yielded": skip,
                "num_samples": len(dm.train_set),
                "seed": 0,
                "global_batch_size": 8,
            }
        )
    return [x for x, _, _ in loader]


def test_augmentation_draws_are_seeded_per_sample_and_epoch():
    """Same seed, same draws: whatever the number of workers, and after a mid-epoch resume;
    another epoch draws anew."""
    spec = [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "RandomBrightnessContrast", "p": 0.8},
        {"name": "Affine", "rotate": (-15, 15), "p": 0.7},
    ]

    def dm(workers: int) -> FaceDataModule:
        d = FaceDataModule(
            image_size=(24, 24), batch_size=8, num_workers=workers, augment=spec,
            synthetic=SyntheticOptions(identities=4, images_per_identity=6, size=24),
            val_identities=0,
        )  # fmt: skip
        d.setup("fit")
        return d

    a = _batches(dm(0), 0)
    assert len(a) == 3
    b = _batches(dm(2), 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    resumed = _batches(dm(0), 0, skip=2)
    assert len(resumed) == 1 and torch.equal(resumed[0], a[2])
    again = _batches(dm(0), 1)
    assert not any(torch.equal(x, y) for x, y in zip(a, again, strict=True))


def test_identity_of_corrupt_files_is_refused_at_setup(tmp_path):
    """Found when the data are set up (before any batch), not when the sampler draws it."""
    root = write_folder(tmp_path / "faces", 3, 3)
    for f in (root / "person_1").iterdir():
        f.write_bytes(b"not an image")
    (root / "person_2" / "000.png").write_bytes(b"broken")  # one bad file of three: fine
    dm = FaceDataModule(root=str(root), val_identities=0, num_workers=0)
    with pytest.raises(DataError, match=r"identity 'person_1' \(label 1\): all its 3 images"):
        dm.num_classes  # the scan runs when the data are first indexed
