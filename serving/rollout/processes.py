"""Local processes a rollout drives: ``shipyard serve`` children on 127.0.0.1, free ports, JSON over HTTP.

One implementation for ``deploy_model``'s local smoke test, the local rollout backend, the
benchmarks and the tests: every process started here binds to 127.0.0.1 and is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from shipyard.errors import DeploymentError


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[Any] | None, timeout_s: float) -> None:
    """Stops a child by its PID: SIGTERM, then SIGKILL after ``timeout_s``; nothing when it is gone already."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """Sends JSON (or nothing); returns ``(status, parsed JSON or text)``. HTTP errors are answers, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


class LocalServer:
    """``shipyard serve`` in a child process on 127.0.0.1; a context manager that stops it by PID."""

    def __init__(self, model_dir: str, name: str, port: int = 0, log_path: str | None = None, args: Sequence[str] = ()):
        self.model_dir, self.name, self.args = model_dir, name, list(args)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalServer:
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "shipyard.cli",
                "serve",
                self.model_dir,
                "--name",
                self.name,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if not isinstance(log, int):
            log.close()  # the child holds its own descriptor
        return self

    def wait_ready(self, timeout_s: float) -> float:
        """Polls the V2 readiness route; returns seconds until ready.

        Raises:
            DeploymentError: The process exits or is not ready within ``timeout_s``.
        """
        assert self.proc is not None
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.proc.poll() is not None:
                raise DeploymentError(
                    f"local server exited with code {self.proc.returncode} before it was ready"
                    + (f"; see {self.log_path}" if self.log_path else "")
                )
            try:
                status, _ = http_json("GET", f"{self.url}/v2/models/{self.name}/ready", timeout=2)
                if status == 200:
                    return time.monotonic() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise DeploymentError(f"local server on {self.url} not ready after {timeout_s:g}s")

    def __exit__(self, *exc: Any) -> None:
        stop_process(self.proc, 15)
