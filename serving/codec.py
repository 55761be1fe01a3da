"""Turning request payloads and DataFrames into the model's float32 feature matrix.

Every path into a model (a V1 ``instances`` list, V2 named tensors, a DataFrame in evaluation)
ends here, so a bad payload gets the same typed, named error everywhere.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from shipyard.errors import DataValidationError

FLOAT32_MAX = float(np.finfo(np.float32).max)
SHORT = 120  # the most characters of client input an error message repeats
#: The numeric V2 (Open Inference Protocol) datatypes and their numpy dtypes: one table for the
#: datatypes a model accepts, the metadata it advertises and the decoding of JSON tensors.
V2_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def short(value: Any) -> str:
    """``repr`` of client input (or ``str`` of an exception about it), cut to SHORT characters."""
    text = str(value) if isinstance(value, BaseException) else repr(value)
    return text if len(text) <= SHORT else text[: SHORT - 3] + "..."


def check_matrix(x: np.ndarray, feature_names: Sequence[str], where: str | Callable[[], str]) -> np.ndarray:
    """Checks a 2-D numeric matrix against the model's features and returns it as float32.

    ``where`` names the input in error messages (a callable is asked only when there is an error).

    Raises:
        DataValidationError: Wrong rank, wrong number of features, non-numeric, NaN or Inf.
    """
    # The common case first: float32 rows of the right width. Their float64 sum cannot overflow, so
    # it is finite exactly when no value is NaN or ±Inf: one reduction instead of abs, max and a copy.
    if (
        x.dtype == np.float32
        and x.ndim == 2
        and x.shape[1] == len(feature_names)
        and x.shape[0]
        and x.flags.c_contiguous
        and math.isfinite(x.sum(dtype=np.float64))
    ):
        return x
    if callable(where):
        where = where()
    if x.ndim == 1 and len(feature_names) > 0 and x.size == len(feature_names):
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise DataValidationError(
            f"{where}: expected a 2-D array [rows, {len(feature_names)}], got shape {list(x.shape)}"
        )
    if x.shape[1] != len(feature_names):
        raise DataValidationError(
            f"{where}: expected {len(feature_names)} features per row ({', '.join(feature_names[:5])}"
            f"{', ...' if len(feature_names) > 5 else ''}), got {x.shape[1]}"
        )
    if x.shape[0] == 0:
        raise DataValidationError(f"{where}: no rows")
    try:  # float32 input is checked as it is (its overflow is already ±Inf); the rest through float64
        wide = x if x.dtype == np.float32 else np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"{where}: expected numbers, got non-numeric values ({exc})") from exc
    if not np.abs(wide).max() <= FLOAT32_MAX:  # one pass: NaN compares false, ±Inf and huge exceed
        bad = ~np.isfinite(wide) | (np.abs(wide) > FLOAT32_MAX)
        row, col = (int(i) for i in np.argwhere(bad)[0])
        value = wide[row, col]
        expected = "a finite number" if not np.isfinite(value) else f"a number within ±{FLOAT32_MAX:.3g} (float32)"
        raise DataValidationError(
            f"{where}: feature {feature_names[col]!r} is {value} in row {row}; expected {expected}"
        )
    return np.ascontiguousarray(wide, dtype=np.float32)


def plain_floats(values: Any) -> array | None:
    """``values`` as float32 without numpy, or None unless it is a list of JSON numbers all finite
    and below ``FLOAT32_MAX`` in magnitude once rounded to float32.

    ``array("f")`` rounds each number as numpy's float32 conversion does and refuses strings,
    nulls and nested lists. A float32 sum in Python floats cannot overflow, so it is finite exactly
    when every value is. ``±FLOAT32_MAX`` is left out because a float64 just past it rounds down to
    it, and such input is refused where it is checked in float64 (V1). Callers send None down the
    numpy decoding, whose checks and messages then apply unchanged.
    """
    if type(values) is not list:
        return None
    try:
        row = array("f", values)
    except (TypeError, OverflowError):
        return None
    if not math.isfinite(sum(row)) or FLOAT32_MAX in row or -FLOAT32_MAX in row:
        return None
    return row


def plain_v2_rows(tensor: Any, features: Collection[str]) -> tuple[array, int] | None:
    """``(float32 values, rows)`` of a plain V2 tensor decoded without numpy (:func:`plain_floats`), or None.

    Plain: one ``FP32`` tensor of shape ``[rows, features]`` (or ``[features]``), not named like a
    feature (that is the one-tensor-per-feature form), whose data is a flat list of numbers.
    """
    k, shape = len(features), tensor.shape
    if tensor.datatype != "FP32" or tensor.name in features:
        return None
    rows = shape[0] if len(shape) == 2 and shape[1] == k else 1 if shape == [k] else 0
    if rows < 1 or len(tensor.data) != rows * k:
        return None
    values = plain_floats(tensor.data)
    return None if values is None else (values, rows)


def plain_v1_row(payload: Any, width: int) -> array | None:
    """The float32 values of a V1 request of one plain row (:func:`plain_floats`), or None.

    Plain: ``{"instances": [[...]]}`` or ``{"instances": [...]}`` (one flat row) of ``width`` numbers.
    """
    instances = payload.get("instances") if type(payload) is dict else None
    if type(instances) is not list or not instances:
        return None
    values = instances[0] if len(instances) == 1 and type(instances[0]) is list else instances
    return plain_floats(values) if len(values) == width else None


def from_instances(instances: Any, feature_names: Sequence[str], where: str = "instances") -> np.ndarray:
    """Converts V1 ``instances``: a list of rows (lists) or of records keyed by column name.

    Raises:
        DataValidationError: Not a non-empty list, mixed row kinds, unknown or missing columns.
    """
    if not isinstance(instances, list) or not instances:
        raise DataValidationError(f"{where}: expected a non-empty list of rows")
    if all(isinstance(r, Mapping) for r in instances):
        return from_records(instances, feature_names, where)
    if any(isinstance(r, Mapping) for r in instances):
        raise DataValidationError(f"{where}: mixes records (objects) and lists; use one kind")
    try:
        x = np.asarray(instances, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataValidationError(f"{where}: expected rows of {len(feature_names)} numbers ({short(exc)})") from exc
    return check_matrix(x, feature_names, where)


def from_records(records: Sequence[Mapping[str, Any]], feature_names: Sequence[str], where: str) -> np.ndarray:
    """Converts records keyed by column name, in the model's feature order."""
    expected = set(feature_names)
    for i, rec in enumerate(records):
        keys = set(rec)
        if keys != expected:
            missing, unknown = sorted(expected - keys), sorted(keys - expected)
            raise DataValidationError(
                f"{where}[{i}]: "
                + "; ".join(
                    p
                    for p in (
                        f"missing feature(s) {missing}" if missing else "",
                        f"unknown feature(s) {short(unknown[:5])}" if unknown else "",
                    )
                    if p
                )
            )
    x = np.empty((len(records), len(feature_names)), dtype=np.float64)
    for i, rec in enumerate(records):
        for j, n in enumerate(feature_names):
            value = rec[n]
            if isinstance(value, (str, bytes, list, dict)) or value is None:
                raise DataValidationError(f"{where}[{i}]: feature {n!r} is {short(value)}; expected a number")
            try:
                x[i, j] = value
            except (TypeError, ValueError, OverflowError) as exc:
                raise DataValidationError(f"{where}[{i}]: feature {n!r} is {short(value)}; expected a number") from exc
    return check_matrix(x, feature_names, where)


def from_frame(df: Any, feature_names: Sequence[str], where: str = "dataset") -> np.ndarray:
    """Selects the model's features from a DataFrame, in order, as float32.

    Raises:
        DataValidationError: A feature column is missing or not numeric.
    """
    missing = [n for n in feature_names if n not in df.columns]
    if missing:
        raise DataValidationError(f"{where}: missing feature column(s) {missing}")
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    for n in feature_names:
        if not (is_numeric_dtype(df[n].dtype) or is_bool_dtype(df[n].dtype)):
            raise DataValidationError(f"{where}: column {n!r} has dtype {df[n].dtype}; expected a numeric column")
    x = df[list(feature_names)].to_numpy(dtype=np.float64, na_value=np.nan)
    return check_matrix(x, feature_names, where)
