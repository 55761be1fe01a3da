"""Starting a KServe ``ModelServer`` for one Shipyard model, bound to the host it is given.

KServe 0.21 hard-codes ``0.0.0.0`` in its uvicorn config and parses ``sys.argv`` when
``kserve.model_server`` is imported; this module clears the argv for that import and sets the
REST server's host before it binds. gRPC is off (the V1/V2 REST routes are what KServe's
InferenceService and the smoke tests use).
"""

from __future__ import annotations

import logging
import sys


def _import_kserve():
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        import kserve.model_server as ms
    finally:
        sys.argv = argv
    return ms


def serve(model_dir: str, name: str, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Loads the artifact and serves it until SIGTERM/SIGINT.

    Args:
        model_dir: A Shipyard Model artifact directory.
        name: The model name in the routes (``/v1/models/NAME:predict``).
        host: Interface to bind; 127.0.0.1 locally, 0.0.0.0 in a container.
        port: HTTP port.

    Raises:
        ShipyardError: The artifact is missing, malformed, tampered with or unsafe.
    """
    ms = _import_kserve()
    from kserve.protocol.rest.server import RESTServer

    from serving.model import ShipyardModel

    model = ShipyardModel(name, model_dir)
    model.load()  # fail before binding: a bad artifact is an error, not an unready server

    class _HostModelServer(ms.ModelServer):  # type: ignore[name-defined]
        def start(self, models):  # single-process REST server, bound to `host`
            self._register_and_check_atleast_one_model_is_ready(models)
            self._rest_server = RESTServer(
                ms.FASTAPI_APP_IMPORT_STRING,
                self.dataplane,
                self.model_repository_extension,
                self.http_port,
                access_log_format=self.access_log_format,
                workers=1,
                grace_period=self.grace_period,
                event_loop=self.event_loop,
                timeout_keep_alive=self.timeout_keep_alive,
            )
            self._rest_server.config.host = host
            self.servers.append(self._rest_server.start())
            self.setup_event_loop()
            self.register_signal_handler()
            ms.asyncio.run(self._serve())

    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    server = _HostModelServer(http_port=port, enable_grpc=False, enable_latency_logging=False, workers=1)
    server.start([model])
