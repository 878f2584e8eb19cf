"""Shared fixtures: one small trained checkpoint and its ONNX exports, made once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_checkpoint import make_checkpoint

INPUT = 64
DIM = 64
NUM_CLASSES = 10


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="session")
def ckpt(export_dir: Path) -> Path:
    """A real facerec checkpoint (one training step)."""
    return make_checkpoint(export_dir / "model.ckpt", DIM, NUM_CLASSES, size=INPUT)


@pytest.fixture(scope="session")
def plain_onnx(ckpt: Path, export_dir: Path) -> Path:
    """``facerec export`` of ``ckpt`` with default options (float32 NCHW input, raw output)."""
    from facerec.cli import main

    out = export_dir / "plain.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def baked_onnx(ckpt: Path, export_dir: Path) -> Path:
    """``facerec export --bake-normalization`` of ``ckpt`` (uint8 NHWC input, raw output)."""
    from facerec.cli import main

    out = export_dir / "baked.onnx"
    assert (
        main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--bake-normalization"]) == 0
    )
    return out


@pytest.fixture(scope="session")
def faces() -> np.ndarray:
    """Nine synthetic faces (RGB uint8, 64x64) of distinct identities."""
    from facerec.export.check import synthetic_face_batch

    return synthetic_face_batch(9, (INPUT, INPUT), seed=3)


@pytest.fixture(scope="session")
def image_folder(export_dir: Path, faces: np.ndarray) -> Path:
    """A folder tree of face images at mixed sizes and formats: b/, a.png, c.jpg, b/x.png, ..."""
    root = export_dir / "images"
    (root / "b").mkdir(parents=True)
    names = ["c.png", "a.png", "b/z.png", "b/x.bmp", "d.jpg"]
    for name, img in zip(names, faces, strict=False):
        if name.endswith(".bmp"):
            img = cv2.resize(img, (96, 96))  # not at the input size: resized by the embedder
        cv2.imwrite(str(root / name), np.ascontiguousarray(img[:, :, ::-1]))
    (root / "notes.txt").write_text("not an image, ignored by extension")
    return root


@pytest.fixture(autouse=True, scope="session")
def _quiet_torch_trace_logs() -> None:
    """torch.export logs every traced op at DEBUG to ``torch.__trace``; pytest's log capture
    would format them all (slow). Keep that logger off."""
    import logging

    logging.getLogger("torch.__trace").setLevel(logging.WARNING)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Single-threaded torch: the tiny models here gain nothing from threads, and on a shared,
    oversubscribed CI machine OpenMP threads spin-wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
