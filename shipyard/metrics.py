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
    threshold: float | None = None,
) -> tuple[float, float, float]:
    """Paired bootstrap of ``metric(candidate) - metric(reference)`` on the same rows.

    ``metric`` is any metric of :func:`evaluation_metrics` (:func:`metric_function`).

    Returns:
        ``(delta, low, high)``: the observed difference and its two-sided percentile interval.
        Resamples on which the metric is undefined (a class missing) are skipped.
    """
    fn = metric_function(task, metric, threshold)
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
                if metric not in ("roc_auc", "pr_auc") or len(np.unique(y[i])) == k
            ]
        )
        diffs = diffs[np.isfinite(diffs)]
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


# --- the evaluation's metrics: everything evaluate_model reports and can gate on ----------------

#: Metrics where lower is better, beyond :data:`shipyard.tasks.LOWER_IS_BETTER`.
_LOWER = frozenset({"brier", "ece", "mape"})
#: Equal-width probability bins of the expected calibration error and the calibration curve.
CALIBRATION_BINS = 10
#: MAPE is computed only when every ``|y|`` is at least this fraction of the mean ``|y|``.
MAPE_MIN_ABS_FRACTION = 1e-3
#: Quantiles of the residuals ``y - prediction`` reported for regression.
RESIDUAL_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
#: Decision-threshold objectives (binary): what :func:`choose_threshold` maximizes on validation.
THRESHOLD_OBJECTIVES = ("f1", "balanced_accuracy", "youden", "min_precision", "min_recall")
_CLASSIFICATION_METRICS = (
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
)
#: The metrics :func:`evaluation_metrics` can report, per task (some only when defined).
EVALUATION_METRICS = {
    "binary": (
        *_CLASSIFICATION_METRICS,
        "accuracy_at_threshold",
        "balanced_accuracy_at_threshold",
        "precision_at_threshold",
        "recall_at_threshold",
        "f1_at_threshold",
    ),
    "multiclass": _CLASSIFICATION_METRICS,
    "regression": ("rmse", "mae", "r2", "mape"),
}


def greater_is_better(metric: str) -> bool:
    """True when a larger value of ``metric`` is better (``accuracy``), False for losses and errors."""
    from shipyard.tasks import LOWER_IS_BETTER

    return metric not in LOWER_IS_BETTER and metric not in _LOWER


