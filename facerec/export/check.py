"""The self-check of an exported ONNX model: onnxruntime against PyTorch eager."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facerec.data.image import fit_to_size
from facerec.errors import FacerecError
from facerec.inference import eval_mode
from facerec.inference.onnx import OnnxEmbedder
from facerec.inference.preprocess import Preprocess

MIN_COSINE = 0.9999


@dataclass
class CheckResult:
    """onnxruntime against PyTorch on one batch."""

    name: str
    batch: int
    max_abs_diff: float
    min_cosine: float
    max_abs_value: float

    def ok(self, min_cosine: float = MIN_COSINE) -> bool:
        """True when every embedding's cosine to PyTorch's is at least ``min_cosine``."""
        return bool(np.isfinite(self.min_cosine) and self.min_cosine >= min_cosine)


def synthetic_face_batch(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` synthetic faces of distinct identities at ``size``: RGB uint8 (n, H, W, 3)."""
    from facerec.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(num_identities=max(n, 1), images_per_identity=1, size=112, seed=seed)
    imgs = [fit_to_size(faces.render(i, 0), size) for i in range(n)]
    return np.stack(imgs) if imgs else np.zeros((0, *size, 3), np.uint8)


def check_onnx(
    model: str | os.PathLike[str] | bytes,
    backbone: nn.Module,
    preprocess: Preprocess | dict[str, Any],
    batch_sizes: Sequence[int] = (1, 8),
    seed: int = 0,
    l2_normalize: bool | None = None,
) -> list[CheckResult]:
    """Compare onnxruntime with PyTorch eager: for each batch size, a batch of random uint8
    images and one of synthetic faces go through the ONNX model (fed as its metadata says) and
    through ``backbone`` (normalised by ``preprocess``); the max abs difference and minimum
    cosine of each."""
    import tempfile

    rng = np.random.default_rng(seed)
    pre = Preprocess.coerce(preprocess)
    with tempfile.TemporaryDirectory(prefix="facerec-check-") as d:
        if isinstance(model, bytes):
            f = Path(d) / "model.onnx"
            f.write_bytes(model)
            model = f
        emb = OnnxEmbedder(model, batch_size=max(batch_sizes))
        l2 = emb.meta.normalized_output if l2_normalize is None else l2_normalize
        size = emb.input_size
        faces = synthetic_face_batch(max(batch_sizes), size, seed)
        results = []
        with eval_mode(backbone):
            for b in batch_sizes:
                batches = {
                    "random images": rng.integers(0, 256, (b, *size, 3), dtype=np.uint8),
                    "synthetic faces": faces[:b],
                }
                for name, imgs in batches.items():
                    got = emb(imgs)
                    with torch.inference_mode():
                        ref = backbone(torch.from_numpy(pre.normalize(imgs)))
                        if l2:
                            ref = F.normalize(ref, dim=1)
                    ref = ref.float().numpy()
                    if got.shape != ref.shape:
                        raise FacerecError(
                            f"the ONNX model returned shape {got.shape} for {name} where "
                            f"PyTorch returned {ref.shape}; expected the same"
                        )
                    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
                    cos = (got * ref).sum(1) / np.maximum(norms, 1e-30)
                    diff = float(np.abs(got - ref).max())
                    results.append(
                        CheckResult(name, b, diff, float(cos.min()), float(np.abs(ref).max()))
                    )
        del emb
    return results


def format_check(results: Sequence[CheckResult], min_cosine: float = MIN_COSINE) -> str:
    """A small table of :func:`check_onnx` results."""
    lines = [f"{'check':<16} {'batch':>5} {'max|diff|':>10} {'max|emb|':>10} {'min cosine':>12}"]
    for r in results:
        flag = "" if r.ok(min_cosine) else f"  < {min_cosine} FAIL"
        lines.append(
            f"{r.name:<16} {r.batch:>5} {r.max_abs_diff:>10.3g} {r.max_abs_value:>10.3g} "
            f"{r.min_cosine:>12.8f}{flag}"
        )
    return "\n".join(lines)
