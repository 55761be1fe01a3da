"""A bounded load generator in a process of its own, counting answers per server and status.

Run as ``python -m serving.rollout.load URL --body FILE --rate R --duration S --max-requests N
--out stats.json [--threads T]``: POSTs the JSON body to URL at about R requests per second (0: as
fast as the threads go) over keep-alive connections, stops after S seconds or N requests, whichever
comes first (or on SIGTERM), and writes its counts as JSON to ``--out``: every half second while
it runs (``done: false``) and once at the end (``done: true``). Answers are counted by the
``X-Shipyard-Server`` header HAProxy adds (``none`` when absent) and by status class (``2xx``,
``4xx``, ``5xx``...); connection failures are counted apart (``connection_errors``) with their kind.
``per_second`` gives the same counts per elapsed second, so a reader can see when the canary
answered what.

:class:`LoadGenerator` starts it from a driver (a context manager that stops it by PID) and reads
the counts (:meth:`LoadGenerator.stats`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shipyard.errors import DeploymentError

#: The response header naming the server that answered (serving.rollout.haproxy.SERVER_HEADER).
SERVER_HEADER = "X-Shipyard-Server"
#: The most threads one generator runs.
MAX_THREADS = 32


def status_class(status: int) -> str:
    """``2xx``, ``4xx``, ``5xx``... of an HTTP status."""
    return f"{status // 100}xx"


class Counts:
    """Thread-safe counts of answers by server and status class, overall and per elapsed second."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_server: dict[str, dict[str, int]] = {}
        self.statuses: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.per_second: dict[int, dict[str, dict[str, int]]] = {}
        self.requests = 0
        self.latency_sum: dict[str, float] = {}

    def answer(self, second: int, server: str, status: int, latency_s: float) -> None:
        """Records one answer."""
        cls = status_class(status)
        with self.lock:
            self.requests += 1
            side = self.by_server.setdefault(server, {})
            side[cls] = side.get(cls, 0) + 1
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            self.latency_sum[server] = self.latency_sum.get(server, 0.0) + latency_s
            bucket = self.per_second.setdefault(second, {}).setdefault(server, {})
            bucket[cls] = bucket.get(cls, 0) + 1

    def error(self, second: int, kind: str) -> None:
        """Records one request that got no answer (refused, reset, timed out)."""
        with self.lock:
            self.requests += 1
            self.errors[kind] = self.errors.get(kind, 0) + 1
            bucket = self.per_second.setdefault(second, {}).setdefault("connection_error", {})
            bucket[kind] = bucket.get(kind, 0) + 1

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        """The counts as JSON-able data (``extra`` added at the top)."""
        with self.lock:
            answered = {s: sum(c.values()) for s, c in self.by_server.items()}
            return {
                **extra,
                "requests": self.requests,
                "answered": sum(answered.values()),
                "connection_errors": sum(self.errors.values()),
                "by_server": {s: dict(c) for s, c in sorted(self.by_server.items())},
                "statuses": dict(sorted(self.statuses.items())),
                "errors": dict(sorted(self.errors.items())),
                "mean_latency_s": {s: self.latency_sum[s] / n for s, n in sorted(answered.items()) if n},
                "per_second": [
                    {"second": second, **{k: dict(v) for k, v in sorted(row.items())}}
                    for second, row in sorted(self.per_second.items())
                ],
            }


def run(
    url: str,
    body: bytes,
    rate: float,
    duration_s: float,
    max_requests: int,
    out: str | os.PathLike[str] | None = None,
    threads: int = 4,
    timeout_s: float = 10.0,
    stop: threading.Event | None = None,
    write_every_s: float = 0.5,
) -> dict[str, Any]:
    """Sends the bounded load; returns the final counts (also written to ``out``).

    Args:
        url: The inference URL (``http://127.0.0.1:PORT/v1/models/NAME:predict``).
        body: The JSON body of every request.
        rate: Requests per second in all (0: as fast as the threads go).
        duration_s: Stops after this long.
        max_requests: Stops after this many requests.
        out: Where the counts are written (periodically and at the end); None: nowhere.
        threads: Concurrent connections (1..32).
        timeout_s: Per-request timeout.
        stop: Set to stop early (SIGTERM sets it when run as a process).
        write_every_s: How often the counts are written while running.

    Raises:
        DeploymentError: An unusable URL or bound.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise DeploymentError(f"load: URL must be http://HOST:PORT/PATH, got {url!r}")
    if not 1 <= threads <= MAX_THREADS:
        raise DeploymentError(f"load: threads must be in 1..{MAX_THREADS}, got {threads}")
    if not (duration_s > 0 and max_requests >= 1 and rate >= 0):
        raise DeploymentError(
            f"load: needs duration > 0, max_requests >= 1 and rate >= 0; got {duration_s}, {max_requests}, {rate}"
        )
    host, port = parts.hostname, parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    stop = stop or threading.Event()
    counts = Counts()
    lock = threading.Lock()
    issued = 0
    start = time.monotonic()
    started_at = time.time()
    headers = {"content-type": "application/json", "connection": "keep-alive"}

    def next_slot() -> float | None:
        """The time the next request is due, or None when the load is over."""
        nonlocal issued
        with lock:
            if issued >= max_requests:
                return None
            due = start + (issued / rate if rate > 0 else 0.0)
            issued += 1
        return due

    def worker() -> None:
        conn: http.client.HTTPConnection | None = None
        while not stop.is_set():
            due = next_slot()
            if due is None or due - start >= duration_s:
                break
            if stop.wait(max(0.0, due - time.monotonic())):
                break
            if time.monotonic() - start >= duration_s:
                break
            second = int(time.monotonic() - start)
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
            sent = time.monotonic()
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                counts.answer(second, resp.getheader(SERVER_HEADER) or "none", resp.status, time.monotonic() - sent)
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                counts.error(second, type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def snapshot(done: bool) -> dict[str, Any]:
        return counts.to_dict(
            url=url,
            rate=rate,
            duration_s=duration_s,
            max_requests=max_requests,
            threads=threads,
            started_at=started_at,
            elapsed_s=round(time.monotonic() - start, 3),
            done=done,
        )

    pool = [threading.Thread(target=worker, name=f"load-{i}", daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    while alive := [t for t in pool if t.is_alive()]:
        alive[0].join(write_every_s)
        if out is not None:
            _write(out, snapshot(False))
    for thread in pool:
        thread.join()
    final = snapshot(True)
    if out is not None:
        _write(out, final)
    return final


def _write(path: str | os.PathLike[str], stats: dict[str, Any]) -> None:
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(stats, indent=1) + "\n")
    os.replace(tmp, target)


def read_stats(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The counts a generator last wrote to ``path``, or None before its first write."""
    try:
        return dict(json.loads(Path(path).read_text()))
    except FileNotFoundError:
        return None


