"""``facerec embed`` / ``facerec export`` outputs: any file name round-trips in the names file;
outputs inside an input, in a read-only or full folder are refused before any work, in one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

import facerec.eval.embed_cli as embed_mod
import facerec.export.cli as export_cli
from facerec.cli import main
from facerec.data.image import fit_to_size, read_image
from facerec.eval.embed_cli import build_parser, name_line, read_names
from facerec.inference.onnx import OnnxEmbedder

ODD_NAMES = ["new\nline.png", "comma,name.png", 'quote"d.png', "été 顔 😀.png", "back\\slash.png"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def _no_work(monkeypatch) -> None:
    """Fail the test if an image is embedded or a model exported."""

    def boom(*a, **k):
        raise AssertionError("the work started although the output was refused")

    monkeypatch.setattr(embed_mod, "embed_images", boom)
    monkeypatch.setattr(export_cli, "export_onnx", boom)


def test_any_file_name_round_trips_with_skip_bad(
    plain_onnx: Path, faces: np.ndarray, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    for name, img in zip(ODD_NAMES, faces, strict=False):
        cv2.imwrite(str(folder / name), np.ascontiguousarray(img[:, :, ::-1]))
    (folder / "bad\nname.png").write_bytes(b"\x89PNG broken")  # skipped, sorts first
    raw = os.fsdecode(b"raw\xff.png")  # not UTF-8: a surrogate-escaped str
    shutil.copy(folder / ODD_NAMES[1], folder / raw)
    out = tmp_path / "e.npy"
    argv = ["embed", "--no-progress", "--skip-bad", "--onnx", str(plain_onnx), str(folder)]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    emb, names = np.load(out), read_names(tmp_path / "e.jsonl")
    expected = sorted(str(folder / n) for n in [*ODD_NAMES, raw])
    assert names == expected and emb.shape[0] == len(names)
    lines = (tmp_path / "e.jsonl").read_bytes().decode("utf-8").splitlines()  # valid UTF-8
    assert len(lines) == len(names) and all(json.loads(ln) in names for ln in lines)
    assert '"' + str(folder / "été 顔 😀.png") + '"' in lines  # Unicode kept readable
    m = OnnxEmbedder(plain_onnx)
    for row, name in zip(emb, names, strict=True):  # each row is the image its line names
        img = fit_to_size(read_image(name), m.input_size, m.resize_mode)[None]
        np.testing.assert_allclose(row, m(img)[0], rtol=1e-4, atol=1e-4)
    assert name_line(raw) == '"raw\\udcff.png"\n' and os.fsencode(json.loads(name_line(raw))) == (
        b"raw\xff.png"
    )


def test_old_txt_names_file_still_read_and_not_written(tmp_path: Path, capsys) -> None:
    old = tmp_path / "e.txt"
    old.write_text("a.png\nb c.png\n")
    assert read_names(old) == ["a.png", "b c.png"]
    assert main(["embed", "--onnx", "m.onnx", "x.png", "--out", "e.npy", "--list", str(old)]) == 2
    assert "names are written as JSON lines" in _one_line_error(capsys)
    assert old.read_text() == "a.png\nb c.png\n"
    bad = tmp_path / "e.jsonl"
    bad.write_text('"a.png"\nb.png\n')
    with pytest.raises(Exception, match="line 2 is not a JSON string"):
        read_names(bad)


def test_embed_output_inside_an_input_refused_before_work(
    plain_onnx: Path, ckpt: Path, image_folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    _no_work(monkeypatch)
    folder = tmp_path / "imgs"
    shutil.copytree(image_folder, folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    img = folder / "a.png"
    cases = [
        (["--onnx", str(plain_onnx), str(folder), "--out", str(folder / "e.npy")], "inside"),
        (["--onnx", str(plain_onnx), str(folder), "--out", str(img)], "inside"),
        (["--onnx", str(plain_onnx), str(img), "--out", str(img)], "the same as"),
        (["--onnx", str(plain_onnx), str(folder), "--out", str(tmp_path / "e.npy"),
          "--list", str(folder / "b" / "n.jsonl")], "--list"),
        (["--checkpoint", str(ckpt), str(folder), "--out", str(ckpt)], "--checkpoint"),
    ]  # fmt: skip
    for argv, words in cases:
        assert main(["embed", "--no-progress", *argv]) == 2
        err = _one_line_error(capsys)
        assert words in err and "choose an output outside" in err, err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "e.npy").exists()


def test_export_out_onto_the_checkpoint_refused(ckpt: Path, monkeypatch, capsys) -> None:
    _no_work(monkeypatch)
    before = ckpt.read_bytes()
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(ckpt)]) == 2
    assert "the same as --checkpoint" in _one_line_error(capsys)
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("command", ["embed", "export"])
def test_read_only_or_full_output_folder_refused_before_work(
    command: str, ckpt: Path, image_folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    _no_work(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked / ("e.npy" if command == "embed" else "m.onnx")
    argv = [command, "--checkpoint", str(ckpt), "--out", str(out)]
    if command == "embed":
        argv += ["--no-progress", "--device", "cpu", str(image_folder)]
    real_access = os.access
    monkeypatch.setattr(  # root ignores permission bits: say what a user's os.access says
        "facerec.io.os.access", lambda p, m: Path(p) != locked and real_access(p, m)
    )
    assert main(argv) == 2
    assert f"cannot write in {locked} (permission denied)" in _one_line_error(capsys)
    monkeypatch.undo()
    _no_work(monkeypatch)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=4096))
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert "MiB free in" in err and "expected at least" in err
    assert not list(locked.iterdir())


def test_write_error_is_one_line_and_leaves_nothing(
    plain_onnx: Path, image_folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embed_mod.np, "save", full)
    out = tmp_path / "e.npy"
    argv = ["embed", "--no-progress", "--onnx", str(plain_onnx), str(image_folder)]
    assert main([*argv, "--out", str(out)]) == 2
    err = _one_line_error(capsys)
    assert f"cannot write {out}" in err and "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_max_pixels_and_device_default(
    plain_onnx: Path, image_folder: Path, tmp_path: Path, capsys
) -> None:
    assert build_parser().get_default("device") == "auto"
    assert "auto (default" in build_parser().format_help()
    out = tmp_path / "e.npy"
    argv = ["embed", "--no-progress", "--onnx", str(plain_onnx), str(image_folder / "b")]
    assert main([*argv, "--out", str(out), "--max-pixels", "5000"]) == 2  # x.bmp is 96x96
    err = _one_line_error(capsys)
    assert "x.bmp: image of 96x96 pixels" in err and "--max-pixels" in err
    assert main([*argv, "--out", str(out), "--max-pixels", "5000", "--skip-bad"]) == 0
    assert "skipped: " in capsys.readouterr().err
    assert read_names(tmp_path / "e.jsonl") == [str(image_folder / "b" / "z.png")]
    assert os.environ.get("FACEREC_MAX_PIXELS") is None  # the limit ends with the command
    assert main([*argv, "--out", str(out), "--max-pixels", "0"]) == 2
    assert "--max-pixels must be >= 1" in _one_line_error(capsys)
