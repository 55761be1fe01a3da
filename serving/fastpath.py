"""The inference routes answered directly, without FastAPI's request models.

KServe's REST routes parse every V2 body into pydantic models, run the dataplane and encode the
answer through FastAPI: about 0.8 ms of CPU per request on this machine, several times what a
small model costs. For a JSON ``POST /v1/models/NAME:predict`` or ``/v2/models/NAME/infer`` to a
model this server holds, :class:`~serving.guard.ServingGuard` calls :func:`infer` instead: the
body is parsed with orjson; a V1 body goes to the same ``Model.predict`` KServe's route calls, a
V2 body to ``ShipyardModel.infer_v2`` — the same checks, scoring and outputs as ``predict`` on an
``InferRequest``, without building KServe's request and response objects — and the answer is
encoded with orjson. A body without a ``Content-Type`` is JSON, as KServe's routes read it.
Anything else — CloudEvents, V2 binary tensors, an unknown model, a model not ready — falls
through to KServe's routes, so the protocol surface stays KServe's; a content type that neither
decodes (``application/x-www-form-urlencoded``, ``text/plain``, ...) gets the guard's 415.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import orjson
from kserve.errors import InferenceError, InvalidInput

from serving import codec

#: Media types answered here: JSON, and an empty ``Content-Type`` (an absent one is JSON too).
JSON_TYPES = (b"application/json", b"")
TENSOR_FIELDS_ORDER = ("name", "shape", "datatype", "data")
TENSOR_FIELDS = frozenset(TENSOR_FIELDS_ORDER)
INT_TYPE = frozenset({int})


@dataclasses.dataclass(frozen=True, slots=True)
class JsonTensor:
    """A V2 input tensor from a JSON body: what ``InferInput`` offers the model, without its cost."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]

    def as_numpy(self) -> np.ndarray:
        """The data as an array of the tensor's datatype and shape (ValueError/TypeError/OverflowError
        when they do not fit)."""
        dtype = codec.V2_NUMPY.get(self.datatype)  # FP16 and BYTES are refused before decoding
        if dtype is None:
            raise TypeError(f"datatype {self.datatype} cannot be decoded from JSON")
        return np.array(self.data, dtype=dtype).reshape(self.shape)


def v2_inputs(payload: Any) -> tuple[str | None, list[JsonTensor]]:
    """``(id, tensors)`` of a parsed V2 JSON body, with the messages KServe's route gives.

    Raises:
        InvalidInput: The body is not a V2 inference request.
    """
    if not isinstance(payload, dict):
        raise InvalidInput("V2 request: body: Input should be a JSON object")
    inputs = payload.get("inputs")
    if inputs is None:
        raise InvalidInput("V2 request: inputs: Field required")
    if not isinstance(inputs, list):
        raise InvalidInput("V2 request: inputs: Input should be a valid list")
    tensors = []
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidInput(f"V2 request: inputs.{i}: Input should be an object")
        if not TENSOR_FIELDS <= tensor.keys():
            missing = [k for k in TENSOR_FIELDS_ORDER if k not in tensor]
            raise InvalidInput(f"V2 request: inputs.{i}: missing field(s) {missing}")
        name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InvalidInput(f"V2 request: inputs.{i}: name and datatype must be strings")
        if not isinstance(shape, list) or not set(map(type, shape)) <= INT_TYPE:  # bool is not an int here
            raise InvalidInput(f"V2 request: inputs.{i}.shape: Input should be a list of integers")
        if not isinstance(tensor["data"], list):
            raise InvalidInput(f"V2 request: inputs.{i}.data: Input should be a valid list")
        if datatype == "FP16":
            raise InvalidInput(f"V2 request: inputs.{i}: FP16 data cannot be sent as JSON; use FP32")
        parameters = tensor.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidInput(f"V2 request: inputs.{i}.parameters: Input should be an object")
        tensors.append(JsonTensor(name, shape, datatype, tensor["data"]))
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput("V2 request: parameters: Input should be an object")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("V2 request: id: Input should be a valid string")
    return request_id, tensors


async def infer(model: Any, route: str, body: bytes) -> tuple[int, bytes]:
    """Answers one inference request: ``(status, JSON body)``; 400 for a bad payload, 500 for a
    model fault (``InferenceError``)."""
    try:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"the body is not valid JSON ({exc})") from exc
        if route == "v2_infer":
            content = await model.infer_v2(*v2_inputs(payload))
        else:
            content = await model.predict(payload, None)
    except InvalidInput as exc:  # the client's fault
        return 400, orjson.dumps({"error": str(exc)})
    except InferenceError as exc:  # the model's (an output that is not finite), as KServe's handler answers it
        return 500, orjson.dumps({"error": str(exc)})
    return 200, orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
