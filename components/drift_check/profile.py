"""The reference profile: what a reference dataset contributes to every later drift check.

Per column: its kind and dtype group, non-null count, std, and either its sorted values (or
mid-point quantiles beyond ``max_sorted`` rows) or its category counts. Stored as
``profile.json`` + ``profile.npz`` (arrays loaded without pickle).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from components.validate_data.stats import text_counts
from shipyard.artifacts import atomic_dir, read_json
from shipyard.errors import ArtifactError, DataValidationError

DOMAIN_CAP = 20  # Evidently bins numeric columns with more distinct values than this
PROFILE_JSON, PROFILE_NPZ = "profile.json", "profile.npz"
PROFILE_VERSION = 1


@dataclasses.dataclass
class ColumnProfile:
    """What one reference column contributes to every later check."""

    name: str
    kind: str  # "numeric" or "categorical"
    n: int  # non-null reference rows
    std: float = 0.0
    values: np.ndarray | None = None  # numeric: sorted values, or quantiles when n > max_sorted
    exact: bool = True  # values holds every value (not quantiles)
    counts: dict[Any, int] | None = None  # categorical, or numeric with few distinct values
    dtype: str = ""  # "int", "float", "bool" or "text": a current column must have the same


@dataclasses.dataclass
class Profile:
    """A reference dataset's profile: one ColumnProfile per checked column."""

    columns: dict[str, ColumnProfile]
    rows: int


def _is_numeric(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series.dtype)) and not pd.api.types.is_bool_dtype(series.dtype)


def _dtype_group(series: Any) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(series.dtype):
        return "int"
    return "float" if pd.api.types.is_numeric_dtype(series.dtype) else "text"


def _finite(series: Any) -> Any:
    """Nulls dropped and, as Evidently does, ±Inf treated as missing too."""
    if _is_numeric(series) and series.dtype.kind == "f" and np.isinf(series.to_numpy()).any():
        series = series.replace([np.inf, -np.inf], np.nan)
    return series.dropna() if series.hasnans else series


def _counts(series: Any) -> dict[Any, int]:
    """Counts of a numeric column's few distinct values (text columns: ``text_counts``)."""
    counts = series.value_counts(dropna=True)
    return {_key(k): int(v) for k, v in counts.items()}


