"""``ShipyardModel``: a ``kserve.Model`` that serves any Shipyard Model artifact.

V1 (``{"instances": [...]}``, rows as lists or as records keyed by column name) and V2 / Open
Inference Protocol (one ``[rows, features]`` tensor, or one ``[rows]`` tensor per feature column).
Classification answers labels and probabilities; regression answers values. Bad payloads raise
``kserve.errors.InvalidInput`` (HTTP 400) with a message that names what was wrong.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import numpy as np
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from serving import codec
from serving.formats import LoadedModel, load_model
from shipyard.errors import DataValidationError

#: V2 input datatypes a numeric model accepts.
NUMERIC_DATATYPES = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "BOOL",
}
MATRIX_INPUT = "input"


class ShipyardModel(Model):
    """Serves the Shipyard Model artifact in ``model_dir`` under ``name``."""

    def __init__(self, name: str, model_dir: str | os.PathLike[str]):
        super().__init__(name)
        self.model_dir = str(model_dir)
        self.loaded: LoadedModel | None = None

    def load(self) -> bool:
        """Verifies and loads the artifact; raises ShipyardError subclasses on a bad artifact."""
        self.loaded = load_model(self.model_dir)
        self.ready = True
        return self.ready

    @property
    def _model(self) -> LoadedModel:
        if self.loaded is None:  # pragma: no cover - kserve only routes to ready models
            raise InvalidInput(f"model {self.name} is not loaded")
        return self.loaded

    def get_input_types(self) -> list[dict[str, Any]]:
        """V2 metadata: the feature matrix input."""
        n = len(self._model.manifest.input_schema)
        return [{"name": MATRIX_INPUT, "datatype": "FP32", "shape": [-1, n]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        """V2 metadata: label and probabilities, or the predicted value."""
        if self._model.is_classifier:
            k = len(self._model.manifest.label_names)
            return [
                {"name": "label", "datatype": _label_datatype(self._model.manifest.label_names), "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]},
            ]
        return [{"name": "prediction", "datatype": "FP32", "shape": [-1]}]

    def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> dict | InferResponse:
        """Answers a V1 dict or a V2 InferRequest."""
        try:
            if isinstance(payload, InferRequest):
                return self._predict_v2(payload)
            return self._predict_v1(payload)
        except DataValidationError as exc:
            raise InvalidInput(str(exc)) from exc

    def _predict_v1(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict) or "instances" not in payload:
            raise InvalidInput('V1 request: expected a JSON object with "instances"')
        x = codec.from_instances(payload["instances"], self._model.manifest.feature_names)
        scores = self._model.scores(x)
        if self._model.is_classifier:
            return {"predictions": self._model.labels(scores), "probabilities": scores.round(6).tolist()}
        return {"predictions": scores.tolist()}

    def _predict_v2(self, request: InferRequest) -> InferResponse:
        x = self._v2_matrix(request)
        scores = self._model.scores(x)
        n = len(x)
        if self._model.is_classifier:
            labels = self._model.labels(scores)
            dtype = _label_datatype(self._model.manifest.label_names)
            outputs = [
                InferOutput("label", [n], dtype, [str(v) for v in labels] if dtype == "BYTES" else labels),
                InferOutput("probabilities", list(scores.shape), "FP32", scores.astype(np.float32).ravel().tolist()),
            ]
        else:
            outputs = [InferOutput("prediction", [n], "FP32", scores.astype(np.float32).tolist())]
        return InferResponse(request.id or str(uuid.uuid4()), self.name, outputs)

    def _v2_matrix(self, request: InferRequest) -> np.ndarray:
        features = self._model.manifest.feature_names
        if not request.inputs:
            raise InvalidInput('V2 request: "inputs" is empty')
        for inp in request.inputs:
            if inp.datatype not in NUMERIC_DATATYPES:
                raise InvalidInput(f"V2 input {inp.name!r}: datatype {inp.datatype} is not numeric; expected FP32")
        names = [inp.name for inp in request.inputs]
        if len(request.inputs) == 1 and names[0] not in features:
            return codec.check_matrix(_as_numpy(request.inputs[0]), features, f"V2 input {names[0]!r}")
        unknown = sorted(set(names) - set(features))
        missing = [f for f in features if f not in names]
        if unknown or missing:
            raise InvalidInput(
                f"V2 request: expected one input {MATRIX_INPUT!r} of shape [rows, {len(features)}] or one input per "
                f"feature; unknown input(s) {unknown}, missing feature(s) {missing[:5]}"
            )
        by_name = {inp.name: _as_numpy(inp).reshape(-1) for inp in request.inputs}
        lengths = {len(v) for v in by_name.values()}
        if len(lengths) != 1:
            raise InvalidInput(f"V2 request: per-feature inputs have different lengths {sorted(lengths)}")
        return codec.check_matrix(np.column_stack([by_name[f] for f in features]), features, "V2 inputs")


def _as_numpy(inp: Any) -> np.ndarray:
    try:
        return inp.as_numpy()
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"V2 input {inp.name!r}: data does not match shape {inp.shape} ({exc})") from exc


def _label_datatype(label_names: tuple[Any, ...]) -> str:
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in label_names):
        return "INT64"
    return "BYTES"
