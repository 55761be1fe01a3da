"""The local rollout backend: stable and canary ``shipyard serve`` behind HAProxy, scraped by Prometheus.

Everything binds 127.0.0.1 and runs as child processes stopped by their PIDs:

- two ``shipyard serve`` processes (:class:`~serving.rollout.processes.LocalServer`), ``stable`` and
  ``canary`` (``canary_args`` such as ``--fault-error-rate 0.2`` make a drill);
- HAProxy (:mod:`serving.rollout.haproxy`), the URL clients use (:attr:`LocalBackend.url`), with the
  canary's weight set through its runtime API; every answer names its side in ``X-Shipyard-Server``;
- Prometheus (:mod:`serving.rollout.prometheus`) scraping both servers' ``/metrics``, as jobs
  ``shipyard-stable`` and ``shipyard-canary``: ``selector(side)`` is ``job="shipyard-<side>"``.

The rollout's state is ``state.json`` in the work directory and an operator's command a file
``command`` there (written atomically, consumed by a rename), so ``shipyard rollout status|promote|abort``
in another process needs only the work directory (:func:`read_state`, :func:`send_command`).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from serving.rollout.backend import COMMANDS, SIDES, Sample
from serving.rollout.haproxy import HAProxy
from serving.rollout.processes import LocalServer, http_json
from serving.rollout.prometheus import PrometheusClient, PrometheusServer, job_name
from shipyard.artifacts import write_json
from shipyard.errors import DeploymentError

STATE_FILE = "state.json"
COMMAND_FILE = "command"


def read_state(workdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state a local rollout last published in ``workdir``, or None.

    Raises:
        DeploymentError: The state file is not JSON (an object).
    """
    path = Path(workdir) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise DeploymentError(f"rollout state {path} is not JSON: {exc}") from None
    if not isinstance(state, dict):
        raise DeploymentError(f"rollout state {path} is not a JSON object")
    return state


def send_command(workdir: str | os.PathLike[str], command: str) -> None:
    """Leaves an operator's command (``promote`` or ``abort``) for the local rollout running in ``workdir``.

    Raises:
        DeploymentError: Not one of :data:`~serving.rollout.backend.COMMANDS`, or ``workdir`` missing.
    """
    if command not in COMMANDS:
        raise DeploymentError(f"rollout command must be one of {COMMANDS}, got {command!r}")
    folder = Path(workdir)
    if not folder.is_dir():
        raise DeploymentError(f"rollout work directory {folder} does not exist (is a local rollout running?)")
    tmp = folder / f".{COMMAND_FILE}.tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.write_text(command + "\n")
    os.replace(tmp, folder / COMMAND_FILE)


def take_command(workdir: str | os.PathLike[str]) -> str | None:
    """Consumes the pending command in ``workdir`` (renamed away first, so it is read once); or None.

    Raises:
        DeploymentError: The file holds something that is not a command (it is consumed all the same).
    """
    folder = Path(workdir)
    taken = folder / f".{COMMAND_FILE}.taken-{os.getpid()}-{time.monotonic_ns()}"
    try:
        os.replace(folder / COMMAND_FILE, taken)
    except FileNotFoundError:
        return None
    try:
        command = taken.read_text().strip()
    finally:
        taken.unlink(missing_ok=True)
    if command not in COMMANDS:
        raise DeploymentError(
            f"rollout command file {folder / COMMAND_FILE} held {command!r}; expected one of {COMMANDS}"
        )
    return command


