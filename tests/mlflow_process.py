"""Servers as child processes of a test: MLflow's ``mlflow server`` and ``mlflow models serve``, and
the GCS emulator (``tests/conftest.py``).

Each binds 127.0.0.1 on a free port, is waited for on a route with a bounded timeout (the test
fails with the server's log when it exits or does not answer), and is stopped by its PID (SIGTERM
to the process group it leads, SIGKILL after a grace period) when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@contextlib.contextmanager
def child_server(
    args: Sequence[str], ready_url: str, log: Path, env: dict[str, str] | None = None, ready_s: float = 180
) -> Iterator[subprocess.Popen[bytes]]:
    """Starts ``args``, waits until ``ready_url`` answers 200, yields the process, stops it by PID."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
    try:
        deadline = time.monotonic() + ready_s
        while not _answers(ready_url):
            if proc.poll() is not None:
                pytest.fail(f"{args[0]} exited with {proc.returncode} before {ready_url} answered:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{ready_url} did not answer within {ready_s:g}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the group the child leads (its uvicorn/gunicorn workers), SIGKILL after 20 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers the leader left behind, if any


def mlflow_env(tracking_uri: str) -> dict[str, str]:
    """The environment of an MLflow child: this checkout importable, this interpreter's scripts first on
    PATH (``mlflow models serve`` execs ``uvicorn``), no telemetry, the store given."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONPATH": root + (os.pathsep + path if path else ""),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
