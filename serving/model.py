"""One ``kserve.Model`` subclass per Shipyard model format, chosen from ``model.json``.

:class:`SkopsModel` (scikit-learn via skops), :class:`TorchScriptModel`, :class:`OnnxModel`, and
:class:`KerasModel` / :class:`TFLiteModel` (behind the ``tf`` extra) share the protocol handling of
:class:`ShipyardModel`; :func:`model_for` picks the class for an artifact. V1
(``{"instances": [...]}``, rows as lists or as records keyed by column name) and V2 / Open
Inference Protocol (one ``[rows, features]`` tensor, or one ``[rows]`` tensor per feature column).
Classification answers labels and probabilities; regression answers values.

Layered as KServe is: :mod:`serving.protocol` decodes a request into a typed batch and encodes
the answer; the model applies its fitted preprocessing (raw rows: strings, nulls, categories) and
scores; errors are the client's (``kserve.errors.InvalidInput``, HTTP 400, with a message that
names the feature and the row) or the model's (``kserve.errors.InferenceError``, HTTP 500: an
output that is not finite). An all-numeric model without preprocessing keeps its fast paths
(one plain row in Python floats, plain float32 tensors without per-feature decoding).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
import uuid
from array import array
from typing import Any, ClassVar

import numpy as np
from kserve import Model
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from serving import codec, protocol
from serving.batching import AdaptiveBatcher
from serving.config import ServeConfig
from serving.formats import LoadedModel, load_model
from serving.observe import ModelStats, register_payload_logger, register_stats
from shipyard.artifacts import read_model_manifest
from shipyard.errors import ArtifactError, DataValidationError


@dataclasses.dataclass(frozen=True, slots=True)
class Scored:
    """A model call's answers: ``scores`` (probabilities ``[rows, classes]`` or values ``[rows]``),
    ``classes`` (each row's argmax; None for regression) and ``values`` (``scores`` rounded to
    float32, as Python lists: one list per row of probabilities). Slicing gives one request of a
    batch its rows of all three, with no numpy call per request but the slice."""

    scores: np.ndarray
    classes: list[int] | None
    values: list[Any]

    def __getitem__(self, rows: slice) -> Scored:
        return Scored(self.scores[rows], None if self.classes is None else self.classes[rows], self.values[rows])


class ShipyardModel(Model):
    """Serves the Shipyard Model artifact in ``model_dir`` under ``name``: the protocol handling.

    Subclasses name the ``format`` they load; ``load`` refuses an artifact of another format.
    Predictions go through an :class:`~serving.batching.AdaptiveBatcher` when the config turns
    batching on for the format, and are summarized for ``/metrics`` and, when a payload logger is
    given, written to it.
    """

    format: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        model_dir: str | os.PathLike[str],
        config: ServeConfig | None = None,
        payload_logger: Any = None,
    ):
        super().__init__(name)
        self.model_dir = str(model_dir)
        self.config = config or ServeConfig()
        self.payload_logger = payload_logger
        self.loaded: LoadedModel | None = None
        self.batcher: AdaptiveBatcher | None = None
        self.stats: ModelStats | None = None
        self.decoder: protocol.Decoder | None = None
        self._features: list[str] = []
        self._feature_set: frozenset[str] = frozenset()
        self._score_row: Any = None
        self._label_names: list[Any] = []
        self._label_dtype = "INT64"

    def load(self) -> bool:
        """Verifies and loads the artifact; raises ShipyardError subclasses on a bad artifact."""
        loaded = load_model(self.model_dir)
        if self.format and loaded.manifest.format != self.format:
            raise ArtifactError(
                f"{self.model_dir}: {type(self).__name__} serves {self.format}, "
                f"the artifact is {loaded.manifest.format}"
            )
        # One call before the first request: scikit-learn's tree models, ONNX Runtime and TorchScript
        # pay lazy set-up (thread pools, graph optimization) on their first call, hundreds of ms.
        # An all-zeros row is valid input after preprocessing (code 0 is the first category).
        loaded.scores(np.zeros((1, loaded.preprocessing.width), dtype=np.float32))
        self.loaded = loaded
        self.decoder = protocol.Decoder(loaded.preprocessing, loaded.manifest.input_schema)
        self._features = self.decoder.features  # computed once, not per request
        self._feature_set = self.decoder.feature_set
        self._label_names = list(loaded.manifest.label_names)
        self._label_dtype = protocol.label_datatype(loaded.manifest.label_names)
        labels = list(loaded.manifest.label_names) if loaded.is_classifier else []
        # the summaries are of what the model takes: the raw features, or the encoded columns
        self.stats = ModelStats(
            self.name, loaded.preprocessing.output_names, labels, categorical=self.decoder.categorical
        )
        register_stats(self.stats)
        if self.payload_logger is not None:
            register_payload_logger(self.name, self.payload_logger)
        if self.config.batching_for(loaded.manifest.format):
            self.batcher = AdaptiveBatcher(
                self._scored, self.config.max_batch_size, self.config.max_batch_wait_ms / 1000, self._on_batch
            )
        # One plain row is scored in Python floats when the model offers it (LoadedModel.score_row);
        # not with batching (the batcher wants arrays) or payload logging (it logs arrays).
        unbatched_unlogged = self.batcher is None and self.payload_logger is None
        self._score_row = loaded.score_row if unbatched_unlogged else None
        self.ready = True
        return self.ready

    def stop(self) -> None:
        """Releases the batching thread (KServe calls this when the model is unloaded)."""
        if self.batcher is not None:
            self.batcher.close()
        self.ready = False

    @property
    def _model(self) -> LoadedModel:
        if self.loaded is None:  # pragma: no cover - kserve only routes to ready models
            raise InvalidInput(f"model {self.name} is not loaded")
        return self.loaded

    @property
    def _decoder(self) -> protocol.Decoder:
        if self.decoder is None:  # pragma: no cover - kserve only routes to ready models
            raise InvalidInput(f"model {self.name} is not loaded")
        return self.decoder

    def get_input_types(self) -> list[dict[str, Any]]:
        """V2 metadata: one named, typed input per feature (:meth:`serving.protocol.Decoder.input_types`):
        ``BYTES`` for a categorical feature (``BOOL``/``INT64`` for a boolean/integer one), the input
        schema's numeric datatype for a numeric one.

        For an all-numeric model one ``[rows, features]`` tensor (any name, e.g. ``input``) is accepted as well.
        """
        return self._decoder.input_types()

    def get_output_types(self) -> list[dict[str, Any]]:
        """V2 metadata: label and probabilities, or the predicted value."""
        model = self._model
        return protocol.output_types(list(model.manifest.label_names) if model.is_classifier else None)

    async def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        """Answers a V1 dict or a V2 InferRequest."""
        if isinstance(payload, InferRequest):
            decoder = self._decoder
            x, scored, labels = await self._answer(lambda: decoder.v2(payload.inputs), payload.id, "v2")
            outputs = [InferOutput(*o) for o in self._v2_outputs(scored, labels)]
            return InferResponse(payload.id or _response_id(), self.name, outputs)
        row = codec.plain_v1_row(payload, len(self._features)) if self._score_row is not None else None
        if row is not None:
            return self._v1_row(row)
        decoder = self._decoder
        x, scored, labels = await self._answer(lambda: decoder.v1(payload), None, "v1")
        return protocol.v1_answer(scored.scores, labels)

    async def infer_v2(self, request_id: str | None, inputs: list[Any]) -> dict[str, Any]:
        """A V2 answer as the JSON dict KServe's ``InferResponse.to_rest`` gives, for the direct route.

        Args:
            request_id: The request's ``id``, echoed (one is made up when None).
            inputs: Tensors with ``name``, ``datatype``, ``shape``, ``data`` (the JSON list) and
                ``as_numpy()`` (see :class:`serving.fastpath.JsonTensor`), checked exactly as an
                InferRequest's are.
        """
        plain = codec.plain_v2_rows(inputs[0], self._feature_set) if len(inputs) == 1 else None
        if plain is not None and plain[1] == 1 and self._score_row is not None:
            outputs = self._v2_row(plain[0])
        else:
            if plain is not None and self._decoder.identity:  # checked already: one array over the float32 values
                values, rows = plain
                batch = lambda: protocol.Batch(  # noqa: E731
                    rows, matrix=np.frombuffer(values, dtype=np.float32).reshape(rows, -1), where="V2 input"
                )
            else:
                decoder = self._decoder
                batch = lambda: decoder.v2(inputs)  # noqa: E731
            x, scored, labels = await self._answer(batch, request_id, "v2")
            outputs = self._v2_outputs(scored, labels)
        return protocol.v2_answer(request_id or _response_id(), self.name, outputs)

    def _score_one(self, row: array) -> tuple[list[float], list[float], int | None]:
        """``(scores, scores rounded to float32, class index or None)`` of one plain row scored in
        Python floats (``LoadedModel.score_row``), counted on /metrics as one model call of one row.
        Same values as the numpy path up to float64 rounding (tested)."""
        scores = self._score_row(row)
        rounded = array("f", scores).tolist()
        if not math.isfinite(sum(rounded)):
            raise InferenceError(_not_finite(np.array([rounded], dtype=np.float32)))
        best = max(range(len(scores)), key=scores.__getitem__) if self._model.is_classifier else None
        if self.stats is not None:  # (the first of equal maxima, as argmax)
            self.stats.observe_row(row, best)
        return scores, rounded, best

    def _v2_row(self, row: array) -> list[tuple[str, list[int], str, Any]]:
        """The V2 outputs for one plain row (:meth:`_score_one`)."""
        scores, rounded, best = self._score_one(row)
        if best is None:
            return protocol.v2_outputs(None, rounded, [1], self._label_dtype)
        return protocol.v2_outputs([self._label_names[best]], rounded, [1, len(scores)], self._label_dtype)

    def _v1_row(self, row: array) -> dict[str, Any]:
        """The V1 answer for one plain row (:meth:`_score_one`), as :func:`serving.protocol.v1_answer` gives it."""
        scores, _, best = self._score_one(row)
        return protocol.v1_row_answer(scores, None if best is None else self._label_names[best])

    async def _answer(
        self, decode: Any, request_id: str | None, protocol_name: str
    ) -> tuple[np.ndarray, Scored, list[Any] | None]:
        """Decodes (``decode()`` gives a :class:`serving.protocol.Batch`), preprocesses, scores,
        labels, observes and logs one request.

        Raises:
            InvalidInput: The client's fault: a payload that does not decode or fit the model's features.
            InferenceError: The model's: an output that is not finite in float32.
        """
        try:
            batch = decode()
            x = self._encode(batch)
        except DataValidationError as exc:
            raise InvalidInput(str(exc)) from exc
        if self.batcher is not None:
            scored = await self.batcher.submit(x)
        else:  # scored right here: no coroutine, task or thread in between
            scored = self._scored(x)
        labels = None if scored.classes is None else [self._label_names[i] for i in scored.classes]
        if self.stats is not None:  # unbatched, the model call is counted with the request
            self.stats.observe(x, scored.classes, scored_alone=self.batcher is None)
        if self.payload_logger is not None:
            self._log_payload(request_id, batch.raw_rows(self._features), scored.scores, labels, protocol_name)
        return x, scored, labels

    def _encode(self, batch: protocol.Batch) -> np.ndarray:
        """The model's input matrix of a batch: the checked matrix as it is, or the raw columns
        through the fitted preprocessing (unseen categories counted per feature on /metrics)."""
        if batch.matrix is not None:
            return batch.matrix
        assert batch.columns is not None
        encoded = self._model.preprocessing.transform_columns(batch.columns, batch.rows, batch.where)
        if encoded.unknown and self.stats is not None:
            self.stats.observe_unknown(encoded.unknown)
        return encoded.x

    def _scored(self, x: np.ndarray) -> Scored:
        """One model call: the scores, and the class indices and float32 values every request
        needs, converted once per call rather than once per request of a batch."""
        scores = self._model.scores(x)
        rounded = scores.astype(np.float32)
        if not math.isfinite(rounded.sum(dtype=np.float64)):  # a batch that fails is retried request by request
            raise InferenceError(_not_finite(rounded))
        classes = scores.argmax(axis=1).tolist() if self._model.is_classifier else None
        return Scored(scores, classes, rounded.tolist())

    def _on_batch(self, requests: int, rows: int) -> None:
        if self.stats is not None:
            self.stats.observe_batch(requests, rows)

    def _v2_outputs(self, scored: Scored, labels: list[Any] | None) -> list[tuple[str, list[int], str, Any]]:
        """``(name, shape, datatype, data)`` of each V2 output."""
        values = scored.values if scored.classes is None else list(itertools.chain.from_iterable(scored.values))
        return protocol.v2_outputs(labels, values, list(scored.scores.shape), self._label_dtype)

    def _log_payload(
        self, request_id: str | None, inputs: Any, scores: np.ndarray, labels: list[Any] | None, protocol_name: str
    ) -> None:
        """Logs one request: ``inputs`` are its rows as received (:meth:`serving.protocol.Batch.raw_rows`):
        the float32 matrix of an all-numeric model, raw values (strings, nulls) for one with preprocessing."""
        outputs: dict[str, Any] = {"predictions": labels if labels is not None else scores}
        if labels is not None:
            outputs["probabilities"] = scores
        self.payload_logger.log(
            {
                "ts": time.time(),
                "model": self.name,
                "protocol": protocol_name,
                "id": request_id,
                "features": self._features,
                "inputs": inputs,
                "outputs": outputs,
            }
        )


class SkopsModel(ShipyardModel):
    """scikit-learn, loaded with skops (only scikit-learn/numpy types trusted). Unbatched by default."""

    format = "sklearn-skops"


class TorchScriptModel(ShipyardModel):
    """A TorchScript module (``torch.jit.load``, never ``torch.load``). Batched by default."""

    format = "torchscript"


class OnnxModel(ShipyardModel):
    """An ONNX graph run by ONNX Runtime on the CPU. Batched by default."""

    format = "onnx"


class KerasModel(ShipyardModel):
    """A Keras ``.keras`` model (``safe_mode``), behind the ``tf`` extra."""

    format = "keras"


class TFLiteModel(ShipyardModel):
    """A TensorFlow Lite flatbuffer, behind the ``tf`` extra."""

    format = "tflite"


#: The model class of each format of :data:`shipyard.formats.FORMATS` (a test checks there is one for each).
MODEL_CLASSES: dict[str, type[ShipyardModel]] = {
    cls.format: cls for cls in (SkopsModel, TorchScriptModel, OnnxModel, KerasModel, TFLiteModel)
}


def model_for(
    name: str, model_dir: str | os.PathLike[str], config: ServeConfig | None = None, payload_logger: Any = None
) -> ShipyardModel:
    """The model class for the artifact's format (from its ``model.json``), not yet loaded.

    Raises:
        ArtifactError: No readable ``model.json``, or a format this runtime has no class for.
    """
    manifest = read_model_manifest(model_dir, verify=False)
    cls = MODEL_CLASSES.get(manifest.format)
    if cls is None:  # pragma: no cover - ModelManifest only admits the formats above
        raise ArtifactError(f"{model_dir}: no model class serves format {manifest.format!r}")
    return cls(name, model_dir, config, payload_logger)


_IDS = itertools.count(1)
_PROCESS_ID = uuid.uuid4().hex[:12]


def _response_id() -> str:
    """A unique id for a V2 response whose request had none (process id + counter: no syscall)."""
    return f"{_PROCESS_ID}-{next(_IDS)}"


def _not_finite(outputs: np.ndarray) -> str:
    """The error for model outputs that are NaN or past float32's range (finite inputs, so the
    input is far outside what the model was fitted on, or the model is broken)."""
    rows = outputs.reshape(len(outputs), -1)
    row = int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
    return (
        f"the model's output for row {row} is {rows[row].tolist()}, not finite in float32; "
        "is the input far outside the range the model was trained on?"
    )
