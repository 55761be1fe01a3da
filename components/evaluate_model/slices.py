"""Metrics per slice of the test split, and the fairness gaps between slices.

A slice column may be any column of the test split (a feature, or a column kept with the ``slice``
role). How it is cut:

- a numeric column (not boolean) with more than ``buckets`` distinct values: ``buckets`` quantile
  buckets (``pandas.qcut``; buckets that would repeat an edge are merged, so a skewed column can
  give fewer), labelled by their interval, e.g. ``(23.5, 41.0]``;
- any other column: one slice per value.

Nulls form their own slice, ``null``. A slice with fewer than ``min_rows`` rows is listed with its
row count but not scored (its metrics would be noise) and takes no part in the gaps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shipyard import metrics as task_metrics
from shipyard.errors import ConfigError

NULL = "null"


def check_columns(columns: Sequence[str], available: Sequence[str], where: str) -> None:
    """Raises ConfigError naming each slice column the test split lacks, and the columns it has."""
    missing = [c for c in columns if c not in available]
    if missing:
        raise ConfigError(
            f"evaluate: slices: column(s) {missing} not in the test split {where}; "
            f"available columns: {sorted(map(str, available))}"
        )


def cut(column: Any, buckets: int) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """Splits one column into slices.

    Args:
        column: A pandas Series.
        buckets: Quantile buckets for a numeric column.

    Returns:
        ``(kind, [(label, row mask)])``: kind ``numeric`` (quantile buckets) or ``categorical``.
    """
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    nulls = column.isna().to_numpy()
    numeric = is_numeric_dtype(column.dtype) and not is_bool_dtype(column.dtype)
    out: list[tuple[str, np.ndarray]] = []
    if numeric and column.nunique(dropna=True) > buckets:
        binned = pd.qcut(column.astype("float64"), q=buckets, duplicates="drop")
        for interval in binned.cat.categories:
            out.append((f"({interval.left:.4g}, {interval.right:.4g}]", (binned == interval).to_numpy()))
        kind = "numeric"
    else:
        values = column[~nulls]
        for value in sorted(values.unique().tolist(), key=str):
            out.append((str(value), (column == value).to_numpy() & ~nulls))
        kind = "categorical"
    if nulls.any():
        out.append((NULL, nulls))
    return kind, out


def slice_metrics(
    task: str,
    y: np.ndarray,
    scores: np.ndarray,
    df: Any,
    columns: Sequence[str],
    min_rows: int,
    buckets: int,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The candidate's metrics on each slice of each column.

    Args:
        task: The task.
        y: The test labels (:func:`components.evaluate_model.core.labels_of`).
        scores: The candidate's scores on the same rows.
        df: The test split's DataFrame.
        columns: The slice columns (checked with :func:`check_columns`).
        min_rows: Slices with fewer rows are listed but not scored.
        buckets: Quantile buckets of a numeric column.
        threshold: The binary decision threshold (for the ``*_at_threshold`` metrics).

    Returns:
        ``{column: {"kind", "slices": [{"value", "rows", "metrics" (None when too small), "note"?}]}}``.
    """
    out: dict[str, Any] = {}
    for name in columns:
        kind, parts = cut(df[name], buckets)
        rows = []
        for label, mask in parts:
            n = int(mask.sum())
            entry: dict[str, Any] = {"value": label, "rows": n, "metrics": None}
            if n < min_rows:
                entry["note"] = f"fewer than min_slice_rows={min_rows} rows: not scored"
            else:
                entry["metrics"] = task_metrics.evaluation_metrics(task, y[mask], scores[mask], threshold)[0]
            rows.append(entry)
        out[name] = {"kind": kind, "slices": rows}
    return out


def fairness_gaps(slices: dict[str, Any], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """The largest difference of each metric between the scored slices of each column.

    Returns:
        ``[{"column", "metric", "gap", "highest", "lowest", "slices"}]``: ``gap`` is
        ``max − min`` over the slices where the metric is defined (None with fewer than two),
        ``highest``/``lowest`` name those slices, ``slices`` is how many took part.
    """
    out = []
    for column, entry in slices.items():
        for metric in metrics:
            scored = [
                (s["value"], s["metrics"][metric])
                for s in entry["slices"]
                if s["metrics"] is not None and np.isfinite(s["metrics"].get(metric, np.nan))
            ]
            gap = highest = lowest = None
            if len(scored) >= 2:
                hi = max(scored, key=lambda t: t[1])
                lo = min(scored, key=lambda t: t[1])
                gap, highest, lowest = float(hi[1] - lo[1]), f"{hi[0]} ({hi[1]:.4g})", f"{lo[0]} ({lo[1]:.4g})"
            out.append(
                {
                    "column": column,
                    "metric": metric,
                    "gap": gap,
                    "highest": highest,
                    "lowest": lowest,
                    "slices": len(scored),
                }
            )
    return out
