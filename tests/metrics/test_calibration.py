"""Score -> P(same identity) calibration: held-out ECE, the two maps, the stored record."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from facerec.errors import ConfigError, DataError
from facerec.metrics.calibration import (
    METHODS,
    Calibration,
    brier,
    ece,
    fit_calibration,
    fit_isotonic,
    fit_logistic,
    predict,
    reliability,
    stratified_folds,
)
from facerec.metrics.verification import tar_at_far


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic scores: 1500 genuine ~ N(0.6, 0.1), 3000 impostor ~ N(0.1, 0.1)."""
    rng = np.random.default_rng(7)
    s = np.r_[rng.normal(0.6, 0.1, 1500), rng.normal(0.1, 0.1, 3000)]
    y = np.r_[np.ones(1500, bool), np.zeros(3000, bool)]
    return s, y


@pytest.mark.parametrize("method", METHODS)
def test_held_out_ece_is_small(pairs, method):
    s, y = pairs
    cal = fit_calibration(s, y, method, folds=5, seed=0, benchmark="synthetic")
    assert cal.ece < 0.05
    assert cal.brier < 0.02
    assert cal.n_pairs == 4500 and (cal.n_genuine, cal.n_impostor) == (1500, 3000)
    assert sum(r.count for r in cal.reliability) == 4500 and len(cal.reliability) == 15
    # the stored map ranks like the scores and gives sensible probabilities at the extremes
    p = cal.probability(np.array([-0.2, 0.35, 0.9]))
    assert p[0] < 0.01 and p[2] > 0.99 and 0.05 < p[1] < 0.95


def test_ece_can_fail():
    """A map that is systematically wrong has a large ECE (the measure can fail)."""
    rng = np.random.default_rng(0)
    y = rng.random(4000) < 0.5
    assert ece(np.full(4000, 0.9), y) > 0.35
    assert ece(np.where(y, 1.0, 0.0), y) == 0.0
    assert brier(np.where(y, 1.0, 0.0), y) == 0.0


