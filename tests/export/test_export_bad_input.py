"""Bad input to ``facerec export`` / ``facerec embed``: clear messages, nothing half-written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from facerec.cli import main
from facerec.errors import DataError
from facerec.eval.embed_cli import read_names
from facerec.inference.checkpoint import load_facerec_checkpoint
from facerec.inference.onnx import OnnxEmbedder, read_onnx_metadata


def _leftovers(folder: Path, name: str) -> list[Path]:
    """Temporary files of an atomic write of ``name`` still lying in ``folder``."""
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.")]


@pytest.fixture
def not_facerec(tmp_path: Path) -> dict[str, Path]:
    """Files that are not facerec checkpoints, each with the words its message must have."""
    lightning = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2, 2)}, "epoch": 0}, lightning)
    plain = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(1)}, plain)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    return {"not a facerec checkpoint": lightning, "facerec": plain, "not a PyTorch": garbage}


@pytest.mark.parametrize("command", ["export", "embed"])
def test_not_a_facerec_checkpoint(
    command: str, not_facerec: dict[str, Path], image_folder: Path, tmp_path: Path, capsys
) -> None:
    for words, path in not_facerec.items():
        out = tmp_path / ("out.onnx" if command == "export" else "out.npy")
        argv = [command, "--checkpoint", str(path), "--out", str(out)]
        if command == "embed":
            argv += ["--no-progress", str(image_folder)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and str(path) in err and "expected a .ckpt" in err, err
        assert len(err.strip().splitlines()) == 1  # one line, no traceback
        assert not out.exists() and not _leftovers(tmp_path, out.name)
        assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(DataError, match="checkpoint not found"):
        load_facerec_checkpoint(tmp_path / "missing.ckpt")


def test_undecodable_image_names_the_file_and_writes_nothing(
    plain_onnx: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "imgs"
    shutil.copytree(image_folder, folder)
    bad = folder / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated jpeg")
    out, lst = tmp_path / "emb.npy", tmp_path / "emb.jsonl"
    out.write_bytes(b"previous")  # an earlier result stays as it was
    argv = ["embed", "--no-progress", "--onnx", str(plain_onnx), str(folder), "--out", str(out)]
    assert main([*argv, "--batch-size", "2"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not a decodable image" in err and "--skip-bad" in err
    assert out.read_bytes() == b"previous" and not lst.exists()
    assert not _leftovers(tmp_path, "emb.npy") and not _leftovers(tmp_path, "emb.jsonl")
    # --skip-bad leaves it out of both outputs and says so
    assert main([*argv, "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and str(bad) in err
    listed = read_names(lst)
    assert str(bad) not in listed and len(listed) == 5
    assert np.load(out).shape == (5, 64)


def test_missing_inputs_and_empty_folder(plain_onnx: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    out = tmp_path / "e.npy"
    for inp, words in ((tmp_path / "nope.jpg", "no such file or folder"), (empty, "no image")):
        argv = ["embed", "--onnx", str(plain_onnx), str(inp), "--out", str(out)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and str(inp) in err
        assert not out.exists()


def test_onnx_without_facerec_metadata_uses_documented_defaults(
    plain_onnx: Path, baked_onnx: Path, image_folder: Path, tmp_path: Path, faces, capsys
) -> None:
    stripped = {}
    for src in (plain_onnx, baked_onnx):
        model = onnx.load(str(src))
        del model.metadata_props[:]
        stripped[src] = tmp_path / f"foreign_{src.name}"
        onnx.save(model, str(stripped[src]))
    # plain: float32 NCHW, (x - 127.5) / 127.5; the 64x64 size comes from the graph's input
    with pytest.warns(UserWarning, match="no facerec metadata; using the documented defaults"):
        foreign = OnnxEmbedder(stripped[plain_onnx])
    assert not foreign.meta.from_facerec and foreign.input_size == (64, 64)
    np.testing.assert_allclose(foreign(faces), OnnxEmbedder(plain_onnx)(faces), rtol=1e-6)
    # baked: a uint8 input is taken as images with the normalisation in the graph
    with pytest.warns(UserWarning, match="uint8 NHWC input"):
        foreign_baked = OnnxEmbedder(stripped[baked_onnx])
    np.testing.assert_allclose(foreign_baked(faces), foreign(faces), rtol=1e-4, atol=1e-3)
    meta = read_onnx_metadata(stripped[plain_onnx])
    assert not meta.from_facerec and "documented defaults" in meta.notes[0]
    # and the CLI says so on stderr, then works
    out = tmp_path / "e.npy"
    argv = ["embed", "--no-progress", "--onnx", str(stripped[plain_onnx]), str(image_folder)]
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "no facerec metadata" in err
    assert np.load(out).shape == (5, 64)


def test_not_an_onnx_file(ckpt: Path, image_folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "e.npy"
    argv = ["embed", "--onnx", str(ckpt), str(image_folder), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "onnxruntime cannot load it" in err and str(ckpt) in err
    assert not out.exists()
    with pytest.raises(DataError, match="ONNX model not found"):
        OnnxEmbedder(tmp_path / "missing.onnx")


def test_export_refuses_a_folder_as_out(ckpt: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_onnx_metadata_size_must_match_the_graph(plain_onnx: Path, tmp_path: Path) -> None:
    model = onnx.load(str(plain_onnx))
    for prop in model.metadata_props:
        if prop.key == "input_size":
            prop.value = "[32, 32]"  # the graph takes 64x64
    edited = tmp_path / "edited.onnx"
    onnx.save(model, str(edited))
    with pytest.raises(DataError, match=r"metadata says input_size 32x32 but the graph's input"):
        OnnxEmbedder(edited)
    OnnxEmbedder(plain_onnx)  # the file as exported agrees with itself
