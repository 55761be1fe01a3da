"""One pass of statistics per column, shared by schema inference and the anomaly checks.

Every figure the schema and the checks need — null count, ±Inf, the finite range, the distinct
values of a text column with their counts — is computed here once per column, so neither has to
scan the data again: a range or domain check only goes back to the rows when the summary shows a
violation (to count and quote them). Text columns read as pandas categoricals (see
``read_dataset(text_as_category=True)``) are counted on their integer codes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

NUMERIC_KINDS = ("int", "float")


def column_kind(series: Any) -> str:
    """Maps a pandas dtype to a schema kind: int, float, bool, string, datetime or other."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if (
        pd.api.types.is_string_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return "string"
    return "other"


@dataclasses.dataclass(frozen=True)
class ColumnStats:
    """What the schema and the checks need to know about one column.

    Attributes:
        kind: Schema kind (see :func:`column_kind`).
        rows: Length of the column.
        nulls: Null (or NaN) values.
        infinite: ±Inf values (numeric kinds).
        inf_examples: A few of them.
        lo: Smallest finite value, or None (numeric kinds; None when there is none).
        hi: Largest finite value, or None.
        counts: Text kinds (string, bool): each distinct non-null value as text → its rows.
    """

    kind: str
    rows: int
    nulls: int
    infinite: int = 0
    inf_examples: tuple = ()
    lo: float | None = None
    hi: float | None = None
    counts: dict[str, int] | None = None


def text_counts(series: Any) -> dict[str, int]:
    """Distinct non-null values as text (``str()`` of each) → their row counts."""
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        tally = np.bincount(codes[codes >= 0], minlength=len(series.cat.categories))
        pairs: Any = zip(series.cat.categories, tally.tolist(), strict=True)
    else:
        pairs = series.value_counts(dropna=True).items()
    counts: dict[str, int] = {}
    for value, k in pairs:
        if k:
            key = str(value.item() if hasattr(value, "item") else value)
            counts[key] = counts.get(key, 0) + int(k)  # 1 and "1" are one value as text
    return counts


def float_values(series: Any) -> np.ndarray:
    """A numeric column as float64 (nulls as NaN); no copy for a float64 column."""
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def column_stats(series: Any) -> ColumnStats:
    """Computes :class:`ColumnStats` for one column."""
    kind = column_kind(series)
    rows = len(series)
    if kind in NUMERIC_KINDS:
        values = float_values(series)
        finite = np.isfinite(values)
        if finite.all():
            lo, hi = (float(values.min()), float(values.max())) if rows else (None, None)
            return ColumnStats(kind, rows, 0, lo=lo, hi=hi)
        nan = np.isnan(values)
        inf = ~finite & ~nan
        kept = values[finite]
        return ColumnStats(
            kind,
            rows,
            int(nan.sum()),
            int(inf.sum()),
            tuple(values[inf][:3].tolist()),
            float(kept.min()) if len(kept) else None,
            float(kept.max()) if len(kept) else None,
        )
    nulls = int(series.isna().sum())
    counts = text_counts(series) if kind in ("string", "bool") else None
    return ColumnStats(kind, rows, nulls, counts=counts)


def frame_stats(df: Any) -> dict[Any, ColumnStats]:
    """:func:`column_stats` for every column, by name."""
    return {name: column_stats(df[name]) for name in df.columns}


def _row_bits(series: Any) -> np.ndarray:
    """64 bits per value, equal for equal values (nulls included), for a quick row hash."""
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy().astype(np.uint64)
    if isinstance(dtype, np.dtype) and dtype.kind in "biumM":
        return series.to_numpy().astype(np.int64, copy=False).view(np.uint64)
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        values = series.to_numpy(dtype=np.float64) + 0.0  # -0.0 becomes 0.0
        if series.hasnans:
            values[np.isnan(values)] = np.nan  # one NaN bit pattern
        return values.view(np.uint64)
    return pd.util.hash_pandas_object(series, index=False).to_numpy()


def duplicate_rows(df: Any) -> int:
    """Rows equal to an earlier row.

    A quick hash of every row (each column's 64 bits folded in by multiply-and-add) leaves as
    candidates only the rows whose quick hash repeats; only those are hashed properly, the same
    64 bits chained through pandas' mixing hash (odds of two different rows sharing that one:
    about n²/2⁶⁵, below 10⁻⁷ for a million candidates). -0.0 and 0.0 are one value, as are all
    NaNs, as in ``DataFrame.duplicated``. On data without duplicates that is one cheap pass per
    column.
    """
    import pandas as pd

    if len(df) < 2 or not len(df.columns):
        return 0
    quick = np.zeros(len(df), dtype=np.uint64)
    for name in df.columns:
        quick *= np.uint64(0x100000001B3)
        quick += _row_bits(df[name])
    candidates = pd.Series(quick).duplicated(keep=False).to_numpy()
    if not candidates.any():
        return 0
    strong = np.zeros(int(candidates.sum()), dtype=np.uint64)
    for name in df.columns:
        strong = pd.util.hash_array(strong ^ _row_bits(df[name][candidates]))
    return int(len(strong) - len(pd.unique(strong)))
