"""Tests for the evaluation metrics of shipyard.metrics: calibration, Brier, thresholds, MAPE guard."""

from __future__ import annotations

import numpy as np
import pytest

from shipyard import metrics


def _binary(p1) -> np.ndarray:
    p1 = np.asarray(p1, dtype=float)
    return np.stack([1 - p1, p1], axis=1)


def test_ece_and_brier_by_hand():
    y = np.array([0, 1, 1, 1])
    s = _binary([0.05, 0.95, 0.95, 0.55])
    bins = metrics.calibration_bins(y, s)
    assert [(b["low"], b["rows"]) for b in bins] == [(0.0, 1), (0.5, 1), (0.9, 2)]
    # |0.05 - 0| + |0.55 - 1| + 2·|0.95 - 1| over 4 rows
    assert metrics.expected_calibration_error(y, s) == pytest.approx((0.05 + 0.45 + 0.1) / 4)
    assert metrics.brier(y, s) == pytest.approx((0.05**2 + 0.05**2 + 0.05**2 + 0.45**2) / 4)
    perfect = metrics.calibration_bins(np.array([1, 1]), _binary([1.0, 1.0]))
    assert perfect == [pytest.approx({"low": 0.9, "high": 1.0, "rows": 2, "confidence": 1.0, "observed": 1.0})]


def test_multiclass_brier_and_top_label_calibration():
    y = np.array([0, 1, 2])
    s = np.eye(3)[[0, 1, 1]] * 0.9 + 0.1 / 3
    assert metrics.brier(y, s) == pytest.approx(np.mean(np.sum((s - np.eye(3)[y]) ** 2, axis=1)))
    (b,) = metrics.calibration_bins(y, s)
    assert b["observed"] == pytest.approx(2 / 3) and b["confidence"] == pytest.approx(0.9 + 0.1 / 3)


def test_classification_metrics_keys_and_values():
    from sklearn.metrics import average_precision_score, balanced_accuracy_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = _binary(np.clip(y * 0.6 + rng.random(200) * 0.4, 0, 1))
    m = metrics.classification_metrics(y, s, threshold=0.5)
    assert set(m) == set(metrics.EVALUATION_METRICS["binary"])
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s[:, 1]))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, np.argmax(s, axis=1)))
    assert {k: m[k] for k in metrics.compute("binary", y, s)} == metrics.compute("binary", y, s)
    one_class = metrics.classification_metrics(np.zeros(5, dtype=int), _binary([0.1] * 5))
    assert "roc_auc" not in one_class and "pr_auc" not in one_class


@pytest.mark.parametrize(
    ("objective", "target", "expected"),
    [
        ("f1", 0.0, 0.4),
        ("balanced_accuracy", 0.0, 0.6),
        ("youden", 0.0, 0.6),
        ("min_precision", 1.0, 0.6),
        ("min_recall", 1.0, 0.4),
    ],
)
def test_choose_threshold(objective, target, expected):
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.4, 0.5, 0.6, 0.9])
    threshold, _ = metrics.choose_threshold(y, p, objective, target)
    assert threshold == pytest.approx(expected)


def test_choose_threshold_returns_none_when_no_threshold_meets_the_target():
    y = np.array([1, 0])
    assert metrics.choose_threshold(y, np.array([0.2, 0.9]), "min_precision", 1.0) is None


def test_threshold_metrics():
    m = metrics.threshold_metrics(np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.8]), 0.5)
    assert m == pytest.approx({"accuracy": 0.5, "balanced_accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5})


def test_mape_is_guarded_near_zero_labels():
    y, p = np.array([100.0, 200.0, 50.0]), np.array([110.0, 180.0, 50.0])
    values, notes = metrics.regression_metrics(y, p)
    assert values["mape"] == pytest.approx((0.1 + 0.1 + 0) / 3) and notes == []
    values, notes = metrics.regression_metrics(np.array([100.0, 0.0, 50.0]), p)
    assert "mape" not in values and "mape skipped: 1 label(s)" in notes[0]


def test_residual_quantiles_and_per_class():
    q = metrics.residual_quantiles(np.arange(101.0), np.zeros(101))
    assert q == pytest.approx({"q05": 5.0, "q25": 25.0, "q50": 50.0, "q75": 75.0, "q95": 95.0})
    pc = metrics.per_class(np.array([0, 1, 1]), _binary([0.2, 0.8, 0.3]), ["no", "yes"])
    assert pc["yes"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})


@pytest.mark.parametrize("metric", ["roc_auc", "brier", "ece", "pr_auc", "balanced_accuracy"])
def test_bootstrap_interval_brackets_the_metric(metric):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 150)
    s = _binary(np.clip(y * 0.5 + rng.random(150) * 0.5, 0, 1))
    value, low, high = metrics.bootstrap_interval("binary", metric, y, s, n=200, seed=0)
    assert value == pytest.approx(metrics.classification_metrics(y, s)[metric])
    assert low <= high and low - 0.1 <= value <= high + 0.1
    assert metrics.bootstrap_delta("binary", metric, y, s, s, n=200)[1:] == (0.0, 0.0)


def test_greater_is_better():
    assert metrics.greater_is_better("roc_auc") and metrics.greater_is_better("r2")
    assert not any(metrics.greater_is_better(m) for m in ("rmse", "mae", "log_loss", "brier", "ece", "mape"))