def _decisions(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    if threshold is not None and scores.shape[1] == 2:
        return (scores[:, 1] >= threshold).astype(np.int64)
    return np.argmax(scores, axis=1)


def brier(y: np.ndarray, scores: np.ndarray) -> float:
    """The Brier score: binary ``mean((p1 - y)^2)``; multiclass ``mean(sum_k (p_k - [y == k])^2)``."""
    p = _probs(scores)
    if p.shape[1] == 2:
        return float(np.mean((p[:, 1] - y) ** 2))
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def calibration_bins(y: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """The reliability table: ``bins`` equal-width bins of ``[0, 1]``, the last one closed.

    Binary models are binned by the positive class's probability against the observed positive
    rate; multiclass models by the top class's probability (the confidence) against the accuracy.

    Returns:
        ``[{"low", "high", "rows", "confidence", "observed"}]`` for the bins that hold rows.
    """
    p = _probs(scores)
    if p.shape[1] == 2:
        conf, hit = p[:, 1], (y == 1).astype(np.float64)
    else:
        conf, hit = p.max(axis=1), (np.argmax(p, axis=1) == y).astype(np.float64)
    index = np.minimum((conf * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "rows": int(mask.sum()),
                    "confidence": float(conf[mask].mean()),
                    "observed": float(hit[mask].mean()),
                }
            )
    return out


def expected_calibration_error(y: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """The row-weighted mean gap between confidence and observed rate over :func:`calibration_bins`."""
    table = calibration_bins(y, scores, bins)
    return float(sum(b["rows"] * abs(b["confidence"] - b["observed"]) for b in table) / max(len(y), 1))


def classification_metrics(y: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """All classification metrics of the evaluation (see :data:`EVALUATION_METRICS`).

    Decisions are the most probable class; with a binary ``threshold`` the ``*_at_threshold``
    metrics are added for decisions ``p1 >= threshold`` (``precision``/``recall``/``f1`` of the
    positive class). ``roc_auc`` and ``pr_auc`` (average precision; macro one-vs-rest for
    multiclass) are left out when a class is absent from ``y``.
    """
    from sklearn import metrics as m

    k = scores.shape[1]
    labels = list(range(k))
    pred = np.argmax(scores, axis=1)
    precision, recall, f1, _ = m.precision_recall_fscore_support(
        y, pred, labels=labels, average="macro", zero_division=0
    )
    out = {
        "accuracy": float(m.accuracy_score(y, pred)),
        "balanced_accuracy": _balanced_accuracy(y, pred, k),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
    }
    if len(np.unique(y)) == k:
        fns = _classification_metrics()
        out["roc_auc"] = fns["roc_auc"](y, scores)
        if k == 2:
            out["pr_auc"] = float(m.average_precision_score(y, scores[:, 1]))
        else:
            out["pr_auc"] = float(m.average_precision_score(np.eye(k)[y], _probs(scores), average="macro"))
    out["log_loss"] = float(m.log_loss(y, _probs(scores), labels=labels))
    out["brier"] = brier(y, scores)
    out["ece"] = expected_calibration_error(y, scores)
    if threshold is not None and k == 2:
        out.update({f"{name}_at_threshold": v for name, v in threshold_metrics(y, scores[:, 1], threshold).items()})
    return out


def _balanced_accuracy(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Mean recall over the classes present in ``y`` (scikit-learn's definition, without its warning)."""
    recalls = [float(np.mean(pred[y == c] == c)) for c in range(k) if np.any(y == c)]
    return float(np.mean(recalls)) if recalls else 0.0


def per_class(y: np.ndarray, scores: np.ndarray, label_names: list[Any]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each class (decisions: the most probable class).

    Returns:
        ``{str(label): {"precision", "recall", "f1", "support"}}``.
    """
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(range(scores.shape[1]))
    p, r, f, s = precision_recall_fscore_support(
        y, np.argmax(scores, axis=1), labels=labels, average=None, zero_division=0
    )
    return {
        str(name): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(label_names)
    }


def threshold_metrics(y: np.ndarray, positive: np.ndarray, threshold: float) -> dict[str, float]:
    """Binary decisions ``positive >= threshold``: accuracy, balanced accuracy and the positive
    class's precision, recall and F1 (0 where undefined)."""
    pred = positive >= threshold
    pos = y == 1
    tp, fp = float(np.sum(pred & pos)), float(np.sum(pred & ~pos))
    fn, tn = float(np.sum(~pred & pos)), float(np.sum(~pred & ~pos))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / max(len(y), 1),
        "balanced_accuracy": (recall + specificity) / 2,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def choose_threshold(
    y: np.ndarray, positive: np.ndarray, objective: str = "f1", target: float = 0.0
) -> tuple[float, float] | None:
    """The decision threshold on ``positive`` (class 1's probability) that is best for ``objective``.

    The candidates are the distinct scores (a row is positive when its score is ``>=`` the
    threshold). ``f1`` and ``balanced_accuracy`` maximize that metric; ``youden`` maximizes
    ``recall + specificity - 1`` (the same ranking as balanced accuracy, reported on its own scale);
    ``min_precision`` maximizes recall among thresholds with precision ``>= target``;
    ``min_recall`` maximizes precision among thresholds with recall ``>= target``. Ties go to the
    threshold nearest 0.5.

    Returns:
        ``(threshold, objective value)``, or ``None`` when no threshold meets ``target``.
    """
    best: tuple[float, float, float] | None = None  # (value, -distance to 0.5, threshold)
    for t in np.unique(positive):
        m = threshold_metrics(y, positive, float(t))
        if objective == "min_precision":
            ok, value = m["precision"] >= target, m["recall"]
        elif objective == "min_recall":
            ok, value = m["recall"] >= target, m["precision"]
        elif objective == "youden":
            ok, value = True, 2 * m["balanced_accuracy"] - 1
        else:
            ok, value = True, m[objective]
        key = (value, -abs(float(t) - 0.5), float(t))
        if ok and (best is None or key > best):
            best = key
    return None if best is None else (best[2], best[0])


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> tuple[dict[str, float], list[str]]:
    """RMSE, MAE, R² and (guarded) MAPE.

    MAPE (a fraction, not a percentage) is left out, with a note, when some ``|y|`` is below
    :data:`MAPE_MIN_ABS_FRACTION` of the mean ``|y|``: near-zero labels make it meaningless.

    Returns:
        ``(metrics, notes)``.
    """
    out = {name: fn(y, pred) for name, fn in _regression_metrics().items()}
    notes = []
    scale = float(np.mean(np.abs(y))) if len(y) else 0.0
    small = int(np.sum(np.abs(y) < MAPE_MIN_ABS_FRACTION * scale)) if scale > 0 else len(y)
    if small:
        notes.append(
            f"mape skipped: {small} label(s) have |y| below {MAPE_MIN_ABS_FRACTION:g} × mean |y| ({scale:.4g}), "
            "where a relative error is meaningless"
        )
    else:
        out["mape"] = float(np.mean(np.abs((y - pred) / y)))
    return out, notes


def residual_quantiles(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Quantiles of the residuals ``y - prediction`` at :data:`RESIDUAL_QUANTILES` (``{"q05": ...}``)."""
    values = np.quantile(y - pred, RESIDUAL_QUANTILES)
    return {f"q{round(q * 100):02d}": float(v) for q, v in zip(RESIDUAL_QUANTILES, values, strict=True)}


def evaluation_metrics(
    task: str, y: np.ndarray, scores: np.ndarray, threshold: float | None = None
) -> tuple[dict[str, float], list[str]]:
    """The evaluation's scalar metrics of one model on one set of rows.

    Returns:
        ``(metrics, notes)``: :func:`classification_metrics` or :func:`regression_metrics`.
    """
    if task == "regression":
        return regression_metrics(y, scores)
    return classification_metrics(y, scores, threshold), []


def _single_metrics() -> dict[str, Metric]:
    """The evaluation metrics beyond :func:`metric_functions`, one at a time (for resampling)."""
    from sklearn import metrics as m

    def macro(which: int) -> Metric:
        def fn(y: np.ndarray, s: np.ndarray) -> float:
            labels = list(range(s.shape[1]))
            prf = m.precision_recall_fscore_support(
                y, np.argmax(s, axis=1), labels=labels, average="macro", zero_division=0
            )
            return float(prf[which])

        return fn

    def pr_auc(y: np.ndarray, s: np.ndarray) -> float:
        if s.shape[1] == 2:
            return float(m.average_precision_score(y, s[:, 1]))
        return float(m.average_precision_score(np.eye(s.shape[1])[y], _probs(s), average="macro"))

    def mape(y: np.ndarray, p: np.ndarray) -> float:
        return float(np.mean(np.abs((y - p) / y))) if np.all(y != 0) else float("nan")

    return {
        "balanced_accuracy": lambda y, s: _balanced_accuracy(y, np.argmax(s, axis=1), s.shape[1]),
        "precision_macro": macro(0),
        "recall_macro": macro(1),
        "pr_auc": pr_auc,
        "brier": brier,
        "ece": expected_calibration_error,
        "mape": mape,
    }


def metric_function(task: str, metric: str, threshold: float | None = None) -> Metric:
    """One evaluation metric as ``fn(y, scores) -> float`` (NaN where it is undefined), for the bootstrap.

    Args:
        task: The task.
        metric: A name of :data:`EVALUATION_METRICS`.
        threshold: The binary decision threshold (for the ``*_at_threshold`` metrics).
    """
    core = metric_functions(task)
    if metric in core:
        return core[metric]
    single = _single_metrics()
    if metric in single:
        return single[metric]
    if metric.endswith("_at_threshold") and threshold is not None:
        name, cut = metric[: -len("_at_threshold")], threshold
        return lambda y, s: threshold_metrics(y, s[:, 1], cut)[name]
    return lambda y, s: float("nan")


def bootstrap_interval(
    task: str,
    metric: str,
    y: np.ndarray,
    scores: np.ndarray,
    n: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    threshold: float | None = None,
) -> tuple[float, float, float]:
    """Percentile bootstrap of one model's ``metric`` over the rows.

    Returns:
        ``(value, low, high)``; resamples where the metric is undefined are skipped.
    """
    fn = metric_function(task, metric, threshold)
    value = fn(y, scores)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), (n, len(y)))
    batched = _BATCHED.get(metric) if (metric != "roc_auc" or scores.ndim == 2 and scores.shape[1] == 2) else None
    if batched is not None:
        stats = np.concatenate(
            [batched(y[block], scores[block]) for block in np.array_split(idx, max(1, idx.size // 2_000_000))]
        )
    else:
        k = scores.shape[1] if scores.ndim == 2 else 0
        stats = np.array(
            [
                fn(y[i], scores[i]) if metric not in ("roc_auc", "pr_auc") or len(np.unique(y[i])) == k else np.nan
                for i in idx
            ]
        )
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return float(value), float(value), float(value)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    return float(value), float(low), float(high)
