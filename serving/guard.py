"""The HTTP guard in front of KServe's routes: request metrics, the body limit, draining, direct inference.

:class:`ServingGuard` is pure ASGI and sits outermost (serving.server puts it in front of FastAPI's
own middleware). It counts and times every request by route template
(:data:`serving.observe.REQUEST_STATS`), refuses bodies over the limit with 413, answers
readiness with 503 while the server drains, and hands JSON inference requests to
:mod:`serving.fastpath`.

A request without a ``Content-Type`` is JSON, as KServe's own routes read it. A content type that
neither this guard nor KServe decodes as an inference request (``application/x-www-form-urlencoded``,
what ``curl -d`` sends unless told otherwise; ``text/plain``, ...) gets a 415 that names it: KServe
would hand the raw bytes to the model, which cannot read them, and answer that the body is not an
inference request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

from serving import fastpath
from serving.observe import REQUEST_STATS
from shipyard.errors import ConfigError

logger = logging.getLogger(__name__)

#: Route templates for the ``route`` label (bounded cardinality; the raw path is never a label).
ROUTES = [
    ("v1_predict", re.compile(r"^/v1/models/[^/]+:predict$")),
    ("v1_model", re.compile(r"^/v1/models/[^/:]+$")),
    ("v2_infer", re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/infer$")),
    ("v2_model_ready", re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?/ready$")),
    ("v2_model_metadata", re.compile(r"^/v2/models/[^/]+(/versions/[^/]+)?$")),
    ("v2_health_live", re.compile(r"^/v2/health/live$")),
    ("v2_health_ready", re.compile(r"^/v2/health/ready$")),
    ("v2_server_metadata", re.compile(r"^/v2/?$")),
    ("metrics", re.compile(r"^/metrics$")),
    ("root", re.compile(r"^/$")),
]
#: Inference routes the guard may answer directly (serving.fastpath): route → model-name pattern.
DIRECT_ROUTES = {
    "v1_predict": re.compile(r"^/v1/models/([^/]+):predict$"),
    "v2_infer": re.compile(r"^/v2/models/([^/]+)/infer$"),
}
#: Content types KServe's routes decode themselves (its dataplane's JSON_HEADERS, CloudEvents JSON):
#: passed through. Any other non-JSON type on an inference route of a model held here gets 415.
KSERVE_TYPES = frozenset({b"application/cloudevents+json", b"application/ld+json", b"application/octet-stream"})
#: Routes that answer 503 while the server drains (readiness; liveness stays 200).
READINESS_ROUTES = frozenset({"v2_health_ready", "v2_model_ready", "v1_model"})


def route_of(path: str) -> str:
    """The route template a path belongs to, or ``other``."""
    return _route_and_model(path)[0]


@functools.lru_cache(maxsize=4096)
def _route_and_model(path: str) -> tuple[str, str | None]:
    """``(route template, model name)``; the name only for routes the guard may answer directly
    (cached: a few paths recur)."""
    for name, pattern in ROUTES:
        if pattern.match(path):
            direct = DIRECT_ROUTES.get(name)
            match = direct.match(path) if direct is not None else None
            return name, match.group(1) if match else None
    return "other", None


#: The error an injected failure answers with (HTTP 500).
INJECTED_FAULT = "injected fault (--fault-error-rate)"
#: The longest injected delay (--fault-delay-ms), one minute.
MAX_FAULT_DELAY_MS = 60_000.0


@dataclasses.dataclass(frozen=True)
class Faults:
    """Faults injected into inference requests (``v1_predict``, ``v2_infer``) for rollout drills.

    Deterministic, not random: the n-th inference request (counted from 1) fails when
    ``floor(n * error_rate) > floor((n - 1) * error_rate)``, so any window of requests fails at the
    configured rate to within one request.

    Attributes:
        error_rate: Share of inference requests answered with HTTP 500 (0..1).
        delay_ms: Every inference request waits this long before it is handled (0..60000).
    """

    error_rate: float = 0.0
    delay_ms: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.error_rate, (int, float)) and 0.0 <= self.error_rate <= 1.0):
            raise ConfigError(f"serve: --fault-error-rate must be in [0, 1], got {self.error_rate!r}")
        if not (isinstance(self.delay_ms, (int, float)) and 0.0 <= self.delay_ms <= MAX_FAULT_DELAY_MS):
            raise ConfigError(f"serve: --fault-delay-ms must be in [0, {MAX_FAULT_DELAY_MS:g}], got {self.delay_ms!r}")

    @property
    def active(self) -> bool:
        """Whether anything is injected at all (when not, the server is given no Faults)."""
        return self.error_rate > 0 or self.delay_ms > 0


def fails(n: int, error_rate: float) -> bool:
    """Whether the ``n``-th inference request (from 1) is answered with an injected 500."""
    return math.floor(n * error_rate) > math.floor((n - 1) * error_rate)


class ServerState:
    """Shared between the guard and the shutdown: requests in flight, and whether we drain."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False


ASGIApp = Callable[..., Any]


