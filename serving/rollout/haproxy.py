"""HAProxy as the local rollout's weighted router: config, process, weights through the runtime API.

One frontend on 127.0.0.1:PORT, one backend with two servers, ``stable`` and ``canary``, balanced
round-robin by weight (stable = 100 - w, canary = w; weight 0 takes no new traffic). Every answer
carries ``X-Shipyard-Server: stable|canary`` so a client sees which side answered. Health checks
``GET /v2/health/ready``. Neither ``retry-on`` nor ``option redispatch`` is enabled: a canary's
errors reach the client (and the metrics), they are not hidden by a retry on the stable server.
Server-side connections are closed after each answer (``option http-server-close``), so a server
closing an idle keep-alive connection can never turn into a 502 on a reused one.

Weights change at runtime through the stats socket (``set weight``, read back with ``get weight``);
the process (``haproxy -f CFG -db``, a child) is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from shipyard.errors import DeploymentError

#: The backend's name in the config and in runtime API commands (``set weight shipyard/canary 5``).
BACKEND = "shipyard"
#: The two servers of the backend.
SERVERS = ("stable", "canary")
#: The response header naming the server that answered.
SERVER_HEADER = "X-Shipyard-Server"
#: Longest runtime-API socket path kept in the work directory (sun_path holds 108 bytes).
MAX_SOCKET_PATH = 100
INSTALL_HINT = "haproxy is not installed; apt-get install haproxy"


def haproxy_binary() -> str:
    """The ``haproxy`` executable.

    Raises:
        DeploymentError: It is not installed (on PATH or in /usr/sbin).
    """
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise DeploymentError(INSTALL_HINT)
    return found


def split(weight: int) -> dict[str, int]:
    """The servers' weights for ``weight`` percent to the canary.

    Raises:
        DeploymentError: ``weight`` is not an integer in 0..100.
    """
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise DeploymentError(f"haproxy: canary weight must be an integer in 0..100, got {weight!r}")
    return {"stable": 100 - weight, "canary": weight}


def render_config(
    port: int,
    stable_port: int,
    canary_port: int,
    socket_path: str | os.PathLike[str],
    canary_weight: int = 0,
    check_interval_ms: int = 1000,
    timeout_server_s: float = 60.0,
) -> str:
    """An HAProxy 2.6 configuration for the rollout router.

    Args:
        port: The frontend's port on 127.0.0.1 (what clients use).
        stable_port: The stable ``shipyard serve`` on 127.0.0.1.
        canary_port: The canary ``shipyard serve`` on 127.0.0.1.
        socket_path: The runtime API socket.
        canary_weight: The canary's initial share in percent (0..100).
        check_interval_ms: Health-check interval of both servers.
        timeout_server_s: How long an answer may take (above any injected delay).

    Returns:
        The configuration text.

    Raises:
        DeploymentError: A weight outside 0..100.
    """
    weights = split(canary_weight)
    sock = Path(socket_path)
    ports = {"stable": stable_port, "canary": canary_port}
    servers = "\n".join(
        f"    server {side} 127.0.0.1:{ports[side]} weight {weights[side]}"
        f" check inter {check_interval_ms} rise 1 fall 2"
        for side in SERVERS
    )
    return f"""# Shipyard local rollout router (serving/rollout/haproxy.py); generated, do not edit.
global
    stats socket {sock} mode 600 level admin
    maxconn 1024

defaults
    mode http
    option http-server-close
    no option redispatch
    timeout connect 2s
    timeout client 60s
    timeout server {timeout_server_s:g}s
    timeout http-request 30s
    timeout http-keep-alive 10s
    timeout check 2s

