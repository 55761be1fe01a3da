"""The fitted preprocessing of a tabular model: raw columns in, the model's float32 matrix out.

One implementation, fitted once on the training split and stored in ``model.json``
(``preprocessing``), is applied by training, tuning, evaluation, quantization, batch scoring and
the server, so what is evaluated is exactly what is served.

Per feature it records:

- ``numeric``: whether nulls are allowed (``nullable``), the value a null is imputed with
  (the training median) and whether a 0/1 missing indicator column follows; then an optional
  scaling: ``standard`` (``(x - center) / scale``) or ``quantile`` (the training quantiles map
  a value to its rank in [0, 1], then to a standard normal score; the extremes are ±2.4).
- ``categorical``: the vocabulary (the most frequent training values, at most ``max_categories``,
  each seen at least ``min_frequency`` times), in a fixed order. A value is encoded as its index
  in the vocabulary; anything else (a rare training value, or one never seen) goes to the
  *unknown* bucket ``len(vocabulary)``; a null goes to the *missing* bucket
  ``len(vocabulary) + 1`` when the feature is nullable. ``codes`` keeps that index as one column
  (for embeddings and native categorical trees); ``onehot`` expands it into one 0/1 column per
  bucket (for linear models).

The output columns are, in feature order: a numeric feature's value (then its missing indicator),
a categorical feature's code (or its one-hot block). With only non-nullable numeric features and
no scaling the preprocessing is the identity (:attr:`Preprocessing.identity`), and the model takes
the raw matrix as it always did.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shipyard.errors import DataValidationError

VERSION = 1
KINDS = ("numeric", "categorical")
NUMERIC_SCALINGS = ("none", "standard", "quantile")
CATEGORICAL_ENCODINGS = ("codes", "onehot")
#: The most categories a vocabulary keeps by default (HistGradientBoosting takes at most 255 bins
#: per feature, codes included the unknown and missing buckets).
MAX_CATEGORIES = 64
#: Training rows a value needs to get its own category by default; rarer ones share the unknown bucket.
MIN_FREQUENCY = 5
#: Quantile knots kept per feature for ``quantile`` scaling.
QUANTILE_KNOTS = 64
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Raw dtypes (pandas names) of categorical values: compared as strings, booleans or integers.
_BOOL_DTYPES = ("bool", "boolean")


@dataclasses.dataclass(frozen=True)
class FeaturePrep:
    """How one raw feature becomes model columns (see the module docstring).

    Attributes:
        name: The raw column's name.
        kind: ``numeric`` or ``categorical``.
        dtype: The raw column's dtype in training (a pandas dtype name).
        nullable: Whether a null is accepted (imputed or encoded as missing); otherwise an error.
        impute: The value a numeric null becomes (the training median).
        indicator: Whether a numeric feature is followed by a 0/1 missing indicator column.
        center: ``standard`` scaling's center.
        scale: ``standard`` scaling's scale (never 0).
        knots: ``quantile`` scaling's training quantiles (strictly increasing).
        ranks: The rank in [0, 1] of each knot.
        vocabulary: A categorical feature's known values, in code order.
    """

    name: str
    kind: str
    dtype: str = "float64"
    nullable: bool = False
    impute: float = 0.0
    indicator: bool = False
    center: float = 0.0
    scale: float = 1.0
    knots: tuple[float, ...] = ()
    ranks: tuple[float, ...] = ()
    vocabulary: tuple[Any, ...] = ()

    @property
    def unknown_code(self) -> int:
        """The code of a value outside the vocabulary."""
        return len(self.vocabulary)

    @property
    def missing_code(self) -> int:
        """The code of a null (a nullable categorical feature only)."""
        return len(self.vocabulary) + 1

    @functools.cached_property
    def lookup(self) -> dict[Any, int]:
        """``{vocabulary value: code}``, built once per feature."""
        return {v: i for i, v in enumerate(self.vocabulary)}

    @property
    def cardinality(self) -> int:
        """How many codes a categorical feature can take (vocabulary, unknown, missing if nullable)."""
        return len(self.vocabulary) + 1 + int(self.nullable)

    @functools.cached_property
    def is_bool(self) -> bool:
        return self.dtype in _BOOL_DTYPES

    @functools.cached_property
    def is_integer(self) -> bool:
        return self.dtype.lower().startswith(("int", "uint"))


@dataclasses.dataclass(frozen=True)
class Encoded:
    """A transformed batch: the model's matrix and, per categorical feature, how many of its
    values were outside the vocabulary (only features with some)."""

    x: np.ndarray
    unknown: dict[str, int]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """The fitted preprocessing of one model (see the module docstring).

    Attributes:
        features: One entry per raw feature, in the model's input order.
        numeric: ``none``, ``standard`` or ``quantile``.
        categorical: ``codes`` or ``onehot``.
    """

    features: tuple[FeaturePrep, ...]
    numeric: str = "none"
    categorical: str = "codes"

    # --- what it produces ------------------------------------------------------------------

    @property
    def feature_names(self) -> list[str]:
        """The raw features, in input order."""
        return [f.name for f in self.features]

    @property
    def identity(self) -> bool:
        """True when the output is the raw numeric matrix itself (no nulls, categories or scaling)."""
        return self.numeric == "none" and all(f.kind == "numeric" and not f.nullable for f in self.features)

    @property
    def output_names(self) -> list[str]:
        """The model's input columns, in order."""
        names: list[str] = []
        for f in self.features:
            if f.kind == "numeric":
                names.append(f.name)
                if f.indicator:
                    names.append(f"{f.name}__missing")
            elif self.categorical == "codes":
                names.append(f.name)
            else:
                names += [f"{f.name}={v}" for v in f.vocabulary] + [f"{f.name}__unknown"]
                if f.nullable:
                    names.append(f"{f.name}__missing")
        return names

    @property
    def width(self) -> int:
        """How many columns :meth:`transform` gives."""
        return len(self.output_names)

    def code_columns(self) -> list[tuple[int, int]]:
        """``(output column, cardinality)`` of each categorical code column (``codes`` encoding only)."""
        if self.categorical != "codes":
            return []
        out, col = [], 0
        for f in self.features:
            if f.kind == "categorical":
                out.append((col, f.cardinality))
                col += 1
            else:
                col += 1 + int(f.indicator)
        return out

    # --- fitting ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        df: Any,
        kinds: Mapping[str, str],
        numeric: str = "none",
        categorical: str = "codes",
        max_categories: int = MAX_CATEGORIES,
        min_frequency: int = MIN_FREQUENCY,
        nullable: Sequence[str] = (),
    ) -> Preprocessing:
        """Fits the preprocessing on the training split.

        Args:
            df: The training rows (a DataFrame holding every feature).
            kinds: ``{feature: "numeric" | "categorical"}``, in the model's input order.
            numeric: Scaling of numeric features (``none``, ``standard``, ``quantile``).
            categorical: Encoding of categorical features (``codes``, ``onehot``).
            max_categories: The most values a vocabulary keeps (the most frequent ones).
            min_frequency: Training rows a value needs to be kept.
            nullable: Features that accept nulls even when the training rows have none (from the
                validation schema); a feature with nulls in training is always nullable.

        Raises:
            DataValidationError: A feature is missing from ``df``, a numeric feature holds non-numbers
                or ±Inf, a numeric feature is entirely null.
        """
        if numeric not in NUMERIC_SCALINGS:
            raise ValueError(f"numeric scaling {numeric!r} is not one of {NUMERIC_SCALINGS}")
        if categorical not in CATEGORICAL_ENCODINGS:
            raise ValueError(f"categorical encoding {categorical!r} is not one of {CATEGORICAL_ENCODINGS}")
        missing = [n for n in kinds if n not in df.columns]
        if missing:
            raise DataValidationError(f"training data: missing feature column(s) {missing}")
        allowed_null = set(nullable)
        features = []
        for name, kind in kinds.items():
            if kind not in KINDS:
                raise DataValidationError(f"feature {name!r}: kind {kind!r} is not one of {KINDS}")
            series = df[name]
            dtype = str(series.dtype)
            has_null = bool(series.isna().any())
            null_ok = has_null or name in allowed_null
            if kind == "numeric":
                values = _numeric_column(series, name, "training data")
                features.append(_fit_numeric(name, dtype, values, null_ok, numeric, indicator=has_null))
            else:
                features.append(_fit_categorical(name, dtype, series, null_ok, max_categories, min_frequency))
        return cls(tuple(features), numeric, categorical)

    # --- applying --------------------------------------------------------------------------

    def transform_frame(self, df: Any, where: str = "dataset") -> Encoded:
        """Transforms a DataFrame holding the raw features (other columns are ignored).

        Raises:
            DataValidationError: A feature column is missing, a numeric feature is not numeric,
                a non-nullable feature has nulls (the message names the feature and the row).
        """
        missing = [f.name for f in self.features if f.name not in df.columns]
        if missing:
            raise DataValidationError(f"{where}: missing feature column(s) {missing}")
        return self._transform({f.name: df[f.name] for f in self.features}, len(df), where)

    def transform_columns(self, columns: Mapping[str, Any], rows: int, where: str = "request") -> Encoded:
        """Transforms one sequence (list or array) of raw values per feature, each ``rows`` long.

        Raises:
            DataValidationError: As :meth:`transform_frame`, and a column of the wrong length.
        """
        missing = [f.name for f in self.features if f.name not in columns]
        if missing:
            raise DataValidationError(f"{where}: missing feature(s) {missing}")
        for f in self.features:
            if len(columns[f.name]) != rows:
                raise DataValidationError(
                    f"{where}: feature {f.name!r} has {len(columns[f.name])} values; expected {rows} (one per row)"
                )
        return self._transform(columns, rows, where)

    def _transform(self, columns: Mapping[str, Any], rows: int, where: str) -> Encoded:
        if rows == 0:
            raise DataValidationError(f"{where}: no rows")
        out = np.empty((rows, self.width), dtype=np.float32)
        unknown: dict[str, int] = {}
        col = 0
        for f in self.features:
            raw = columns[f.name]
            if f.kind == "numeric":
                values = _numeric_column(raw, f.name, where)
                nulls = np.isnan(values)
                if nulls.any():
                    if not f.nullable:
                        row = int(np.flatnonzero(nulls)[0])
                        raise DataValidationError(
                            f"{where}: feature {f.name!r} is null in row {row}; expected a number "
                            "(the model was trained without nulls in it)"
                        )
                    values = np.where(nulls, f.impute, values)
                out[:, col] = self._scaled(f, values)
                col += 1
                if f.indicator:
                    out[:, col] = nulls
                    col += 1
            else:
                codes, n_unknown = _codes(f, raw, where)
                if n_unknown:
                    unknown[f.name] = n_unknown
                if self.categorical == "codes":
                    out[:, col] = codes
                    col += 1
                else:
                    block = out[:, col : col + f.cardinality]
                    block[:] = 0.0
                    block[np.arange(rows), codes] = 1.0
                    col += f.cardinality
        return Encoded(out, unknown)

    def _scaled(self, f: FeaturePrep, values: np.ndarray) -> np.ndarray:
        if self.numeric == "standard":
            return (values - f.center) / f.scale
        if self.numeric == "quantile":
            from scipy.special import ndtri

            if len(f.knots) < 2:
                return np.zeros_like(values)
            ranks = np.interp(values, f.knots, f.ranks)  # clamped to the training range
            edge = 0.5 / QUANTILE_KNOTS  # the extreme knots are as far out as half a step
            return ndtri(np.clip(ranks, edge, 1 - edge))
        return values

    # --- the JSON form ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The ``preprocessing`` entry of ``model.json``."""
        feats = []
        for f in self.features:
            d: dict[str, Any] = {"name": f.name, "kind": f.kind, "dtype": f.dtype, "nullable": f.nullable}
            if f.kind == "numeric":
                d.update(impute=f.impute, indicator=f.indicator)
                if self.numeric == "standard":
                    d.update(center=f.center, scale=f.scale)
                elif self.numeric == "quantile":
                    d.update(knots=list(f.knots), ranks=list(f.ranks))
            else:
                d["vocabulary"] = list(f.vocabulary)
            feats.append(d)
        return {"version": VERSION, "numeric": self.numeric, "categorical": self.categorical, "features": feats}

    @classmethod
    def from_dict(cls, data: Any, where: str = "model.json") -> Preprocessing:
        """Parses the JSON form; raises DataValidationError naming ``where`` when it is malformed."""
        where = f"{where}: preprocessing"
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("features"), list):
            raise DataValidationError(f"{where}: expected an object with version {VERSION} and a 'features' list")
        numeric, categorical = data.get("numeric", "none"), data.get("categorical", "codes")
        if numeric not in NUMERIC_SCALINGS or categorical not in CATEGORICAL_ENCODINGS:
            raise DataValidationError(
                f"{where}: numeric must be one of {NUMERIC_SCALINGS} and categorical one of {CATEGORICAL_ENCODINGS}"
            )
        fields = {f.name for f in dataclasses.fields(FeaturePrep)}
        features = []
        for i, d in enumerate(data["features"]):
            if not isinstance(d, dict) or "name" not in d or d.get("kind") not in KINDS or set(d) - fields:
                raise DataValidationError(
                    f"{where}: features[{i}] must be an object with a name, a kind in {KINDS} and only the keys "
                    f"{sorted(fields)}; got {d!r}"
                )
            entry = {**d, "knots": tuple(d.get("knots", ())), "ranks": tuple(d.get("ranks", ()))}
            entry["vocabulary"] = tuple(d.get("vocabulary", ()))
            problem = _entry_problem(entry)
            if problem:
                raise DataValidationError(f"{where}: feature {d['name']!r}: {problem}")
            features.append(FeaturePrep(**entry))
        return cls(tuple(features), numeric, categorical)

    @classmethod
    def plain(cls, names: Sequence[str]) -> Preprocessing:
        """The identity over non-nullable numeric features (what a model without a
        ``preprocessing`` entry in its ``model.json`` gets)."""
        return cls(tuple(FeaturePrep(n, "numeric") for n in names))