class ServingGuard:
    """Pure ASGI middleware in front of KServe's routes.

    - Counts and times every request (``shipyard_requests_total``, latency histogram).
    - Refuses bodies over ``max_body_bytes`` with 413 and a JSON error, by ``Content-Length`` or,
      for chunked uploads, while reading (the body is then buffered and replayed).
    - While draining (after SIGTERM), readiness routes answer 503 so load balancers stop sending
      traffic; everything else is still served until the server stops.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        state: ServerState,
        models: dict[str, Any] | None = None,
        faults: Faults | None = None,
    ):
        self.app, self.max_body_bytes, self.state = app, max_body_bytes, state
        self.models = models or {}
        self.faults = faults if faults is not None and faults.active else None  # None: no per-request cost
        self.inference_requests = 0  # counted only while faults are injected

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, model_name = _route_and_model(scope["path"])
        start = time.perf_counter()
        status = 500
        self.state.in_flight += 1
        try:
            if self.state.draining and route in READINESS_ROUTES:
                status = await _json_error(send, 503, "the server is shutting down")
                return
            if self.faults is not None and route in DIRECT_ROUTES and await self._inject(receive):
                status = await _json_error(send, 500, INJECTED_FAULT)
                return
            length, media, kserve_only = _read_headers(scope["headers"])
            if length is not None and length > self.max_body_bytes:
                status = await _json_error(send, 413, self._too_large(length))
                return
            model = self.models.get(model_name) if model_name is not None else None
            if model is not None and not (model.ready and scope["method"] == "POST"):
                model = None
            if model is not None and (kserve_only or (media is not None and media not in fastpath.JSON_TYPES)):
                if media is not None and not kserve_only and media not in KSERVE_TYPES:
                    status = await _json_error(send, 415, _unsupported_type(media))
                    return
                model = None  # CloudEvents, V2 binary tensors, ...: KServe's routes decode them
            if model is not None or (length is None and scope["method"] in ("POST", "PUT")):
                body = await _read_limited(receive, self.max_body_bytes)
                if body is None:
                    status = await _json_error(send, 413, self._too_large(None))
                    return
                if model is not None:
                    status = await self._answer_directly(model, route, body, send)
                    return
                receive = _replay(body)
            sent: list[int] = []

            async def send_and_record(message: dict) -> None:
                if message["type"] == "http.response.start":
                    sent.append(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_and_record)
            finally:
                status = sent[0] if sent else 500
        finally:
            self.state.in_flight -= 1
            REQUEST_STATS.observe(route, status, time.perf_counter() - start)

    async def _inject(self, receive: Callable) -> bool:
        """Waits the injected delay; True when this inference request is to fail (its body is then read
        and dropped, so the connection stays usable)."""
        assert self.faults is not None
        self.inference_requests += 1
        n = self.inference_requests
        if self.faults.delay_ms > 0:
            await asyncio.sleep(self.faults.delay_ms / 1000.0)
        if not fails(n, self.faults.error_rate):
            return False
        while (await receive()).get("more_body", False):
            pass
        return True

    async def _answer_directly(self, model: Any, route: str, body: bytes, send: Callable) -> int:
        """Answers an inference request (serving.fastpath); returns the status sent."""
        try:
            status, content = await fastpath.infer(model, route, body)
        except Exception as exc:  # a model failure: a JSON 500, never an empty body
            logger.exception("inference failed on %s", route)
            await _json_error(send, 500, f"inference failed: {exc.__class__.__name__}: {exc}")
            return 500
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        return status

    def _too_large(self, length: int | None) -> str:
        size = f"{length} bytes" if length is not None else "the body"
        return f"request body too large: {size} exceeds the limit of {self.max_body_bytes} bytes (max_body_bytes)"


def _read_headers(headers: Any) -> tuple[int | None, bytes | None, bool]:
    """``(Content-Length, media type, whether only KServe may decode the body)`` in one pass.

    The media type is the ``Content-Type`` without parameters, lower-cased; None when the header
    is absent (the body is then JSON, as KServe reads it). Only KServe decodes CloudEvents
    (``ce-*`` headers) and V2 binary tensors (``inference-header-content-length``).
    """
    length, media, kserve_only = None, None, False
    for key, value in headers:
        if key == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
        elif key == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
        elif key == b"inference-header-content-length" or key.startswith(b"ce-"):
            kserve_only = True
    return length, media, kserve_only


def _unsupported_type(media: bytes) -> str:
    shown = media[:80].decode("latin-1")
    hint = " (curl -d sends that type: add -H 'Content-Type: application/json')" if b"form-urlencoded" in media else ""
    return f"Content-Type {shown} is not an inference request; send JSON as application/json, or no Content-Type{hint}"


async def _read_limited(receive: Callable, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        if not message.get("more_body", False):
            return chunk if not chunks else b"".join((*chunks, chunk))  # one chunk: no copy
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(body: bytes) -> Callable:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # like a client that keeps the connection open
        return {"type": "http.disconnect"}  # pragma: no cover

    return receive


async def _json_error(send: Callable, status: int, message: str) -> int:
    """Sends ``{"error": message}`` with ``status``; returns the status."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status
