"""Fixtures of the alignment tests: the real ORL faces beside the project, and one detector."""

from __future__ import annotations

from pathlib import Path

import pytest

ORL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "orl_faces"


@pytest.fixture(scope="session")
def orl_root() -> Path:
    """../shared/data/orl_faces (40 people s1..s40, 10 PGM images each, 92x112 grey)."""
    if not (ORL / "s1" / "1.pgm").is_file():
        pytest.skip(f"the ORL faces are not at {ORL} (they live beside the project)")
    return ORL


@pytest.fixture(scope="session")
def detector():
    """One MTCNN on the CPU for the whole session (skipped without the facerec[align] extra)."""
    pytest.importorskip("facenet_pytorch", reason="needs the facerec[align] extra")
    from facerec.align.detect import MTCNNDetector

    return MTCNNDetector(device="cpu")
