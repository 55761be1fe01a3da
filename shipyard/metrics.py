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
    idx = rng.integers(0, len(y), (n, len(y)))
    batched = _BATCHED.get(metric) if (metric != "roc_auc" or candidate.shape[1] == 2) else None
    if batched is not None:
        diffs = np.concatenate(
            [
                batched(y[block], candidate[block]) - batched(y[block], reference[block])
                for block in np.array_split(idx, max(1, idx.size // 2_000_000))
            ]
        )
        diffs = diffs[np.isfinite(diffs)]
    else:
        k = candidate.shape[1] if candidate.ndim == 2 else 0
        diffs = np.array(
            [
                fn(y[i], candidate[i]) - fn(y[i], reference[i])
                for i in idx
                if metric != "roc_auc" or len(np.unique(y[i])) == k
            ]
        )
    if not len(diffs):
        return delta, delta, delta
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return float(delta), float(low), float(high)


# --- the same metrics over a batch of resamples: y [B, n], scores [B, n, k] or [B, n] -> [B] ---


def _probs(s: np.ndarray) -> np.ndarray:
    p = np.clip(s, 1e-7, 1.0)
    return p / p.sum(axis=-1, keepdims=True)


def _batched_roc_auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Binary AUC by the rank-sum (Mann-Whitney) identity, ties at average rank; NaN if undefined."""
    from scipy.stats import rankdata

    ranks = rankdata(s[..., 1], axis=1)
    pos = y == 1
    n_pos = pos.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _batched_r2(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    sst = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sst > 0, 1 - ((y - s) ** 2).sum(axis=1) / sst, np.nan)


_BATCHED: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": lambda y, s: (np.argmax(s, axis=-1) == y).mean(axis=1),
    "log_loss": lambda y, s: (
        -np.log(np.take_along_axis(_probs(s), y[..., None].astype(int), axis=-1)[..., 0]).mean(axis=1)
    ),
    "roc_auc": _batched_roc_auc,
    "rmse": lambda y, s: np.sqrt(((y - s) ** 2).mean(axis=1)),
    "mae": lambda y, s: np.abs(y - s).mean(axis=1),
    "r2": _batched_r2,
}


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