class LoadGenerator:
    """``python -m serving.rollout.load`` in a child process; a context manager that stops it by PID.

    Args:
        url: The inference URL.
        body: The JSON body (bytes, text, or a JSON-able object).
        workdir: Where the body and the stats file (``<name>.json``) are written.
        rate: Requests per second in all (0: as fast as possible).
        duration_s: Time bound.
        max_requests: Count bound.
        threads: Concurrent keep-alive connections.
        name: The stats file's name.
        timeout_s: Per-request timeout.
    """

    def __init__(
        self,
        url: str,
        body: bytes | str | Any,
        workdir: str | os.PathLike[str],
        rate: float = 20.0,
        duration_s: float = 60.0,
        max_requests: int = 1000,
        threads: int = 4,
        name: str = "load",
        timeout_s: float = 10.0,
    ):
        self.url, self.rate, self.duration_s, self.max_requests = url, rate, duration_s, max_requests
        self.threads, self.timeout_s = threads, timeout_s
        self.workdir = Path(workdir)
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.body = body
        self.body_path = self.workdir / f"{name}-body.json"
        self.out = self.workdir / f"{name}.json"
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id once started."""
        return self.proc.pid if self.proc is not None else None

    def start(self) -> LoadGenerator:
        """Starts the process; returns self."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.body_path.write_bytes(self.body)
        self.out.unlink(missing_ok=True)
        args = [
            sys.executable,
            "-m",
            "serving.rollout.load",
            self.url,
            "--body",
            str(self.body_path),
            "--rate",
            str(self.rate),
            "--duration",
            str(self.duration_s),
            "--max-requests",
            str(self.max_requests),
            "--threads",
            str(self.threads),
            "--timeout",
            str(self.timeout_s),
            "--out",
            str(self.out),
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_root(), os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def stats(self) -> dict[str, Any] | None:
        """The counts written last (``done`` says whether they are final), or None before the first."""
        return read_stats(self.out)

    def wait(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Waits for the load to end by its bounds; returns the final counts.

        Raises:
            DeploymentError: The process failed or did not end within ``timeout_s``.
        """
        assert self.proc is not None, "start() first"
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DeploymentError(f"load generator (pid {self.proc.pid}) still running after {timeout_s}s") from None
        return self._final(code)

    def stop(self) -> dict[str, Any] | None:
        """Stops the load (SIGTERM by PID, then SIGKILL); returns the final counts (None if it never wrote)."""
        from serving.rollout.processes import stop_process

        if self.proc is None:
            return None
        stop_process(self.proc, self.timeout_s + 5)
        return self.stats()

    def _final(self, code: int) -> dict[str, Any]:
        stats = self.stats()
        if code != 0 or stats is None or not stats.get("done"):
            tail = self.log_path.read_text(errors="replace")[-500:] if self.log_path.exists() else ""
            raise DeploymentError(f"load generator exited with code {code} without final counts: {tail}")
        return stats

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _root() -> str:
    """The directory holding the ``serving`` package (so the child imports this same code)."""
    return str(Path(__file__).resolve().parents[2])


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); exit 0 when the load ran, 2 on a usage error."""
    parser = argparse.ArgumentParser(prog="python -m serving.rollout.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="inference URL, e.g. http://127.0.0.1:PORT/v1/models/NAME:predict")
    parser.add_argument("--body", required=True, help="file with the JSON body of every request")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second in all; 0 = unpaced")
    parser.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    parser.add_argument("--max-requests", type=int, default=1000, help="stop after this many requests")
    parser.add_argument("--threads", type=int, default=4, help=f"concurrent connections (1..{MAX_THREADS})")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    parser.add_argument("--out", help="write the counts as JSON here (periodically and at the end)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        body = Path(args.body).read_bytes()
        final = run(
            args.url, body, args.rate, args.duration, args.max_requests, args.out, args.threads, args.timeout, stop
        )
    except (DeploymentError, OSError) as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        print(json.dumps({k: v for k, v in final.items() if k != "per_second"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
