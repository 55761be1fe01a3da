"""What kind of learning task a label column implies, and its primary metric."""

from __future__ import annotations

from typing import Any

import numpy as np

from shipyard.errors import ConfigError, DataValidationError

#: Integer labels with more distinct values than this are treated as a regression target.
MAX_CLASSES = 50
PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}
#: Metrics where lower is better; all others are higher-is-better.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss", "val_loss", "mse"})


def infer_task(y: Any, task: str = "auto", column: str = "label") -> str:
    """Returns ``binary``, ``multiclass`` or ``regression`` for the label values ``y``.

    Args:
        y: The label column (a pandas Series or array).
        task: ``auto`` to infer, or one of the three tasks to check and use.
        column: The label's name, for messages.

    Raises:
        ConfigError: ``task`` is not a known task.
        DataValidationError: The label is constant, or not numeric for regression.
    """
    values = np.asarray(y)
    if task not in ("auto", "binary", "multiclass", "regression"):
        raise ConfigError(f"task: {task!r} is not one of auto, binary, multiclass, regression")
    n_unique = len(np.unique(values[~_isnull(values)])) if values.size else 0
    if n_unique < 2:
        raise DataValidationError(f"label column {column!r} has {n_unique} distinct value(s); expected at least 2")
    if task == "auto":
        if values.dtype.kind == "f" and not np.all(np.mod(values[~_isnull(values)], 1) == 0):
            task = "regression"
        elif values.dtype.kind in "iuf" and n_unique > MAX_CLASSES:
            task = "regression"
        else:
            task = "binary" if n_unique == 2 else "multiclass"
    if task == "binary" and n_unique != 2:
        raise DataValidationError(f"label column {column!r} has {n_unique} classes; task 'binary' needs exactly 2")
    if task == "regression" and values.dtype.kind not in "iuf":
        raise DataValidationError(f"label column {column!r} has dtype {values.dtype}; regression needs numbers")
    return task


def _isnull(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values], dtype=bool)
    return np.zeros(values.shape, dtype=bool)


def better(metric: str, a: float, b: float) -> bool:
    """True when ``a`` is strictly better than ``b`` for ``metric``."""
    return a < b if metric in LOWER_IS_BETTER else a > b
