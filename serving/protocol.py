"""The protocol seam: a V1 or V2 request decoded into a typed :class:`Batch`, and answers encoded.

:class:`Decoder` is the one place a request's payload becomes rows:

- **V1** ``{"instances": [...]}``: rows as records ``{"plan": "pro", "tenure": null}`` or as lists
  in the model's feature order (one flat list is one row).
- **V2** (Open Inference Protocol): one ``[rows, features]`` numeric tensor (any name that is not
  a feature's; all-numeric models), or one ``[rows]`` tensor per feature, named as the feature:
  ``BYTES`` for a categorical feature (``BOOL`` / ``INT64`` for a boolean / integer one), the
  numeric datatype for a numeric one; ``null`` where the feature is nullable.

For a model whose preprocessing is the identity (non-nullable numeric features, no scaling) the
batch holds today's checked float32 matrix (:func:`serving.codec.check_matrix`), so the fast
paths and their errors are unchanged. For every other model it holds the raw values per feature,
and the model applies :meth:`serving.preprocess.Preprocessing.transform_columns`, which checks
them: a string where a number is expected, a null where none is allowed, a missing feature are
errors naming the feature and the row. Decoding errors are :class:`DataValidationError`; the
model turns them into ``kserve.errors.InvalidInput`` (HTTP 400).

The encoding side (:func:`v1_answer`, :func:`v2_outputs`, :func:`v2_answer`) builds the JSON the
routes return: V1 ``predictions`` (labels or values) and ``probabilities``; V2 outputs ``label``
and ``probabilities`` (classification) or ``prediction`` (regression).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving import codec
from serving.preprocess import Preprocessing
from shipyard.artifacts import Column
from shipyard.errors import DataValidationError

#: The name the docs give the one ``[rows, features]`` V2 tensor (any non-feature name works).
MATRIX_INPUT = "input"
#: V2 input datatypes of numbers.
NUMERIC_DATATYPES = frozenset(codec.V2_NUMPY)
#: V2 datatype advertised for each numeric input-schema dtype (what a client should send).
V2_DATATYPE = {np.dtype(t).name: name for name, t in codec.V2_NUMPY.items()}
#: The V2 datatype of text.
BYTES = "BYTES"


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """One decoded request.

    Attributes:
        rows: How many rows it holds.
        matrix: The checked float32 ``[rows, features]`` matrix (identity preprocessing), else None.
        columns: ``{feature: values}``, each ``rows`` long, raw (strings, numbers, None) for a
            model with preprocessing, else None.
        where: How errors about it name the request (``instances``, ``V2 inputs``).
    """

    rows: int
    matrix: np.ndarray | None = None
    columns: Mapping[str, Any] | None = None
    where: str = "request"

    def raw_rows(self, features: Sequence[str]) -> Any:
        """The request's rows as received, one value per feature: the matrix, or lists of raw values
        (what the payload log records, and what a drift check compares)."""
        if self.matrix is not None:
            return self.matrix
        assert self.columns is not None
        columns = [_as_list(self.columns[f]) for f in features]
        return [list(row) for row in zip(*columns, strict=True)]


class Decoder:
    """Decodes requests for one model (its features and preprocessing).

    Args:
        preprocessing: The model's fitted preprocessing (``LoadedModel.preprocessing``).
        input_schema: The manifest's input columns (their dtypes give the V2 datatypes).
    """

    def __init__(self, preprocessing: Preprocessing, input_schema: Sequence[Column] = ()):
        self.preprocessing = preprocessing
        self.identity = preprocessing.identity
        self.features = preprocessing.feature_names
        self.feature_set = frozenset(self.features)
        dtypes = {c.name: c.dtype for c in input_schema}
        self._kinds = {f.name: f for f in preprocessing.features}
        self.categorical = [f.name for f in preprocessing.features if f.kind == "categorical"]
        self.datatypes = {f.name: _datatype(f, dtypes.get(f.name, f.dtype)) for f in preprocessing.features}

    # --- metadata -----------------------------------------------------------------------------

    def input_types(self) -> list[dict[str, Any]]:
        """V2 metadata: one named, typed ``[-1]`` input per feature, in the model's order."""
        return [{"name": n, "datatype": self.datatypes[n], "shape": [-1]} for n in self.features]

    # --- V1 -----------------------------------------------------------------------------------

    def v1(self, payload: Any) -> Batch:
        """Decodes a V1 body (``{"instances": [...]}``).

        Raises:
            DataValidationError: Not a V1 body, rows of the wrong kind or length, unknown or missing
                features; for identity models also anything that is not a finite float32 number.
        """
        if not isinstance(payload, dict) or "instances" not in payload:
            raise DataValidationError('V1 request: expected a JSON object with "instances"')
        instances = payload["instances"]
        where = "instances"
        if self.identity:
            x = codec.from_instances(instances, self.features, where)
            return Batch(len(x), matrix=x, where=where)
        if not isinstance(instances, list) or not instances:
            raise DataValidationError(f"{where}: expected a non-empty list of rows")
        records = [isinstance(r, Mapping) for r in instances]
        if all(records):
            return Batch(len(instances), columns=self._records(instances, where), where=where)
        if any(records):
            raise DataValidationError(f"{where}: mixes records (objects) and lists; use one kind")
        if not any(isinstance(r, list) for r in instances):
            instances = [instances]  # one flat row
        k = len(self.features)
        for i, row in enumerate(instances):
            if not isinstance(row, list) or len(row) != k:
                got = f"{len(row)} values" if isinstance(row, list) else codec.short(row)
                raise DataValidationError(
                    f"{where}[{i}]: expected a list of {k} values in the model's feature order "
                    f"({_names(self.features)}), got {got}"
                )
        columns = dict(zip(self.features, (list(c) for c in zip(*instances, strict=True)), strict=True))
        return Batch(len(instances), columns=columns, where=where)

    def _records(self, records: list[Mapping[str, Any]], where: str) -> dict[str, list[Any]]:
        expected = self.feature_set
        for i, rec in enumerate(records):
            if rec.keys() != expected:
                missing = [f for f in self.features if f not in rec]
                unknown = sorted(str(k) for k in rec if k not in expected)
                problems = [
                    f"missing feature(s) {missing}" if missing else "",
                    f"unknown feature(s) {codec.short(unknown[:5])}" if unknown else "",
                ]
                raise DataValidationError(f"{where}[{i}]: " + "; ".join(p for p in problems if p))
        return {f: [rec[f] for rec in records] for f in self.features}

    # --- V2 -----------------------------------------------------------------------------------

    def v2(self, inputs: Sequence[Any]) -> Batch:
        """Decodes V2 input tensors (KServe ``InferInput`` or :class:`serving.fastpath.JsonTensor`).

        Raises:
            DataValidationError: No inputs, a datatype the feature cannot take, data that does not
                match its shape, unknown or missing features, tensors of different lengths.
        """
        features = self.features
        if not inputs:
            raise DataValidationError('V2 request: "inputs" is empty')
        if self.identity:  # numbers only, checked before the names (as ever)
            for inp in inputs:
                _numeric_datatype(inp)
        if len(inputs) == 1 and inputs[0].name not in self.feature_set:
            return self._v2_matrix(inputs[0])
        names = [inp.name for inp in inputs]
        unknown = sorted(set(names) - self.feature_set)
        missing = [f for f in features if f not in names]
        if unknown or missing:
            raise DataValidationError(
                f"V2 request: expected one input {MATRIX_INPUT!r} of shape [rows, {len(features)}] or one input per "
                f"feature; unknown input(s) {codec.short(unknown[:5])}, missing feature(s) {missing[:5]}"
            )
        if self.identity:
            by_name = {inp.name: as_numpy(inp).reshape(-1) for inp in inputs}
            _same_lengths({n: len(v) for n, v in by_name.items()})
            x = codec.check_matrix(np.column_stack([by_name[f] for f in features]), features, "V2 inputs")
            return Batch(len(x), matrix=x, where="V2 inputs")
        columns = {inp.name: self._feature_values(inp) for inp in inputs}
        rows = _same_lengths({n: len(v) for n, v in columns.items()})
        return Batch(rows, columns=columns, where="V2 inputs")

    def _v2_matrix(self, inp: Any) -> Batch:
        """One ``[rows, features]`` tensor: all-numeric models only."""
        where = f"V2 input {codec.short(inp.name)}"
        _numeric_datatype(inp)
        if self.categorical:
            raise DataValidationError(
                f"{where}: one [rows, features] tensor carries numbers only, and feature(s) "
                f"{self.categorical[:5]} are categorical; send one tensor per feature (BYTES for categorical)"
            )
        if self.identity:
            x = codec.check_matrix(as_numpy(inp), self.features, lambda: where)
            return Batch(len(x), matrix=x, where=where)
        x = as_numpy(inp)
        k = len(self.features)
        if x.ndim == 1 and x.size == k:
            x = x.reshape(1, k)
        if x.ndim != 2 or x.shape[1] != k:
            raise DataValidationError(f"{where}: expected a 2-D array [rows, {k}], got shape {list(x.shape)}")
        return Batch(len(x), columns={f: x[:, j] for j, f in enumerate(self.features)}, where=where)

    def _feature_values(self, inp: Any) -> Any:
        """One feature's tensor as a flat list (or array) of raw values; types are checked by the
        preprocessing, which names the row."""
        f = self._kinds[inp.name]
        where = f"V2 input {codec.short(inp.name)}"
        if f.kind == "numeric" and inp.datatype not in NUMERIC_DATATYPES:
            raise DataValidationError(
                f"{where}: datatype {inp.datatype}, but feature {f.name!r} is numeric; "
                f"expected {self.datatypes[f.name]}"
            )
        if f.kind == "categorical" and inp.datatype not in NUMERIC_DATATYPES and inp.datatype != BYTES:
            raise DataValidationError(
                f"{where}: datatype {inp.datatype} is not a V2 datatype this feature takes; "
                f"expected {self.datatypes[f.name]}"
            )
        shape = list(inp.shape)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
            raise DataValidationError(f"{where}: expected shape [rows] (or [rows, 1]), got {shape}")
        data = getattr(inp, "data", None)
        if isinstance(data, list) and not any(isinstance(v, list) for v in data):
            values: Any = data
        else:  # nested JSON lists, or binary tensor data
            values = as_numpy(inp).reshape(-1)
        if len(values) != shape[0]:
            raise DataValidationError(f"{where}: {len(values)} values do not match shape {shape}")
        if inp.datatype == BYTES:
            values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
        return values


