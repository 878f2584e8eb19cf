"""Tests of the procedural synthetic face generator (facerec.data.synthetic)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from facerec.data.image import read_image
from facerec.data.synthetic import IdentityParams, SyntheticFaces, main, write_synthetic_folder
from facerec.errors import ConfigError

IDS, IMGS = 5, 3


def test_shape_dtype_len_and_labels() -> None:
    faces = SyntheticFaces(IDS, IMGS, size=112, seed=0)
    assert len(faces) == IDS * IMGS
    for i in (0, 4, len(faces) - 1):
        img, label = faces[i]
        assert img.shape == (112, 112, 3) and img.dtype == np.uint8
        assert label == i // IMGS
        assert np.array_equal(img, faces.render(i // IMGS, i % IMGS))
    assert np.array_equal(faces[-1][0], faces[len(faces) - 1][0])
    small = SyntheticFaces(2, 2, size=48).render(1, 1)
    assert small.shape == (48, 48, 3) and small.dtype == np.uint8
    with pytest.raises(IndexError):
        faces[len(faces)]
    assert faces.class_names == [f"id_{i:05d}" for i in range(IDS)]


def test_deterministic_for_a_seed() -> None:
    a, b = SyntheticFaces(IDS, IMGS, seed=7), SyntheticFaces(IDS, IMGS, seed=7)
    other = SyntheticFaces(IDS, IMGS, seed=8)
    for i in range(0, len(a), 4):
        assert a[i][0].tobytes() == b[i][0].tobytes()
        assert not np.array_equal(a[i][0], other[i][0])
    assert a.identity(2) == b.identity(2)
    assert a.identity(2) != other.identity(2)


def test_identity_independent_of_dataset_size() -> None:
    small = SyntheticFaces(num_identities=5, images_per_identity=3, seed=3)
    large = SyntheticFaces(num_identities=500, images_per_identity=40, seed=3)
    assert small.identity(4) == large.identity(4)
    assert np.array_equal(small.render(4, 2), large.render(4, 2))
    # held-out identities far beyond num_identities are defined too
    assert np.array_equal(small.render(10001, 0), large.render(10001, 0))


def _continuous(p: IdentityParams) -> np.ndarray:
    """The continuous (float) geometry parameters and the skin, hair, iris and lip colours."""
    vals = [getattr(p, f.name) for f in dataclasses.fields(p) if f.type == "float"]
    for colour in (p.skin, p.hair_color, p.iris_color, p.lip_color):
        vals.extend(colour)
    return np.array(vals)


def test_identities_differ() -> None:
    faces = SyntheticFaces(IDS, IMGS)
    params = [_continuous(faces.identity(i)) for i in range(IDS)]
    for i in range(IDS):
        for j in range(i + 1, IDS):
            # continuous parameters (geometry and tone) all differ between two identities
            assert np.mean(params[i] != params[j]) > 0.8
    canon = SyntheticFaces(IDS, IMGS, difficulty=0.0)
    imgs = [canon.render(i, 0).astype(np.int16) for i in range(IDS)]
    for i in range(IDS):
        for j in range(i + 1, IDS):
            assert np.abs(imgs[i] - imgs[j]).mean() > 5.0


def test_nuisance_present_and_scaled_by_difficulty() -> None:
    def spread(difficulty: float) -> float:
        f = SyntheticFaces(IDS, IMGS, difficulty=difficulty)
        diffs = [
            np.abs(f.render(i, 0).astype(np.int16) - f.render(i, k).astype(np.int16)).mean()
            for i in range(3)
            for k in (1, 2)
        ]
        return float(np.min(diffs)) if difficulty == 1.0 else float(np.mean(diffs))

    assert spread(0.0) == 0.0  # canonical faces: every image of an identity is the same
    assert spread(0.3) > 1.0
    assert spread(1.0) > 5.0  # every pair of images of one identity clearly differs
    assert spread(1.0) > spread(0.3)


def test_canonical_layout_matches_aligned_template() -> None:
    faces = SyntheticFaces(IDS, IMGS, difficulty=0.0)
    for i in range(IDS):
        img = faces.render(i, 0)
        p = faces.identity(i)
        # plain grey background in the top corners
        assert np.array_equal(img[0, 0], [128, 128, 128])
        assert np.array_equal(img[0, -1], [128, 128, 128])
        # skin on the nose bridge, between the eyes and the nose tip (median: a mole may sit there)
        skin = np.array(p.skin)
        bridge = np.median(img[59:66, 53:60].reshape(-1, 3), axis=0)
        assert np.all(np.abs(bridge - skin) <= 0.12 * skin + 6)
    # averaged over identities, features sit where the ArcFace 112x112 template puts them
    ps = [faces.identity(i) for i in range(300)]
    assert abs(np.mean([q.eye_y for q in ps]) - 51.6) < 1.5
    assert abs(np.mean([56 - q.eye_half_spacing for q in ps]) - 38.3) < 1.5
    assert abs(np.mean([q.nose_y for q in ps]) - 71.7) < 1.5
    assert abs(np.mean([q.mouth_y for q in ps]) - 92.3) < 1.5
    assert abs(np.mean([q.mouth_width for q in ps]) - 29.2) < 1.5


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigError, match="num_identities"):
        SyntheticFaces(num_identities=0)
    with pytest.raises(ConfigError, match="difficulty"):
        SyntheticFaces(difficulty=-0.5)
    with pytest.raises(ConfigError, match="seed"):
        SyntheticFaces(seed=-1)
    with pytest.raises(ConfigError, match="extension"):
        write_synthetic_folder("unused", 1, 1, ext=".gif")


def test_write_synthetic_folder(tmp_path) -> None:
    out = write_synthetic_folder(tmp_path / "synth", IDS, IMGS, size=64, seed=1)
    assert out == tmp_path / "synth"
    folders = sorted(d.name for d in out.iterdir())
    assert folders == [f"id_{i:05d}" for i in range(IDS)]
    faces = SyntheticFaces(IDS, IMGS, size=64, seed=1)
    for i, name in enumerate(folders):
        files = sorted(f.name for f in (out / name).iterdir())
        assert files == [f"{k:04d}.png" for k in range(IMGS)]  # no temporary files left
        for k in range(IMGS):
            img = read_image(out / name / f"{k:04d}.png")
            assert np.array_equal(img, faces.render(i, k))  # PNG is lossless, RGB order kept


def test_main_writes_tree(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--identities", "2", "--images-per-identity", "2", "--size", "32"]
    assert main(argv) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "id_00000/0000.png",
        "id_00000/0001.png",
        "id_00001/0000.png",
        "id_00001/0001.png",
    ]
    assert read_image(out / "id_00001" / "0001.png").shape == (32, 32, 3)
    assert "wrote 4 images" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--identities", "0", "--images-per-identity", "2"], "--identities must be at least 1"),
        (["--identities", "2", "--images-per-identity", "x"], "must be an integer"),
        (["--identities", "2"], "--images-per-identity"),
    ],
)
def test_main_bad_arguments(tmp_path, capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "x"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "facerec synth" in err and message in err
    assert not (tmp_path / "x").exists()


def test_main_unwritable_output(tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["--out", str(blocker), "--identities", "1", "--images-per-identity", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("facerec synth: error:") and str(blocker) in err
    assert err.count("\n") == 1  # one line, no traceback


def test_main_contact_sheet(tmp_path, capsys) -> None:
    sheet = tmp_path / "grid.png"
    argv = ["--grid", str(sheet), "--identities", "2", "--images-per-identity", "3", "--size", "32"]
    assert main(argv) == 0
    img = read_image(sheet)
    assert img.shape == (2 * 32, 3 * 32, 3)
    faces = SyntheticFaces(2, 3, size=32, seed=0)
    assert np.array_equal(img[32:, 64:], faces.render(1, 2))  # row = identity, column = image
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(tmp_path / "both")])


def test_main_refuses_a_non_empty_out_unless_overwrite(tmp_path, capsys) -> None:
    out = tmp_path / "set"
    out.mkdir()  # an empty folder is fine
    argv = ["--identities", "3", "--images-per-identity", "2", "--size", "16", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    first = (out / "id_00002" / "0001.png").read_bytes()
    assert main(argv) == 2  # written before: refused without --overwrite, left as it was
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not empty" in err and "--overwrite" in err
    assert (out / "id_00002" / "0001.png").read_bytes() == first
    # --overwrite replaces the earlier set: fewer identities and another format, nothing stale
    small = ["--identities", "2", "--images-per-identity", "1", "--size", "16", "--ext", ".bmp"]
    assert main([*small, "--out", str(out), "--overwrite", "--seed", "3"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "id_00000",
        "id_00000/0000.bmp",
        "id_00001",
        "id_00001/0000.bmp",
    ]
    # a folder holding anything facerec synth did not write is refused even with --overwrite
    mine = tmp_path / "photos"
    (mine / "alice").mkdir(parents=True)
    (mine / "alice" / "0000.png").write_bytes(b"a user's photo")
    for extra, words in (([], "not empty"), (["--overwrite"], "which facerec synth did not")):
        assert main([*small, "--out", str(mine), *extra]) == 2
        assert words in capsys.readouterr().err
    assert (mine / "alice" / "0000.png").read_bytes() == b"a user's photo"
    assert sorted(p.name for p in mine.iterdir()) == ["alice"]


def test_main_grid_onto_a_folder_is_one_line(tmp_path, capsys) -> None:
    argv = ["--grid", str(tmp_path), "--identities", "1", "--images-per-identity", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder; expected a file path" in err