def _key(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def profile_column(series: Any, max_sorted: int = 50_000) -> ColumnProfile:
    """Summarizes one reference column (nulls and ±Inf dropped).

    Up to ``max_sorted`` values are kept sorted (exact); a longer column is kept as ``max_sorted``
    mid-point quantiles read off a fine histogram (:func:`sketch_quantiles`), which costs a few
    linear passes instead of a sort.
    """
    data = _finite(series)
    group = _dtype_group(series)
    if not _is_numeric(data):
        counts = text_counts(data)  # as text; categoricals counted on their codes
        return ColumnProfile(str(series.name), "categorical", int(len(data)), counts=counts, dtype=group)
    x = data.to_numpy(dtype=np.float64)
    prof = ColumnProfile(str(series.name), "numeric", int(len(x)), std=float(np.std(x)) if len(x) else 0.0, dtype=group)
    if len(x) > max_sorted:
        prof.values, prof.exact = sketch_quantiles(x, max_sorted), False
        sample = np.sort(x[:: max(1, len(x) // SAMPLE)])  # few distinct values in the sample: count them all
        few = int(np.count_nonzero(np.diff(sample))) + 1 <= DOMAIN_CAP
    else:
        prof.values = np.sort(x)
        few = (int(np.count_nonzero(np.diff(prof.values))) + 1 if len(x) else 0) <= DOMAIN_CAP
    if few:
        counts = _counts(data)
        prof.counts = counts if len(counts) <= DOMAIN_CAP else None
    return prof


SAMPLE = 20_000  # evenly strided values that place a long column's histogram
BINS = 1 << 16  # histogram bins between the sample's 0.1% and 99.9% quantiles
TAIL = 0.001


def sketch_quantiles(x: np.ndarray, k: int) -> np.ndarray:
    """``k`` mid-point quantiles of ``x`` (finite float64) without sorting it.

    The values below the 0.1% and above the 99.9% quantile (placed by a strided sample) are kept
    exactly and sorted; those between are counted into 65,536 equal bins, each bin's values taken
    as evenly spread over it. A quantile is then off by at most one bin width, (q99.9 − q0.1) /
    65,536 — about 1e-4 of a standard deviation for normal data — and the tails are exact, so
    heavy tails cost nothing in accuracy. The true minimum and maximum are kept at the ends, as
    :func:`profile_column` does for sorted values.
    """
    n = len(x)
    sample = np.sort(x[:: max(1, n // SAMPLE)])
    lo, hi = float(np.quantile(sample, TAIL)), float(np.quantile(sample, 1 - TAIL))
    scale = BINS / (hi - lo) if hi > lo else 0.0
    scale = scale if np.isfinite(scale) else 0.0
    # Bin 0: below lo; 1..BINS: [lo, hi); BINS + 1: hi and above. The map is monotone in x, so
    # every value of a lower bin is <= every value of a higher one (rounding included). Clipped
    # as floats, before the cast, so a far outlier cannot overflow int64.
    if scale:
        idx = np.clip((x - lo) * scale + 1.0, 0, BINS + 1).astype(np.int64)
    else:
        idx = np.where(x < lo, 0, np.where(x > hi, BINS + 1, 1))
    counts = np.bincount(idx, minlength=BINS + 2)
    low, high = np.sort(x[idx == 0]), np.sort(x[idx == BINS + 1])
    inner = counts[1 : BINS + 1]
    ends = np.cumsum(inner)  # rank (past the low tail) where each bin ends
    width = (hi - lo) / BINS if scale else 0.0

    def value_at(rank: np.ndarray) -> np.ndarray:
        """The rank-th smallest value (0-based integer ranks), spread evenly inside a bin."""
        out = np.empty(len(rank))
        is_low, is_high = rank < len(low), rank >= n - len(high)
        out[is_low] = low[rank[is_low]]
        out[is_high] = high[rank[is_high] - (n - len(high))]
        mid = ~(is_low | is_high)
        r = rank[mid] - len(low)
        b = np.searchsorted(ends, r, side="right")
        within = r - (ends[b] - inner[b])
        out[mid] = lo + width * (b + (within + 0.5) / inner[b])
        return out

    # The same mid-point positions and linear interpolation as for sorted values.
    positions = (np.arange(k) + 0.5) / k * (n - 1)
    below = np.floor(positions).astype(np.int64)
    above = np.minimum(below + 1, n - 1)
    frac = positions - below
    a, b_ = value_at(below), value_at(above)
    q = a + frac * (b_ - a)
    q[0], q[-1] = float(x.min()), float(x.max())
    return np.maximum.accumulate(q)  # spread values never step back across a bin edge


def quantiles(sorted_values: np.ndarray, levels: tuple[float, ...]) -> dict[str, float]:
    """``{"p01": ..., "p50": ...}`` read off sorted values by linear interpolation."""
    positions = np.asarray(levels) * (len(sorted_values) - 1)
    values = np.interp(positions, np.arange(len(sorted_values)), sorted_values)
    return {f"p{round(level * 100):02d}": float(v) for level, v in zip(levels, values, strict=True)}


def build_profile(df: Any, columns: list[str], max_sorted: int = 50_000) -> Profile:
    """Profiles ``columns`` of a reference DataFrame."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataValidationError(f"reference: column(s) {missing} not found")
    from concurrent.futures import ThreadPoolExecutor

    # numpy's sort releases the GIL: columns are profiled side by side on every core.
    with ThreadPoolExecutor(max_workers=min(len(columns), os.cpu_count() or 1) or 1) as pool:
        profiles = list(pool.map(lambda c: profile_column(df[c], max_sorted), columns))
    return Profile(dict(zip(columns, profiles, strict=True)), int(len(df)))


def save_profile(profile: Profile, directory: str | Path) -> None:
    """Writes ``profile.json`` (metadata, counts) and ``profile.npz`` (numeric arrays) atomically."""
    with atomic_dir(directory) as tmp:
        arrays = {f"c{i}": p.values for i, p in enumerate(profile.columns.values()) if p.values is not None}
        np.savez(tmp / PROFILE_NPZ, **arrays)  # type: ignore[arg-type]  # numpy stubs; floats barely compress
        meta = {
            "version": PROFILE_VERSION,
            "rows": profile.rows,
            "columns": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "n": p.n,
                    "std": p.std,
                    "exact": p.exact,
                    "array": f"c{i}" if p.values is not None else None,
                    "counts": None if p.counts is None else [[k, v] for k, v in p.counts.items()],
                    "dtype": p.dtype,
                }
                for i, p in enumerate(profile.columns.values())
            ],
        }
        (tmp / PROFILE_JSON).write_text(json.dumps(meta, indent=1) + "\n")


def load_profile(directory: str | Path) -> Profile:
    """Reads a profile written by :func:`save_profile`.

    Raises:
        ArtifactError: Missing or malformed profile files.
    """
    root = Path(directory)
    meta = read_json(root / PROFILE_JSON, "reference profile")
    if not isinstance(meta, dict) or meta.get("version") != PROFILE_VERSION:
        raise ArtifactError(f"{root / PROFILE_JSON}: expected a version {PROFILE_VERSION} drift profile")
    try:
        arrays = np.load(root / PROFILE_NPZ, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{root / PROFILE_NPZ}: cannot read the profile arrays ({exc})") from exc
    columns = {}
    try:
        for c in meta["columns"]:
            counts = None if c["counts"] is None else {k: v for k, v in c["counts"]}
            values = arrays[c["array"]] if c["array"] else None
            columns[c["name"]] = ColumnProfile(
                c["name"], c["kind"], c["n"], c["std"], values, c["exact"], counts, c.get("dtype", "")
            )
        rows = int(meta["rows"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(
            f"{root / PROFILE_JSON}: malformed drift profile ({exc.__class__.__name__}: {exc})"
        ) from exc
    return Profile(columns, rows)
