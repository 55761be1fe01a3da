"""Starting a KServe ``ModelServer`` for one Shipyard model, bound to the host it is given.

KServe 0.21 hard-codes ``0.0.0.0`` in its uvicorn config and parses ``sys.argv`` when
``kserve.model_server`` is imported; this module clears the argv for that import and binds the
listening sockets itself (:func:`bind`, on the host it is given), after the model has loaded and
before KServe starts, then hands them to uvicorn. So a port that is taken, or a host that is not
this machine's, is one :class:`~shipyard.errors.DeploymentError` naming it, not uvicorn's exit
code 3 after a page of tracebacks. gRPC is off (the V1/V2 REST routes are what KServe's
InferenceService and the smoke tests use).

In front of KServe's app, outermost: :class:`~serving.guard.ServingGuard` (request metrics, the
body-size limit, 503 readiness while draining, and JSON inference requests answered directly by
:mod:`serving.fastpath`). The loop is uvloop's (KServe's own ``asyncio.run`` would take the stdlib
loop) and per-request log lines are off. Graceful shutdown: on SIGTERM readiness turns 503 first,
for ``shutdown_delay_s``; then uvicorn stops accepting connections and lets the requests in flight
finish (up to ``grace_period_s``), and the process exits 0.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from serving.config import ServeConfig
from shipyard import storage
from shipyard.errors import ConfigError, DeploymentError

if TYPE_CHECKING:
    from serving.guard import Faults

logger = logging.getLogger(__name__)


def _import_kserve() -> Any:
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve.model_server as ms
    finally:
        sys.argv = argv
    return ms


def serve(
    model_dir: str,
    name: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    config: ServeConfig | None = None,
    faults: Faults | None = None,
) -> None:
    """Loads the artifact and serves it until SIGTERM/SIGINT.

    Args:
        model_dir: A Shipyard Model artifact directory.
        name: The model name in the routes (``/v1/models/NAME:predict``).
        host: Interface to bind; 127.0.0.1 locally, 0.0.0.0 in a container.
        port: HTTP port, 1..65535.
        config: Batching, body limit, payload log, shutdown timing (defaults: ``ServeConfig()``).
        faults: For rollout drills only: injected 500s and delays on inference requests
            (:class:`serving.guard.Faults`); None or inactive is off.

    Raises:
        ConfigError: ``port`` is outside 1..65535.
        UnsupportedSchemeError: The payload log is an ``s3://``, ``https://``, ... URI.
        DeploymentError: The port is in use on ``host``, or ``host`` cannot be bound.
        ShipyardError: The artifact is missing, malformed, tampered with or unsafe, or the
            payload-log destination is unusable.
    """
    cfg = config or ServeConfig()
    if not 1 <= port <= 65535:
        raise ConfigError(f"serve: port {port} is not a TCP port; expected 1..65535")
    if cfg.payload_log:
        storage.check_supported(cfg.payload_log, "a local directory or a gs://BUCKET/PREFIX URI")
    ms = _import_kserve()
    from kserve.protocol.rest.server import RESTServer

    from serving.guard import ServerState, ServingGuard
    from serving.model import model_for

    payload_logger = None
    if cfg.payload_log:
        from serving.payload_log import PayloadLogger

        payload_logger = PayloadLogger(cfg.payload_log, name)
    model = model_for(name, model_dir, cfg, payload_logger)
    model.load()  # fail before binding: a bad artifact is an error, not an unready server
    state = ServerState()
    sockets: list[socket.socket] = []  # bound below, just before the server starts

    class _GuardedRESTServer(RESTServer):  # type: ignore[misc]
        async def start(self) -> None:  # serves on the sockets serve() binds below
            self.create_application()
            logging.getLogger("uvicorn.error").info("Uvicorn running on %s (Press CTRL+C to quit)", _url(sockets))
            await self._server.serve(sockets=sockets)

        def _add_middlewares(self, app: Any) -> None:  # KServe's per-request timing log: our metrics replace it
            pass

        def create_application(self) -> None:
            super().create_application()
            from kserve.model_server import app as kserve_app

            # Outermost, in front of FastAPI's own middleware: inference requests answered directly
            # pay for uvicorn and the guard only.
            self.config.app = ServingGuard(
                kserve_app,
                max_body_bytes=cfg.max_body_bytes,
                state=state,
                models={model.name: model},
                faults=faults,
            )

        def _add_exception_handlers(self, app: Any) -> None:
            super()._add_exception_handlers(app)
            from fastapi.exceptions import RequestValidationError

            app.add_exception_handler(RequestValidationError, _request_validation_error)

    class _HostModelServer(ms.ModelServer):  # type: ignore[name-defined]
        def start(self, models: list[Any]) -> None:  # single-process REST server, bound to `host`
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = _GuardedRESTServer(
                ms.FASTAPI_APP_IMPORT_STRING,
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                access_log_format=self.access_log_format,
                workers=1,
                grace_period=int(cfg.grace_period_s),
                event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
            )
            self._rest_server.config.host = host
            self._rest_server.config.timeout_graceful_shutdown = cfg.grace_period_s  # not rounded down to int
            _quiet_per_request_logs()  # after KServe configured logging: a line per request costs ~15% of the CPU
            self._rest_server.config.access_log = False
            _drain_on_signals(self._rest_server._server, state, cfg.shutdown_delay_s)
            self.servers.append(self._rest_server.start())
            loop = _new_event_loop()
            asyncio.set_event_loop(loop)
            self.setup_event_loop()  # KServe's exception handler and executor, on the loop that runs
            import gc

            gc.collect()
            gc.freeze()  # the start-up heap (torch, kserve, the model) is never traversed by a collection again
            # With dozens of requests in flight, the default young-generation threshold (700) collects
            # every few requests and promotes their live objects; a larger one keeps the per-request
            # CPU of batched serving ~5% lower (benchmarks/RESULTS.md, 2026-12-02) at the same memory.
            gc.set_threshold(50_000, 50, 1000)
            try:
                loop.run_until_complete(self._serve())
            finally:
                loop.close()

    server = _HostModelServer(http_port=port, enable_grpc=False, enable_latency_logging=False, workers=1)
    try:
        sockets = bind(host, port)
        server.start([model])
    finally:
        for sock in sockets:
            sock.close()
        model.stop()
        if payload_logger is not None:
            payload_logger.close()


#: Connections the kernel queues before uvicorn accepts them (uvicorn's default).
BACKLOG = 2048


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to, as asyncio's ``create_server`` binds.

    Raises:
        DeploymentError: The port is in use there (``port N is in use on HOST``), the host does not
            resolve or is not an address of this machine, or binding is not permitted.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise DeploymentError(f"host {host!r} does not resolve ({exc.strerror})") from exc
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):  # getaddrinfo may repeat an address
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT does not block
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise DeploymentError(_bind_error(host, port, exc)) from exc
    return sockets


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host}; stop what listens there or pick another --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: {host} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _url(sockets: list[socket.socket]) -> str:
    host, port = sockets[0].getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _quiet_per_request_logs() -> None:
    """Per-request log lines (uvicorn's access log, KServe's timings, FastAPI's deprecation
    warning about KServe's ORJSONResponse) off; /metrics counts the requests."""
    import warnings

    for name in ("uvicorn.access", "kserve.trace", "access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    access = logging.getLogger("uvicorn.access")  # uvicorn formats its access line whenever this has handlers
    access.handlers, access.propagate = [], False
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when installed (what ``uvicorn.run`` would pick; KServe's ``asyncio.run``
    would use the slower stdlib loop), else the stdlib's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _drain_on_signals(uvicorn_server: Any, state: Any, delay_s: float) -> None:
    """Replaces uvicorn's exit handler: first SIGTERM/SIGINT drains, a second one forces.

    Uvicorn installs ``handle_exit`` for SIGINT/SIGTERM when it starts serving; this one marks the
    server as draining (readiness 503) and, ``delay_s`` later, asks uvicorn to shut down — which
    closes the listening socket and waits for requests in flight. The signal is not re-raised
    afterwards, so the process exits 0.
    """

    def handle_exit(sig: int, frame: Any) -> None:
        loop = asyncio.get_event_loop()
        if state.draining:
            uvicorn_server.should_exit = uvicorn_server.force_exit = True
            return
        state.draining = True
        logger.info(
            "signal %s: readiness now 503; stopping in %.1fs (%d request(s) in flight)",
            signal.Signals(sig).name,
            delay_s,
            state.in_flight,
        )
        loop.call_later(delay_s, lambda: setattr(uvicorn_server, "should_exit", True))

    uvicorn_server.handle_exit = handle_exit


async def _request_validation_error(request: Any, exc: Any) -> Any:
    """A V2 body that does not parse (not JSON, no ``inputs``, wrong field types): 400 and
    ``{"error": ...}`` naming the field, as every other bad request gets, not FastAPI's 422."""
    from fastapi.responses import JSONResponse

    problems = []
    for err in exc.errors():
        loc = err.get("loc", ())
        if "bytes" in loc:  # the route also admits raw bytes; that alternative's complaint is noise
            continue
        if err.get("type") == "json_invalid":
            problems.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')})")
            continue
        where = ".".join(str(p) for p in loc if p not in ("body", "InferenceRequest"))
        problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return JSONResponse({"error": "V2 request: " + "; ".join(problems[:3] or ["malformed"])}, status_code=400)