frontend shipyard_in
    bind 127.0.0.1:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk GET /v2/health/ready
    http-check expect status 200
    http-response set-header {SERVER_HEADER} %s
{servers}
"""


class HAProxy:
    """``haproxy -f CFG -db`` as a child process on 127.0.0.1; a context manager that stops it by PID.

    Args:
        stable_port: The stable server's port on 127.0.0.1.
        canary_port: The canary server's port on 127.0.0.1.
        workdir: Config, runtime API socket and log go here.
        port: The frontend's port (0: a free one).
        canary_weight: The canary's initial weight (0..100).
        check_interval_ms: Health-check interval.
        timeout_server_s: The longest answer HAProxy waits for.
    """

    def __init__(
        self,
        stable_port: int,
        canary_port: int,
        workdir: str | os.PathLike[str],
        port: int = 0,
        canary_weight: int = 0,
        check_interval_ms: int = 1000,
        timeout_server_s: float = 60.0,
    ):
        from serving.rollout.processes import free_port

        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket_path = self.workdir / "haproxy.sock"
        self._socket_dir: str | None = None
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:  # a KFP task directory is deep: a short one of our own
            self._socket_dir = tempfile.mkdtemp(prefix="shipyard-haproxy-")  # mode 700
            self.socket_path = Path(self._socket_dir) / "haproxy.sock"
        self.config_path = self.workdir / "haproxy.cfg"
        self.log_path = self.workdir / "haproxy.log"
        self.config = render_config(
            self.port, stable_port, canary_port, self.socket_path, canary_weight, check_interval_ms, timeout_server_s
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while started."""
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout_s: float = 15.0) -> HAProxy:
        """Checks the config (``haproxy -c``), starts HAProxy and waits until the frontend accepts.

        Raises:
            DeploymentError: haproxy is not installed, refuses the config (its output is quoted),
                exits, or does not accept connections within ``timeout_s``.
        """
        binary = haproxy_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config)
        check = subprocess.run([binary, "-c", "-f", str(self.config_path)], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise DeploymentError(
                f"haproxy refused the config {self.config_path}: {(check.stdout + check.stderr).strip()}"
            )
        self.socket_path.unlink(missing_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "-f", str(self.config_path), "-db"], stdout=log, stderr=subprocess.STDOUT
            )
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.proc.poll() is not None:
                raise DeploymentError(
                    f"haproxy exited with code {self.proc.returncode} at start: {self._log_tail()}"
                    f" (log {self.log_path})"
                )
            if self.socket_path.exists() and _accepts(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise DeploymentError(f"haproxy on 127.0.0.1:{self.port} did not accept connections within {timeout_s:g}s")

    def command(self, line: str, timeout_s: float = 5.0) -> str:
        """One runtime API command over the stats socket; returns HAProxy's answer (stripped).

        Raises:
            DeploymentError: The socket cannot be reached.
        """
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout_s)
                conn.connect(str(self.socket_path))
                conn.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise DeploymentError(f"haproxy runtime API {self.socket_path}: {line!r} failed: {exc}") from exc
        return b"".join(chunks).decode(errors="replace").strip()

    def get_weight(self, server: str) -> int:
        """A server's current weight (``get weight``).

        Raises:
            DeploymentError: Unknown server, or an answer that is not a weight.
        """
        _check_server(server)
        answer = self.command(f"get weight {BACKEND}/{server}")
        try:
            return int(answer.split()[0])  # "30 (initial 0)"
        except (IndexError, ValueError):
            raise DeploymentError(f"haproxy: get weight {BACKEND}/{server} answered {answer!r}") from None

    def set_server_weight(self, server: str, weight: int) -> None:
        """Sets one server's weight (0..256) and reads it back.

        Raises:
            DeploymentError: Unknown server, HAProxy refused it, or the weight read back differs.
        """
        _check_server(server)
        answer = self.command(f"set weight {BACKEND}/{server} {weight}")
        if answer:
            raise DeploymentError(f"haproxy refused 'set weight {BACKEND}/{server} {weight}': {answer}")
        now = self.get_weight(server)
        if now != weight:
            raise DeploymentError(f"haproxy: {BACKEND}/{server} weight is {now} after setting {weight}")

    def set_weight(self, canary_weight: int) -> dict[str, int]:
        """Sends ``canary_weight`` percent of new requests to the canary, the rest to stable.

        The side that gains is raised first, so the pair never passes through 0/0.

        Returns:
            The weights set, ``{"stable": 100 - w, "canary": w}``.

        Raises:
            DeploymentError: A weight outside 0..100, or the runtime API refused it.
        """
        weights = split(canary_weight)
        current = self.get_weight("canary")
        order = ("canary", "stable") if canary_weight >= current else ("stable", "canary")
        for server in order:
            self.set_server_weight(server, weights[server])
        return weights

    def server_status(self, server: str) -> str:
        """A server's health as HAProxy sees it (``UP``, ``DOWN``, ``MAINT``, ``no check``...), from ``show stat``.

        Raises:
            DeploymentError: Unknown server, or not in HAProxy's answer.
        """
        _check_server(server)
        lines = self.command("show stat").splitlines()
        if lines and lines[0].startswith("# "):
            header = lines[0][2:].split(",")
            for line in lines[1:]:
                row = dict(zip(header, line.split(","), strict=False))
                if row.get("pxname") == BACKEND and row.get("svname") == server:
                    return row.get("status", "")
        raise DeploymentError(f"haproxy: no status for {BACKEND}/{server} in 'show stat'")

    def wait_up(self, server: str, timeout_s: float = 10.0) -> bool:
        """Waits until HAProxy's health check marks ``server`` UP; False after ``timeout_s``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.server_status(server).startswith("UP"):
                return True
            time.sleep(0.1)
        return False

    def weights(self) -> dict[str, int]:
        """The current weights of both servers."""
        return {server: self.get_weight(server) for server in SERVERS}

    def stop(self) -> None:
        """Stops HAProxy by its PID (SIGTERM, then SIGKILL); safe to call twice."""
        from serving.rollout.processes import stop_process

        stop_process(self.proc, 10)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _check_server(server: str) -> None:
    if server not in SERVERS:
        raise DeploymentError(f"haproxy: server must be one of {SERVERS}, got {server!r}")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