class LocalBackend:
    """:class:`~serving.rollout.backend.Backend` on this machine: two servers, HAProxy, Prometheus.

    Nothing starts in the constructor (ports are picked there); :meth:`start` starts everything and
    :meth:`close` stops it by PID, also after a start that failed half-way. A context manager.

    Args:
        stable_dir: The stable model's artifact directory.
        canary_dir: The canary model's artifact directory.
        name: The model name in the routes (both sides serve it under the same name).
        workdir: Logs, configs, Prometheus's TSDB, the HAProxy socket, state and command files.
        stable_args: Extra ``shipyard serve`` flags of the stable server.
        canary_args: Extra ``shipyard serve`` flags of the canary (``--fault-error-rate 0.1``...).
        scrape_interval_s: Prometheus's scrape interval.
        ready_timeout_s: How long a server (and Prometheus) may take to become ready.
        port: HAProxy's frontend port (0: a free one).
        prometheus_port: Prometheus's port (0: a free one).
    """

    def __init__(
        self,
        stable_dir: str | os.PathLike[str],
        canary_dir: str | os.PathLike[str],
        name: str,
        workdir: str | os.PathLike[str],
        stable_args: Sequence[str] = (),
        canary_args: Sequence[str] = (),
        scrape_interval_s: float = 1.0,
        ready_timeout_s: float = 60.0,
        port: int = 0,
        prometheus_port: int = 0,
    ):
        for side, folder in (("stable", stable_dir), ("canary", canary_dir)):
            if not Path(folder).is_dir():
                raise DeploymentError(f"local rollout: the {side} model directory {folder} does not exist")
        if not scrape_interval_s > 0 or not ready_timeout_s > 0:
            raise DeploymentError(
                f"local rollout: scrape_interval_s and ready_timeout_s must be > 0, "
                f"got {scrape_interval_s!r} and {ready_timeout_s!r}"
            )
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scrape_interval_s, self.ready_timeout_s = scrape_interval_s, ready_timeout_s
        self.servers = {
            "stable": LocalServer(
                str(stable_dir), name, log_path=str(self.workdir / "stable.log"), args=list(stable_args)
            ),
            "canary": LocalServer(
                str(canary_dir), name, log_path=str(self.workdir / "canary.log"), args=list(canary_args)
            ),
        }
        self.prometheus = PrometheusServer(
            {side: server.port for side, server in self.servers.items()},
            self.workdir,
            port=prometheus_port,
            scrape_interval_s=scrape_interval_s,
        )
        self.router = HAProxy(
            self.servers["stable"].port, self.servers["canary"].port, self.workdir, port=port, canary_weight=0
        )
        self.client = PrometheusClient(self.prometheus.url)
        self.weight = 0
        self.started = False
        self.description = (
            f"local: haproxy on 127.0.0.1:{self.router.port} (stable :{self.servers['stable'].port}, "
            f"canary :{self.servers['canary'].port}), prometheus on 127.0.0.1:{self.prometheus.port}"
        )

    @property
    def url(self) -> str:
        """The HAProxy frontend clients use (``http://127.0.0.1:PORT``)."""
        return self.router.url

    @property
    def predict_url(self) -> str:
        """The V1 predict route through HAProxy."""
        return f"{self.url}/v1/models/{self.name}:predict"

    @property
    def prometheus_url(self) -> str:
        """Prometheus's base URL (its UI and API)."""
        return self.prometheus.url

    def pids(self) -> dict[str, int]:
        """The PIDs of the processes started (``stable``, ``canary``, ``prometheus``, ``haproxy``)."""
        found = {side: server.proc.pid for side, server in self.servers.items() if server.proc is not None}
        for label, pid in (("prometheus", self.prometheus.pid), ("haproxy", self.router.pid)):
            if pid is not None:
                found[label] = pid
        return found

    def start(self) -> None:
        """Starts both servers, Prometheus and HAProxy (canary weight 0); waits for the stable server.

        The canary's readiness is :meth:`canary_ready`'s to check. Idempotent.

        Raises:
            DeploymentError: The stable server, Prometheus or HAProxy does not start (everything
                started is stopped again); haproxy or prometheus is not installed.
        """
        if self.started:
            return
        for stale in (STATE_FILE, COMMAND_FILE):  # an earlier rollout's: its command is not for this one
            (self.workdir / stale).unlink(missing_ok=True)
        try:
            for server in self.servers.values():
                server.__enter__()  # both load at once
            self.servers["stable"].wait_ready(self.ready_timeout_s)
            self.prometheus.start(self.ready_timeout_s)
            self.router.start()
        except BaseException:
            self.close()
            raise
        self.weight = 0
        self.started = True

    def canary_ready(self) -> bool:
        """Waits up to ``ready_timeout_s`` for the canary's readiness route, and for HAProxy's health
        check to mark it UP (so a weight set next takes effect at once); False when it exits or times out."""
        server = self.servers["canary"]
        if server.proc is None:
            return False
        try:
            server.wait_ready(self.ready_timeout_s)
        except DeploymentError:
            return False
        try:
            status, _ = http_json("GET", f"{server.url}/v2/health/ready", timeout=5)
        except (urllib.error.URLError, OSError):
            return False
        return status == 200 and (not self.started or self.router.wait_up("canary", self.ready_timeout_s))

    def set_weight(self, weight: int) -> None:
        """Sends ``weight`` percent of new requests to the canary through HAProxy's runtime API.

        Raises:
            DeploymentError: Not started, a weight outside 0..100, or HAProxy refused it.
        """
        self._require_started()
        self.router.set_weight(weight)
        self.weight = weight

    def weights(self) -> dict[str, int]:
        """HAProxy's current weights (``{"stable": ..., "canary": ...}``)."""
        self._require_started()
        return self.router.weights()

    def query(self, promql: str) -> list[Sample]:
        """One instant query against the local Prometheus."""
        return self.client.query(promql)

    def selector(self, side: str) -> str:
        """``job="shipyard-<side>"``.

        Raises:
            DeploymentError: ``side`` is not ``canary`` or ``stable``.
        """
        if side not in SIDES:
            raise DeploymentError(f"selector: side must be one of {SIDES}, got {side!r}")
        return f'job="{job_name(side)}"'

    def wait_scraped(self, timeout_s: float | None = None) -> float:
        """Waits until Prometheus has scraped both servers (``up == 1`` for both jobs); returns the seconds.

        Raises:
            DeploymentError: Not within ``timeout_s`` (default ``ready_timeout_s``).
        """
        timeout_s = self.ready_timeout_s if timeout_s is None else timeout_s
        start = time.monotonic()
        query = 'up{job=~"shipyard-stable|shipyard-canary"} == 1'
        while time.monotonic() - start < timeout_s:
            if len({s.labels.get("job") for s in self.query(query)}) == len(SIDES):
                return time.monotonic() - start
            time.sleep(min(0.25, self.scrape_interval_s))
        raise DeploymentError(f"prometheus on {self.prometheus.url} had not scraped both servers after {timeout_s:g}s")

    def promote(self) -> None:
        """All the traffic to the canary (canary weight 100, stable 0)."""
        self.set_weight(100)

    def rollback(self) -> None:
        """All the traffic back to stable (canary weight 0); the canary process stays up for inspection."""
        self.set_weight(0)

    def publish(self, state: dict[str, Any]) -> None:
        """Writes ``state.json`` in the work directory (atomically)."""
        write_json(self.workdir / STATE_FILE, state)

    def read_state(self) -> dict[str, Any] | None:
        """The last published state, or None."""
        return read_state(self.workdir)

    def command(self) -> str | None:
        """The operator's pending command, consumed (atomically) by reading it; or None."""
        return take_command(self.workdir)

    def send_command(self, command: str) -> None:
        """Leaves ``promote`` or ``abort`` for the running controller."""
        send_command(self.workdir, command)

    def close(self) -> None:
        """Stops HAProxy, Prometheus and both servers by PID; safe after a partial start, and twice."""
        errors = []
        for stop in (self.router.stop, self.prometheus.stop, *(s.__exit__ for s in self.servers.values())):
            try:
                stop()
            except Exception as exc:  # stop the others all the same
                errors.append(f"{exc.__class__.__name__}: {exc}")
        self.started = False
        if errors:
            raise DeploymentError(f"local rollout: stopping failed: {'; '.join(errors)}")

    def _require_started(self) -> None:
        if not self.started:
            raise DeploymentError("local rollout: start() the backend first")

    def __enter__(self) -> LocalBackend:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
