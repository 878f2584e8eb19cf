"""Quality maths on constructed data: norms, stability, AUC, the ERC, the scorer wrapper."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.errors import ConfigError, DataError
from facerec.metrics.quality import (
    QualityScorer,
    drop_below,
    embedding_stability,
    error_versus_reject,
    feature_norm,
    pair_quality,
    perturb,
    perturbation_plan,
    quality_auc,
)


def test_feature_norm_and_stability() -> None:
    assert np.allclose(feature_norm(np.array([[3.0, 4.0], [0.0, 2.0]])), [5.0, 2.0])
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 5, 16))
    steady = np.repeat(base, 4, axis=0) * rng.uniform(0.5, 2, (4, 5, 1))  # scale does not matter
    shaky = base + rng.normal(scale=1.0, size=(4, 5, 16))
    assert np.allclose(embedding_stability(steady), 1.0, atol=1e-6)
    assert np.all(embedding_stability(shaky) < 0.9)
    # equals the explicit mean over pairs
    u = shaky / np.linalg.norm(shaky, axis=2, keepdims=True)
    pairs = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    want = np.mean([(u[i] * u[j]).sum(1) for i, j in pairs], axis=0)
    assert np.allclose(embedding_stability(shaky), want, atol=1e-6)
    with pytest.raises(DataError, match="passes"):
        embedding_stability(base)


def test_quality_auc() -> None:
    assert quality_auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert quality_auc([0, 1], [2, 3]) == 0.0
    assert quality_auc([1, 1], [1, 1]) == 0.5
    assert quality_auc([1, 3], [2]) == 0.5
    with pytest.raises(DataError):
        quality_auc([], [1])


def _pairs(seed: int = 0):
    """Genuine pairs whose score falls with quality; impostors independent of it."""
    rng = np.random.default_rng(seed)
    n = 2000
    q = rng.uniform(0, 1, n)
    same = rng.uniform(size=n) < 0.5
    score = np.where(same, 0.2 + 0.6 * q + rng.normal(0, 0.1, n), rng.normal(0, 0.1, n))
    return score, same, q


def test_erc_falls_when_quality_predicts_failures() -> None:
    score, same, q = _pairs()
    erc = error_versus_reject(score, same, q, far=1e-2)
    assert erc.reject[0] == 0 and erc.reject[-1] == 0.5
    assert erc.fnmr[0] == pytest.approx(np.mean(score[same] < erc.threshold))
    assert erc.fnmr[-1] < erc.fnmr[0] / 3
    assert np.all(np.diff(erc.fnmr) <= 1e-3)  # a ratio: it may tick up by one pair
    assert erc.area_oracle <= erc.area < erc.area_random
    # the threshold admits at most 1 % of all impostors
    assert np.mean(score[~same] >= erc.threshold) <= 0.01
    # a useless quality does not help
    rnd = error_versus_reject(score, same, np.random.default_rng(1).uniform(size=q.size))
    assert rnd.area > erc.area and abs(rnd.area - rnd.area_random) < 0.05
    d = erc.to_dict()
    assert len(d["fnmr"]) == 11 and d["threshold"] == erc.threshold


def test_erc_by_hand() -> None:
    # four genuine pairs, two impostors; threshold at FAR 0 lies above the top impostor (0.5)
    score = np.array([0.9, 0.8, 0.4, 0.3, 0.5, 0.1])
    same = np.array([1, 1, 1, 1, 0, 0], bool)
    qual = np.array([0.9, 0.8, 0.2, 0.1, 0.5, 0.6])  # the two failures have the lowest quality
    erc = error_versus_reject(score, same, qual, far=0.0, reject=[0.0, 1 / 6, 2 / 6])
    assert erc.fnmr.tolist() == [0.5, pytest.approx(1 / 3), 0.0]
    assert erc.kept_genuine.tolist() == [4, 3, 2]


def test_erc_bad_input() -> None:
    with pytest.raises(DataError, match="one of each per pair"):
        error_versus_reject([0.1, 0.2], [1, 0], [1.0])
    with pytest.raises(DataError, match="only one kind"):
        error_versus_reject([0.1, 0.2], [1, 1], [1.0, 2.0])
    with pytest.raises(DataError, match="NaN"):
        error_versus_reject([0.1, 0.2], [1, 0], [1.0, np.nan])
    with pytest.raises(ConfigError, match="ascending"):
        error_versus_reject([0.1, 0.2], [1, 0], [1.0, 2.0], reject=[0.5, 0.1])


def test_pair_quality_and_drop() -> None:
    assert pair_quality([1, 5], [3, 2]).tolist() == [1, 2]
    assert drop_below([0.1, 0.5, 0.9], 0.5).tolist() == [False, True, True]


class _Toy:
    """An embedder whose embedding is the image's mean colour + its left/right difference:
    stable for smooth images, moved by shifts and mirroring for images with an edge."""

    input_size = (8, 8)
    resize_mode = "resize"

    def __init__(self, normalized: bool = False) -> None:
        self.normalized_output = normalized

    def __call__(self, x: np.ndarray) -> np.ndarray:
        f = x.astype(np.float32) / 255
        lr = f[:, :, :4].mean((1, 2, 3)) - f[:, :, 4:].mean((1, 2, 3))
        return np.stack([f.mean((1, 2, 3)) + 0.1, 10 * lr], axis=1)


def test_scorer_is_deterministic_and_batch_independent() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((3, 8, 8, 3), 128, np.uint8)
    edge = flat.copy()
    edge[:, :, :3] = 255
    edge[:, :, 3:] = 0
    imgs = np.concatenate([flat, edge, rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)])
    s = QualityScorer(_Toy(), "stability", passes=6, seed=3)
    q = s(imgs)
    assert q.shape == (8, 1) and q.dtype == np.float32
    assert np.all(q[:3] > q[3:6].max())  # the edge image flips sign when mirrored
    assert np.array_equal(np.concatenate([s(imgs[:3]), s(imgs[3:])]), q)
    assert np.array_equal(QualityScorer(_Toy(), "stability", passes=6, seed=3)(imgs), q)
    assert not np.array_equal(QualityScorer(_Toy(), "stability", passes=6, seed=4)(imgs), q)
    n = QualityScorer(_Toy(), "norm")(imgs)
    assert np.allclose(n[:, 0], np.linalg.norm(_Toy()(imgs), axis=1))
    with pytest.raises(ConfigError, match="L2-normalised"):
        QualityScorer(_Toy(normalized=True), "norm")
    with pytest.raises(ConfigError, match="not known"):
        QualityScorer(_Toy(), "sdd")
    with pytest.raises(ConfigError, match=">= 2"):
        QualityScorer(_Toy(), "stability", passes=1)


def test_perturb_shift_flip() -> None:
    x = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(1, 4, 4, 3)
    y = perturb(x, {"dy": 0, "dx": 1, "flip": False, "noise": None})
    assert np.array_equal(y[0, :, 1:], x[0, :, :3]) and np.array_equal(y[0, :, 0], x[0, :, 0])
    assert np.array_equal(
        perturb(x, {"dy": 0, "dx": 0, "flip": True, "noise": None}), x[:, :, ::-1]
    )
    plan = perturbation_plan(4, (4, 4), seed=0)
    assert plan[0]["dx"] == plan[0]["dy"] == 0 and plan[0]["noise"] is None
    assert all(abs(p["dx"]) <= 1 and abs(p["dy"]) <= 1 for p in plan)