def _entry_problem(entry: dict[str, Any]) -> str:
    """What is wrong with one parsed feature entry of the JSON form, or ``""``."""
    numbers = ("impute", "center", "scale")
    if not all(isinstance(entry.get(k, 0.0), (int, float)) and not isinstance(entry.get(k), bool) for k in numbers):
        return f"{', '.join(numbers)} must be numbers"
    if not all(isinstance(entry.get(k, False), bool) for k in ("nullable", "indicator")):
        return "nullable and indicator must be true or false"
    if not isinstance(entry.get("dtype", ""), str) or entry.get("scale", 1.0) == 0:
        return "dtype must be a string and scale must not be 0"
    vocabulary = entry["vocabulary"]
    if not all(isinstance(v, (str, int)) for v in vocabulary) or len(set(vocabulary)) != len(vocabulary):
        return "vocabulary must hold distinct strings, integers or booleans"
    knots, ranks = entry["knots"], entry["ranks"]
    if len(knots) != len(ranks) or any(b <= a for a, b in zip(knots, knots[1:], strict=False)):
        return "knots must be strictly increasing, one rank each"
    return ""


def resolve_kind(dtype: str, declared: str = "") -> str:
    """A feature's kind: the declared one, else ``categorical`` for strings, booleans and pandas
    categoricals and ``numeric`` for numbers."""
    if declared:
        return declared
    d = dtype.lower()
    if d in _BOOL_DTYPES or d in ("object", "string", "str", "category") or d.startswith(("string", "str")):
        return "categorical"
    return "numeric"


