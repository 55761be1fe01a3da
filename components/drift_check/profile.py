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
    counts = series.value_counts(dropna=True)
    return {_key(k): int(v) for k, v in counts.items()}


def _key(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def profile_column(series: Any, max_sorted: int = 50_000) -> ColumnProfile:
    """Summarizes one reference column (nulls and ±Inf dropped)."""
    data = _finite(series)
    group = _dtype_group(series)
    if not _is_numeric(data):
        return ColumnProfile(
            str(series.name), "categorical", int(len(data)), counts=_counts(data.astype(str)), dtype=group
        )
    values = np.sort(data.to_numpy(dtype=np.float64))
    prof = ColumnProfile(
        str(series.name), "numeric", int(len(values)), std=float(np.std(values)) if len(values) else 0.0, dtype=group
    )
    distinct = int(np.count_nonzero(np.diff(values))) + 1 if len(values) else 0  # sorted: one pass
    if distinct <= DOMAIN_CAP:
        prof.counts = _counts(data)
    if len(values) > max_sorted:
        # Mid-point quantiles (each stands for 1/k of the mass), read off the sorted values by linear
        # interpolation (numpy's default quantile method), with the true extremes kept.
        positions = (np.arange(max_sorted) + 0.5) / max_sorted * (len(values) - 1)
        quantiles = np.interp(positions, np.arange(len(values)), values)
        quantiles[0], quantiles[-1] = values[0], values[-1]
        prof.values = quantiles
        prof.exact = False
    else:
        prof.values = values
    return prof


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