def test_reliability_bins_equal_width():
    rows = reliability(np.array([0.0, 0.05, 0.5, 1.0]), np.array([0, 0, 1, 1]), bins=10)
    assert [r.count for r in rows] == [2, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert rows[0].mean_predicted == pytest.approx(0.025) and rows[0].observed == 0.0
    assert rows[1].mean_predicted is None


def test_isotonic_monotone_and_pav():
    rng = np.random.default_rng(3)
    s = rng.normal(size=800)
    y = rng.random(800) < 1 / (1 + np.exp(-3 * s))
    x, p = fit_isotonic(s, y)
    assert (np.diff(x) >= 0).all() and (np.diff(p) >= 0).all()
    grid = np.linspace(-4, 4, 1000)
    assert (np.diff(predict("isotonic", {"x": x, "y": p}, grid)) >= -1e-15).all()
    # the textbook example: pooling the violators 3, 2 -> 2.5
    x, p = fit_isotonic(np.arange(4.0), np.array([0.0, 1.0, 0.0, 1.0]))
    np.testing.assert_allclose(
        predict("isotonic", {"x": x, "y": p}, np.arange(4.0)), [0, 0.5, 0.5, 1]
    )


def test_logistic_recovers_known_parameters():
    rng = np.random.default_rng(11)
    s = rng.uniform(-1, 1, 40000)
    y = rng.random(s.size) < 1 / (1 + np.exp(-(6.0 * s - 1.0)))
    a, b = fit_logistic(s, y)
    assert a == pytest.approx(6.0, abs=0.25) and b == pytest.approx(-1.0, abs=0.1)


def test_logistic_separable_stays_finite():
    a, b = fit_logistic(np.array([0.0, 0.1, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    assert np.isfinite([a, b]).all() and a > 0


def test_folds_stratified_and_seeded():
    y = np.r_[np.ones(10, bool), np.zeros(23, bool)]
    f = stratified_folds(y, 5, seed=1)
    for k in range(5):
        assert (f[y] == k).sum() == 2 and (f[~y] == k).sum() in (4, 5)
    assert (stratified_folds(y, 5, seed=1) == f).all()


def test_thresholds_at_resolvable_fars_match_tar_at_far(pairs):
    s, y = pairs
    cal = fit_calibration(s, y, "logistic")
    assert list(cal.thresholds) == [1e-1, 1e-2, 1e-3]  # 3000 impostors resolve down to 1e-3
    want = {t.far: t.threshold for t in tar_at_far(s, y, [1e-1, 1e-2, 1e-3])}
    assert cal.thresholds == want
    assert cal.threshold(1e-3) == want[1e-3]
    with pytest.raises(ConfigError, match="no threshold at FAR 1e-5.*1e-1, 1e-2, 1e-3"):
        cal.threshold(1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_round_trip(pairs, method):
    s, y = pairs
    cal = fit_calibration(s, y, method, benchmark="lfw")
    back = Calibration.from_json(cal.to_json())
    assert back.to_dict() == cal.to_dict()
    np.testing.assert_array_equal(back.probability(s), cal.probability(s))


def test_fit_refuses_bad_input():
    with pytest.raises(ConfigError, match="not known"):
        fit_calibration(np.zeros(20), np.r_[np.ones(10), np.zeros(10)], "platt")
    with pytest.raises(DataError, match="at least 5 of each"):
        fit_calibration(np.zeros(20), np.r_[np.ones(3), np.zeros(17)])
    with pytest.raises(DataError, match="one label per score"):
        fit_calibration(np.zeros(20), np.ones(19))
    with pytest.raises(DataError, match="not finite"):
        fit_calibration(np.r_[np.nan, np.zeros(19)], np.r_[np.ones(10), np.zeros(10)])


def _bad(d: dict, path: str, value) -> dict:
    d = copy.deepcopy(d)
    *head, last = path.split(".")
    node = d
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if value is KeyError:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return d


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("method", "eval", "'method'.*expected one of logistic, isotonic"),
        ("format", 2, "'format'"),
        ("format", True, "'format'"),
        ("ece", KeyError, "'ece': missing"),
        ("ece", float("nan"), "'ece'"),
        ("ece", "0.01", "'ece'.*finite number"),
        ("brier", 3.0, "'brier'.*in \\[0, 1\\]"),
        ("n_pairs", 7, "'n_pairs'.*n_genuine \\+ n_impostor"),
        ("n_genuine", 1.5, "'n_genuine'.*whole number"),
        ("parameters.a", "__import__('os')", "'parameters.a'"),
        ("parameters.c", 1.0, "'parameters'.*expected a and b"),
        ("parameters", [1, 2], "'parameters'.*expected a dict"),
        ("thresholds", {"0.001": 0.4}, "'thresholds'"),
        ("thresholds.0.far", 0.0, "'thresholds'.*distinct FARs"),
        ("thresholds.0.threshold", 0.99, "'thresholds'.*rise as the FAR falls"),
        ("thresholds.0", {"far": 0.1}, "'thresholds'"),
        ("benchmark", 5, "'benchmark'"),
        ("reliability.0", [0, 0.1, 0.05], "'reliability'"),
        ("reliability", [], None),  # an empty diagram is allowed
        ("class_path", "os.system", "'class_path': not a calibration field"),
    ],
)
def test_bad_dicts_refused(pairs, path, value, match):
    s, y = pairs
    good = fit_calibration(s, y, "logistic").to_dict()
    bad = _bad(good, path, value)
    if match is None:
        Calibration.from_dict(bad)
        return
    with pytest.raises(DataError, match=match) as e:
        Calibration.from_dict(bad, "model.ckpt")
    assert str(e.value).startswith("model.ckpt: ") and "\n" not in str(e.value)


def test_bad_isotonic_and_json_refused(pairs):
    s, y = pairs
    good = fit_calibration(s, y, "isotonic").to_dict()
    with pytest.raises(DataError, match="non-decreasing"):
        Calibration.from_dict(_bad(good, "parameters.y", good["parameters"]["y"][::-1]))
    with pytest.raises(DataError, match="'parameters.y'.*\\[0, 1\\]"):
        Calibration.from_dict(_bad(good, "parameters.y", [2.0] * len(good["parameters"]["x"])))
    with pytest.raises(DataError, match="not valid JSON"):
        Calibration.from_json(json.dumps(good).replace("0.", "NaN", 1))
    with pytest.raises(DataError, match="expected a dict"):
        Calibration.from_json("[1, 2]")