# --- numeric columns ---------------------------------------------------------------------------


def _numeric_column(raw: Any, name: str, where: str) -> np.ndarray:
    """``raw`` (a Series, array or list) as float64 with NaN for nulls; strings and ±Inf are errors."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if isinstance(raw, pd.Series):
        if not (is_numeric_dtype(raw.dtype) or is_bool_dtype(raw.dtype)):
            if raw.dtype == object:
                return _numeric_column(raw.tolist(), name, where)
            raise DataValidationError(f"{where}: feature {name!r} has dtype {raw.dtype}; expected a numeric column")
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    elif isinstance(raw, np.ndarray) and raw.dtype.kind in "biuf":
        values = raw.astype(np.float64, copy=False)
    else:
        values = np.empty(len(raw), dtype=np.float64)
        for i, v in enumerate(raw):
            if v is None:
                values[i] = math.nan
            elif isinstance(v, (str, bytes, list, dict, tuple)):
                raise DataValidationError(f"{where}: feature {name!r} is {_short(v)} in row {i}; expected a number")
            else:
                try:
                    values[i] = v
                except (TypeError, ValueError, OverflowError) as exc:
                    raise DataValidationError(
                        f"{where}: feature {name!r} is {_short(v)} in row {i}; expected a number"
                    ) from exc
                if values[i] != values[i]:  # a NaN number is a null
                    values[i] = math.nan
    with np.errstate(invalid="ignore"):
        big = np.abs(values) > _FLOAT32_MAX  # NaN (a null) compares false; ±Inf and huge are true
    if big.any():
        row = int(np.flatnonzero(big)[0])
        raise DataValidationError(
            f"{where}: feature {name!r} is {values[row]} in row {row}; expected a finite number within float32's range"
        )
    return values


def _fit_numeric(
    name: str, dtype: str, values: np.ndarray, nullable: bool, scaling: str, indicator: bool
) -> FeaturePrep:
    """A numeric feature's imputation and scaling; the missing indicator only when the training
    rows have nulls (a column of zeros would teach a model nothing about a null)."""
    present = values[~np.isnan(values)]
    if len(present) == 0:
        raise DataValidationError(f"training data: numeric feature {name!r} has no values (all null)")
    impute = float(np.median(present))
    filled = np.where(np.isnan(values), impute, values)
    center, scale = 0.0, 1.0
    knots: tuple[float, ...] = ()
    ranks: tuple[float, ...] = ()
    if scaling == "standard":
        center = float(filled.mean())
        spread = float(filled.std())
        scale = spread if spread > 1e-12 * max(1.0, abs(center)) else 1.0
    elif scaling == "quantile":
        q = np.linspace(0.0, 1.0, QUANTILE_KNOTS)
        at = np.quantile(filled, q)
        uniq, inverse = np.unique(at, return_inverse=True)
        # a value repeated over several quantiles gets the middle of their ranks
        mid = np.bincount(inverse, weights=q) / np.bincount(inverse)
        knots, ranks = tuple(float(v) for v in uniq), tuple(float(v) for v in mid)
    return FeaturePrep(
        name,
        "numeric",
        dtype,
        nullable=nullable,
        impute=impute,
        indicator=indicator,
        center=center,
        scale=scale,
        knots=knots,
        ranks=ranks,
    )


# --- categorical columns -----------------------------------------------------------------------


def _fit_categorical(
    name: str, dtype: str, series: Any, nullable: bool, max_categories: int, min_frequency: int
) -> FeaturePrep:
    prep = FeaturePrep(name, "categorical", dtype, nullable=nullable)
    counts: dict[Any, int] = {}
    for value, n in _value_counts(prep, series, "training data"):
        counts[value] = counts.get(value, 0) + n  # raw values that read as one (1 and "1") add up
    # most frequent first; equal counts in the values' own order, so the vocabulary is deterministic
    order = sorted(counts.items(), key=lambda kv: (-kv[1], _sort_key(kv[0])))
    kept = [v for v, n in order if n >= min_frequency][:max_categories]
    return dataclasses.replace(prep, vocabulary=tuple(kept))


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (bool, int, float)) else (1, str(value))


def _value_counts(f: FeaturePrep, raw: Any, where: str) -> list[tuple[Any, int]]:
    """``(value as the vocabulary holds it, rows)`` of the non-null values of a training column."""
    import pandas as pd

    s = raw if isinstance(raw, pd.Series) else pd.Series(raw, dtype=object)
    if isinstance(s.dtype, pd.CategoricalDtype):
        counts = s.value_counts(dropna=True, sort=False)
        keys = [_key(f, v, where, -1) for v in counts.index.tolist()]
        return [(k, int(n)) for k, n in zip(keys, counts.tolist(), strict=True) if n]
    if _uniform(f, s):
        counts = s.value_counts(dropna=True, sort=False)
        return [(_plain(k), int(n)) for k, n in zip(counts.index.tolist(), counts.tolist(), strict=True)]
    values = s.tolist()
    nulls = s.isna().to_numpy()
    keys = [_key(f, v, where, i) for i, v in enumerate(values) if not nulls[i]]
    counts = pd.Series(keys, dtype=object).value_counts(sort=False)
    return [(k, int(n)) for k, n in zip(counts.index.tolist(), counts.tolist(), strict=True)]


def _uniform(f: FeaturePrep, s: Any) -> bool:
    """Whether every non-null value of the Series is already of the feature's own type (so the
    column is encoded in C, without a Python call per value)."""
    import pandas as pd
    from pandas.api.types import infer_dtype, is_bool_dtype, is_integer_dtype, is_string_dtype

    if f.is_bool:
        return is_bool_dtype(s.dtype)
    if f.is_integer:
        return is_integer_dtype(s.dtype) and not is_bool_dtype(s.dtype)
    if isinstance(s.dtype, pd.StringDtype):
        return True
    return is_string_dtype(s.dtype) and infer_dtype(s, skipna=True) in ("string", "empty")


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON holds."""
    return value.item() if hasattr(value, "item") else value


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