# --- encoding answers ---------------------------------------------------------------------------


def label_datatype(label_names: Sequence[Any]) -> str:
    """The V2 datatype of a classifier's ``label`` output: INT64 for integer labels, else BYTES."""
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in label_names):
        return "INT64"
    return BYTES


def output_types(label_names: Sequence[Any] | None) -> list[dict[str, Any]]:
    """V2 metadata of the outputs: label and probabilities (classification), or prediction."""
    if label_names is not None:
        return [
            {"name": "label", "datatype": label_datatype(label_names), "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(label_names)]},
        ]
    return [{"name": "prediction", "datatype": "FP32", "shape": [-1]}]


def v1_answer(scores: np.ndarray, labels: list[Any] | None) -> dict[str, Any]:
    """The V1 answer: ``predictions`` (labels) and ``probabilities`` (6 decimals), or values."""
    if labels is not None:
        return {"predictions": labels, "probabilities": scores.round(6).tolist()}
    return {"predictions": scores.tolist()}


def v1_row_answer(scores: list[float], label: Any) -> dict[str, Any]:
    """:func:`v1_answer` of one row scored in Python floats (``label`` None: regression)."""
    if label is None:
        return {"predictions": scores}
    # round(p * 1e6) / 1e6 is what numpy's round(6) computes (half to even on the scaled value)
    return {"predictions": [label], "probabilities": [[round(p * 1e6) / 1e6 for p in scores]]}


def v2_outputs(
    labels: list[Any] | None, values: list[float], shape: list[int], label_dtype: str
) -> list[tuple[str, list[int], str, Any]]:
    """``(name, shape, datatype, data)`` of each V2 output: labels (None for regression) and the
    float32-rounded probabilities or predictions, flat, of ``shape``."""
    if labels is not None:
        return [
            ("label", [len(labels)], label_dtype, [str(v) for v in labels] if label_dtype == BYTES else labels),
            ("probabilities", shape, "FP32", values),
        ]
    return [("prediction", shape, "FP32", values)]


def v2_answer(request_id: str, model_name: str, outputs: list[tuple[str, list[int], str, Any]]) -> dict[str, Any]:
    """The V2 JSON answer, as KServe's ``InferResponse.to_rest`` gives it."""
    return {
        "id": request_id,
        "model_name": model_name,
        "model_version": None,
        "outputs": [{"name": n, "shape": shape, "datatype": d, "data": data} for n, shape, d, data in outputs],
    }


# --- helpers ------------------------------------------------------------------------------------


def as_numpy(inp: Any) -> np.ndarray:
    """A tensor's data as an array of its datatype and shape.

    Raises:
        DataValidationError: The data does not fit the shape or the datatype (1000 as INT8).
    """
    try:
        return inp.as_numpy()
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataValidationError(
            f"V2 input {codec.short(inp.name)}: data does not match shape {inp.shape} and datatype "
            f"{inp.datatype} ({codec.short(exc)})"
        ) from exc


def _numeric_datatype(inp: Any) -> None:
    if inp.datatype not in NUMERIC_DATATYPES:
        raise DataValidationError(f"V2 input {inp.name!r}: datatype {inp.datatype} is not numeric; expected FP32")


def _same_lengths(lengths: dict[str, int]) -> int:
    distinct = set(lengths.values())
    if len(distinct) != 1:
        raise DataValidationError(f"V2 request: per-feature inputs have different lengths {sorted(distinct)}")
    return distinct.pop()


def _datatype(f: Any, dtype: str) -> str:
    """The V2 datatype a client sends for a feature."""
    if f.kind == "categorical":
        return "BOOL" if f.is_bool else "INT64" if f.is_integer else BYTES
    return V2_DATATYPE.get(dtype.lower(), "FP32")


def _as_list(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _names(features: Sequence[str]) -> str:
    return ", ".join(features[:5]) + (", ..." if len(features) > 5 else "")
