"""Prometheus for rollouts: a local server scraping both sides, and the HTTP API client both backends use.

:class:`PrometheusClient` is dependency-free (urllib) and is what ``LocalBackend`` and
``KubernetesBackend`` query with the same PromQL templates. :class:`PrometheusServer` runs Debian's
``prometheus`` on 127.0.0.1 with a generated config: one scrape job per side (``shipyard-stable``,
``shipyard-canary``, static target the server's ``127.0.0.1:port``, ``/metrics``), its TSDB in the
work directory; it is stopped by its PID.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from serving.rollout.backend import Sample
from shipyard.errors import DeploymentError

INSTALL_HINT = "prometheus is not installed; apt-get install prometheus"


def job_name(side: str) -> str:
    """The scrape job of one side (``shipyard-canary``), what ``selector(side)`` matches on."""
    return f"shipyard-{side}"


def parse_value(text: Any) -> float:
    """A sample value as the API writes it (``"1.5"``, ``"NaN"``, ``"+Inf"``, ``"-Inf"``) as a float.

    Raises:
        DeploymentError: Not a number.
    """
    try:
        return float(text)  # float() reads NaN, +Inf, -Inf as Prometheus writes them
    except (TypeError, ValueError):
        raise DeploymentError(f"prometheus: sample value {text!r} is not a number") from None


def parse_result(data: Mapping[str, Any], promql: str = "") -> list[Sample]:
    """The ``data`` of an instant query's answer as samples (a scalar is one sample without labels).

    Raises:
        DeploymentError: A range vector (matrix) or an unknown result type.
    """
    kind = data.get("resultType")
    result: Any = data.get("result", [])
    if kind == "vector":
        return [Sample(labels=dict(item.get("metric", {})), value=parse_value(item["value"][1])) for item in result]
    if kind == "scalar":
        return [Sample(labels={}, value=parse_value(result[1]))]
    raise DeploymentError(
        f"prometheus query {promql!r} returned a {kind}; a check needs an instant vector or a scalar "
        "(wrap a range selector in rate(), increase(), ...)"
    )


class PrometheusClient:
    """The Prometheus HTTP API (``/api/v1/query``), over urllib.

    Args:
        url: The server's base URL (``http://127.0.0.1:9090``, or a cluster service URL).
        timeout_s: Per-request timeout.
        headers: Extra request headers (e.g. ``Authorization`` for a managed Prometheus).
    """

    def __init__(self, url: str, timeout_s: float = 10.0, headers: Mapping[str, str] | None = None):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = dict(headers or {})

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """One instant query.

        Args:
            promql: The PromQL expression.
            at: Evaluation time (Unix seconds); None is now.

        Returns:
            The samples; an empty list when the query has no data.

        Raises:
            DeploymentError: Prometheus refused the query (bad PromQL: its message is quoted),
                answered something that is not the API's JSON, or cannot be reached.
        """
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        body = urllib.parse.urlencode(params).encode()
        headers = {"content-type": "application/x-www-form-urlencoded", **self.headers}
        req = urllib.request.Request(f"{self.url}/api/v1/query", data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:  # 400 bad_data, 422 execution errors, 503 ...: JSON with the reason
            raw = exc.read()
            answer = _json_or_none(raw)
            if isinstance(answer, dict) and answer.get("status") == "error":
                raise DeploymentError(
                    f"prometheus refused query {promql!r}: {answer.get('errorType', 'error')}: {answer.get('error')}"
                ) from None
            raise DeploymentError(
                f"prometheus at {self.url} answered HTTP {exc.code} to query {promql!r}: {raw[:200]!r}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeploymentError(f"prometheus at {self.url} cannot be reached for query {promql!r}: {exc}") from exc
        answer = _json_or_none(raw)
        if not isinstance(answer, dict) or "status" not in answer:
            raise DeploymentError(f"prometheus at {self.url} answered query {promql!r} with no API JSON: {raw[:200]!r}")
        if answer["status"] != "success":
            raise DeploymentError(
                f"prometheus refused query {promql!r}: {answer.get('errorType', 'error')}: {answer.get('error')}"
            )
        return parse_result(answer["data"], promql)

    def value(self, promql: str) -> float | None:
        """The single value of a query that returns one sample; None when it has no data (or NaN).

        Raises:
            DeploymentError: As :meth:`query`, or more than one sample.
        """
        samples = self.query(promql)
        if not samples:
            return None
        if len(samples) > 1:
            raise DeploymentError(f"prometheus query {promql!r} returned {len(samples)} samples; expected one")
        return None if math.isnan(samples[0].value) else samples[0].value

    def ready(self) -> bool:
        """Whether ``/-/ready`` answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout_s) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def prometheus_binary() -> str:
    """The ``prometheus`` executable.

    Raises:
        DeploymentError: It is not installed.
    """
    found = shutil.which("prometheus")
    if not found:
        raise DeploymentError(INSTALL_HINT)
    return found


def render_config(targets: Mapping[str, int], scrape_interval_s: float = 1.0) -> str:
    """The Prometheus config (JSON, which is YAML) with one job per side.

    Args:
        targets: Side (``stable``, ``canary``) → the server's port on 127.0.0.1.
        scrape_interval_s: Scrape and evaluation interval.

    Returns:
        The configuration text.

    Raises:
        DeploymentError: A scrape interval that is not positive.
    """
    if not scrape_interval_s > 0:
        raise DeploymentError(f"prometheus: scrape_interval_s must be > 0, got {scrape_interval_s!r}")
    interval = f"{max(1, round(scrape_interval_s * 1000))}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": [
            {
                "job_name": job_name(side),
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": {"side": side}}],
            }
            for side, port in targets.items()
        ],
    }
    return json.dumps(config, indent=2) + "\n"


class PrometheusServer:
    """Debian's ``prometheus`` on 127.0.0.1 scraping the given sides; a context manager, stopped by PID.

    Args:
        targets: Side → the ``shipyard serve`` port on 127.0.0.1.
        workdir: Config, TSDB (``prometheus-data/``) and log go here.
        port: The web/API port (0: a free one).
        scrape_interval_s: How often each side is scraped.
    """

    def __init__(
        self, targets: Mapping[str, int], workdir: str | os.PathLike[str], port: int = 0, scrape_interval_s: float = 1.0
    ):
        from serving.rollout.processes import free_port

        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.workdir / "prometheus.yml"
        self.data_path = self.workdir / "prometheus-data"
        self.log_path = self.workdir / "prometheus.log"
        self.config = render_config(targets, scrape_interval_s)
        self.client = PrometheusClient(self.url)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while started."""
        return self.proc.pid if self.proc is not None else None

    def start(self, timeout_s: float = 60.0) -> PrometheusServer:
        """Starts Prometheus and waits for ``/-/ready``; returns self.

        Raises:
            DeploymentError: Not installed, exits at start (its log is quoted: a bad config, a port
                in use), or not ready within ``timeout_s``.
        """
        binary = prometheus_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.data_path}",
                    "--storage.tsdb.retention.time=1d",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            if self.proc.poll() is not None:
                raise DeploymentError(
                    f"prometheus exited with code {self.proc.returncode} at start: {self._log_tail()} "
                    f"(config {self.config_path}, log {self.log_path})"
                )
            if self.client.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise DeploymentError(f"prometheus on {self.url} not ready after {timeout_s:g}s (log {self.log_path})")

    def stop(self) -> None:
        """Stops Prometheus by its PID (SIGTERM, then SIGKILL); safe to call twice."""
        from serving.rollout.processes import stop_process

        stop_process(self.proc, 15)

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