def _key(f: FeaturePrep, v: Any, where: str, row: int) -> Any:
    """One non-null raw value as the vocabulary holds it: a bool, an int or a str.

    A boolean feature takes ``true``/``false`` (also as the text a V2 ``BYTES`` tensor carries), an
    integer feature integers (or integral floats, or their text), a string feature strings (or
    numbers and booleans, compared as their text).

    Raises:
        DataValidationError: A value of another type (``row`` names it; -1: a category of a
            pandas categorical column).
    """
    if f.is_bool:
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        expected = "true or false"
    elif f.is_integer:
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            return int(v)
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return int(v)
        if isinstance(v, str) and _INTEGER_TEXT.fullmatch(v.strip()):
            return int(v)
        expected = "an integer"
    else:
        if isinstance(v, str):
            return v
        if isinstance(v, (bool, np.bool_)):
            return "true" if v else "false"
        if isinstance(v, (int, float, np.integer, np.floating)):
            return str(int(v)) if float(v).is_integer() else str(v)
        expected = "a string"
    at = f" in row {row}" if row >= 0 else ""
    raise DataValidationError(f"{where}: feature {f.name!r} is {_short(v)}{at}; expected {expected}")


def _is_null(v: Any) -> bool:
    import pandas as pd

    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, (float, np.floating)) and v != v)


