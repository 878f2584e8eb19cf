from pathlib import Path

import cv2
import numpy as np
import pytest


def write_folder(root: Path, identities: int = 4, per_id: int = 3, size=(40, 36)) -> Path:
    """Write root/<id>/<img> in several formats and sizes (JPEG, PNG, BMP, greyscale PGM)."""
    rng = np.random.default_rng(0)
    exts = [".jpg", ".png", ".bmp", ".pgm"]
    for i in range(identities):
        d = root / f"person_{i}"
        d.mkdir(parents=True)
        for j in range(per_id):
            ext = exts[(i + j) % len(exts)]
            h, w = size[0] + 4 * j, size[1] + 2 * i
            img = rng.integers(0, 255, (h, w) if ext == ".pgm" else (h, w, 3), dtype=np.uint8)
            assert cv2.imwrite(str(d / f"{j:03d}{ext}"), img)
    return root


@pytest.fixture
def image_folder(tmp_path):
    return write_folder(tmp_path / "faces")
