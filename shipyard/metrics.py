"""Task metrics from labels and scores: one definition for quantization, evaluation and reports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]


def _classification_metrics() -> dict[str, Metric]:
    from sklearn import metrics as m

    def probs(s: np.ndarray) -> np.ndarray:
        p = np.clip(s, 1e-7, 1.0)
        return p / p.sum(axis=1, keepdims=True)

    def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
        if s.shape[1] == 2:
            return float(m.roc_auc_score(y, s[:, 1]))
        return float(m.roc_auc_score(y, probs(s), multi_class="ovr", labels=list(range(s.shape[1]))))

    return {
        "accuracy": lambda y, s: float(m.accuracy_score(y, np.argmax(s, axis=1))),
        "f1_macro": lambda y, s: float(
            m.f1_score(y, np.argmax(s, axis=1), average="macro", labels=list(range(s.shape[1])), zero_division=0)
        ),
        "log_loss": lambda y, s: float(m.log_loss(y, probs(s), labels=list(range(s.shape[1])))),
        "roc_auc": roc_auc,
    }


def _regression_metrics() -> dict[str, Metric]:
    from sklearn import metrics as m

    return {
        "rmse": lambda y, s: float(np.sqrt(m.mean_squared_error(y, s))),
        "mae": lambda y, s: float(m.mean_absolute_error(y, s)),
        "r2": lambda y, s: float(m.r2_score(y, s)),
    }


def metric_functions(task: str) -> dict[str, Metric]:
    """The task's metrics as ``{name: fn(y, scores) -> float}``."""
    return _regression_metrics() if task == "regression" else _classification_metrics()


def compute(task: str, y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Computes the task's metrics.

    Args:
        task: ``binary``, ``multiclass`` or ``regression``.
        y: Class indices (classification) or true values (regression).
        scores: Probabilities ``[n, classes]`` or predicted values ``[n]``.

    Returns:
        binary/multiclass: accuracy, f1_macro, log_loss and (when every class occurs in ``y``)
        roc_auc; regression: rmse, mae, r2.
    """
    out = {}
    for name, fn in metric_functions(task).items():
        if name == "roc_auc" and len(np.unique(y)) != scores.shape[1]:
            continue  # undefined when a class is absent from y
        out[name] = fn(y, scores)
    return out


def bootstrap_delta(
    task: str,
    metric: str,
    y: np.ndarray,
    candidate: np.ndarray,
    reference: np.ndarray,
    n: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Paired bootstrap of ``metric(candidate) - metric(reference)`` on the same rows.

    Returns:
        ``(delta, low, high)``: the observed difference and its two-sided percentile interval.
        Resamples on which the metric is undefined (a class missing) are skipped.
    """
    fn = metric_functions(task)[metric]
    delta = fn(y, candidate) - fn(y, reference)
    rng = np.random.default_rng(seed)
    diffs = []
    k = candidate.shape[1] if candidate.ndim == 2 else 0
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        yb = y[idx]
        if metric == "roc_auc" and len(np.unique(yb)) != k:
            continue
        diffs.append(fn(yb, candidate[idx]) - fn(yb, reference[idx]))
    if not diffs:
        return delta, delta, delta
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return float(delta), float(low), float(high)


def confusion(y: np.ndarray, scores: np.ndarray, k: int) -> list[list[int]]:
    """The confusion matrix (rows: true class, columns: predicted class)."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y, np.argmax(scores, axis=1), labels=list(range(k))).tolist()


def roc_points(y: np.ndarray, positive_scores: np.ndarray, max_points: int = 50) -> list[dict[str, Any]]:
    """A thinned ROC curve: ``[{"fpr", "tpr", "threshold"}]`` (binary only)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, positive_scores)
    thr = np.where(np.isfinite(thr), thr, 1.0)
    idx = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).astype(int))
    return [{"fpr": float(fpr[i]), "tpr": float(tpr[i]), "threshold": float(thr[i])} for i in idx]