def _codes(f: FeaturePrep, raw: Any, where: str) -> tuple[np.ndarray, int]:
    """The codes of one categorical column and how many values were outside the vocabulary.

    A Series whose values are all of the feature's type (or a pandas categorical) is looked up in
    C; anything else (request columns, mixed object columns) value by value.
    """
    import pandas as pd

    if isinstance(raw, pd.Series) and (isinstance(raw.dtype, pd.CategoricalDtype) or _uniform(f, raw)):
        nulls = raw.isna().to_numpy()
        if isinstance(raw.dtype, pd.CategoricalDtype):
            per_category, _ = _codes(f, raw.cat.categories.tolist(), where)
            codes = np.append(per_category, f.missing_code)[raw.cat.codes.to_numpy()]  # code -1: null
        else:
            index = pd.Index(list(f.vocabulary), dtype=object)
            codes = index.get_indexer(raw.to_numpy(dtype=object)).astype(np.int64)
        outside = (codes < 0) | ((codes == f.unknown_code) & ~nulls)
        codes[codes < 0] = f.unknown_code
    else:
        values = raw.tolist() if hasattr(raw, "tolist") else list(raw)
        lookup = f.lookup
        codes = np.empty(len(values), dtype=np.int64)
        nulls = np.zeros(len(values), dtype=bool)
        outside = np.zeros(len(values), dtype=bool)
        for i, v in enumerate(values):
            if _is_null(v):
                nulls[i] = True
                continue
            code = lookup.get(_key(f, v, where, i))
            if code is None:
                outside[i] = True
                code = f.unknown_code
            codes[i] = code
    outside &= ~nulls
    if nulls.any():
        if not f.nullable:
            row = int(np.flatnonzero(nulls)[0])
            raise DataValidationError(
                f"{where}: feature {f.name!r} is null in row {row}; expected a value "
                "(the model was trained without nulls in it)"
            )
        codes[nulls] = f.missing_code
    return codes, int(outside.sum())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
