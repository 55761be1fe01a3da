"""Serving throughput: our KServe runtime vs MLServer, vs a bare uvicorn ceiling, and batching on/off.

Every server runs as its own process on 127.0.0.1 and is loaded with wrk (Debian's package) from a
separate process at a fixed concurrency for a fixed time; the cases alternate within each cycle so
machine noise hits them alike, and each ratio is the median of the per-cycle ratios. With ``pin``
(the default) the servers run on CPU 0 (``taskset -c 0``) and wrk on CPU 1 (``taskset -c 1``, one
thread), so the load generator does not take CPU from the server it measures and every server gets
the same single core (and one BLAS/OpenMP thread). On the 2-core development machine pinning gave
steadier per-cycle ratios than letting servers and wrk float (``--no-pin``, wrk with 2 threads),
though lower absolute numbers: a pinned server cannot move away from other load on its core.

Other work on the machine is kept off the measurement where the kernel allows (``--no-priority``
turns this off): every server and wrk run in a session of their own at nice -15, as a process and
as an autogroup (with ``sched_autogroup_enabled`` the kernel shares a CPU between sessions first,
so a plain nice value does not reach past the session). Without it, a busy machine time-slices the
pinned processes, and a closed loop at fixed concurrency turns that into a wrong ratio: whenever
wrk is off its CPU the server drains the ≤ 32 requests it holds and idles, and a server twice as
fast per request drains them in half the time, so it idles more. On the 2-core machine with four
other sessions' tests running, batching on ÷ off fell to 0.9–1.7 at default priority while the
servers' CPU time per request still differed by 1.5–2.1×; prioritized, both servers were busy
90–98% of each run and the ratio followed the CPU time again (see RESULTS.md, "batching on a busy
machine"). Each load run records the server's CPU use (``server_util``: 1 = it was the bottleneck;
``server_cpu_us_per_request``), the CPU time other processes took meanwhile (``other_cpus``) and,
for our servers, the mean requests per model call; ``warnings`` lists the runs where the server was
busy under 85% of the time or other processes took over a quarter of a CPU, and each ratio carries
the same-cycle ratio of server CPU time per request (``cpu_ratio_per_cycle``).

- **ours ÷ MLServer** (target ≥ 1.2 at an equal or lower p99): the same fitted scikit-learn
  baseline (the ``train_model`` core's), served by ``shipyard serve`` from its skops artifact and
  by MLServer 1.7.1 + mlserver-sklearn from a joblib dump of the same estimator. MLServer runs in a
  virtual environment of its own, created on first use under ``benchmarks/.envs/mlserver``, one
  process (``parallel_workers=0``), access log off (``debug=false``, as ours). Both get the same V2
  request: one row of breast-cancer features asking for ``predict`` and ``predict_proba`` (so
  MLServer answers label and probabilities, as ours always does); the answers are compared before
  any timing.
- **ours ÷ ceiling** (target ≥ 0.5): a bare Starlette handler on uvicorn that reads the body and
  answers a constant V2 response (``serving_support/ceiling.py``): HTTP and framing alone.
- **batching on ÷ off** for the TorchScript MLP at concurrency 32 (target ≥ 2): two servers,
  ``--batching off`` and ``--batching on`` (or the options given by ``--batching-args`` /
  ``SHIPYARD_BENCH_BATCHING_ARGS``; empty options leave the "on" case out). ``SHIPYARD_SERVE_*``
  variables are removed from the servers' environment so only the command line decides.
  ``--only batching`` runs these two alone (no MLServer environment; ``--only sklearn`` the others);
  such a run is saved as ``benchmarks/output/serving-batching.json``.

wrk counts HTTP status >= 400, socket errors and timeouts; all of them are reported as errors. The
exact server and wrk commands are recorded in the result (``benchmarks/output/serving.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.common import save

HERE = Path(__file__).resolve().parent
SUPPORT = HERE / "serving_support"
ENV = HERE / ".envs" / "mlserver"
MLSERVER_PINS = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1")
BATCHING_ENV_VAR = "SHIPYARD_BENCH_BATCHING_ARGS"
#: Environment variables of `shipyard serve` that would change a server behind the command line's back.
SERVE_ENV_PREFIX = "SHIPYARD_SERVE_"

SKLEARN_MODEL = "breast-cancer"
TORCH_MODEL = "mlp"
CONNECTIONS = 16
BATCHING_CONNECTIONS = 32
WARMUP_S = 3
READY_TIMEOUT_S = 180.0
#: One thread per core: servers and wrk must not oversubscribe the core they are given.
SERVER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SERVER_CPU, WRK_CPU = "0", "1"
#: Scheduling priority of every server and of wrk (``--no-priority``: the default 0). Each runs in a
#: session of its own, so it is its own autogroup where the kernel groups by session
#: (``/proc/sys/kernel/sched_autogroup_enabled``), and gets this nice value as a process and as a group.
PRIORITY_NICE = -15
#: Below this share of a CPU, a server was not the bottleneck of its run (it waited for requests).
SERVER_BOUND_UTIL = 0.85
#: Above this many CPUs' worth of time taken by other processes during a run, the machine was busy.
BUSY_OTHER_CPUS = 0.25

#: Subsets of the cases ``--only`` can pick: the scikit-learn comparisons, or batching on/off alone.
GROUPS = {
    "sklearn": ("ours_sklearn", "mlserver_sklearn", "ceiling"),
    "batching": ("ours_torch_c32", "ours_torch_batched_c32"),
}

#: (result key, numerator case, denominator case, target, also require numerator p99 <= denominator p99)
COMPARISONS = (
    ("ours_over_mlserver", "ours_sklearn", "mlserver_sklearn", 1.2, True),
    ("ours_over_ceiling", "ours_sklearn", "ceiling", 0.5, False),
    ("batching_on_over_off", "ours_torch_batched_c32", "ours_torch_c32", 2.0, False),
)


class SetupError(RuntimeError):
    """Something the benchmark needs is missing or would not start."""


@dataclasses.dataclass(frozen=True)
class Server:
    """One server process: its command (without CPU pinning), port and working directory."""

    name: str
    argv: tuple[str, ...]
    port: int
    cwd: Path

    def url(self, path: str) -> str:
        """The loopback URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"


@dataclasses.dataclass(frozen=True)
class Case:
    """One load run: which server, which route, how many connections."""

    name: str
    server: str
    model: str
    connections: int

    @property
    def path(self) -> str:
        """The V2 infer route."""
        return f"/v2/models/{self.model}/infer"


@dataclasses.dataclass(frozen=True)
class Batching:
    """``shipyard serve`` options of the TorchScript servers; no ``on`` options: the on case is not run."""

    off: tuple[str, ...] = ()
    on: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Models:
    """The artifacts every server serves, and the request they all get."""

    sklearn_dir: Path
    torch_dir: Path
    mlserver_repo: Path
    body_file: Path
    label_names: tuple[Any, ...]


def cases(batching: Batching, only: str | None = None) -> list[Case]:
    """The load runs of one cycle, in order; the batched case only when there are options to turn it on.

    Args:
        batching: The TorchScript servers' options.
        only: A key of :data:`GROUPS` to run that subset alone; None runs every case.
    """
    out = [
        Case("ours_sklearn", "ours_sklearn", SKLEARN_MODEL, CONNECTIONS),
        Case("mlserver_sklearn", "mlserver_sklearn", SKLEARN_MODEL, CONNECTIONS),
        Case("ceiling", "ceiling", SKLEARN_MODEL, CONNECTIONS),
        Case("ours_torch_c32", "ours_torch", TORCH_MODEL, BATCHING_CONNECTIONS),
    ]
    if batching.on:
        out.append(Case("ours_torch_batched_c32", "ours_torch_batched", TORCH_MODEL, BATCHING_CONNECTIONS))
    if only is not None:
        out = [c for c in out if c.name in GROUPS[only]]
    return out


def require_wrk() -> str:
    """Path of wrk, or a SetupError that says how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise SetupError(
            "wrk (the HTTP load generator) is not on PATH; install it with `apt-get install -y wrk` "
            "(Debian/Ubuntu; run `apt-get update` first on a fresh machine)"
        )
    return path


def require_taskset() -> str:
    """Path of taskset (util-linux), needed to pin servers and load generator to separate CPUs."""
    path = shutil.which("taskset")
    if path is None:
        raise SetupError("taskset is not on PATH (package util-linux); or run with --no-pin")
    return path


def mlserver_pins() -> list[str]:
    """MLServer's packages, plus our scikit-learn and numpy versions so the joblib dump unpickles."""
    import numpy
    import sklearn

    return [*MLSERVER_PINS, f"scikit-learn=={sklearn.__version__}", f"numpy=={numpy.__version__}"]


def ensure_env() -> Path:
    """Creates (or updates) the MLServer venv; returns its ``mlserver`` executable."""
    python, mlserver = ENV / "bin" / "python", ENV / "bin" / "mlserver"
    stamp = ENV / ".shipyard-pins"
    pins = mlserver_pins()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
    if not mlserver.exists() or not stamp.exists() or stamp.read_text() != " ".join(pins):
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins], check=True
        )
        stamp.write_text(" ".join(pins))
    return mlserver


def build_models(work: Path) -> Models:
    """The reference artifacts (MLP and scikit-learn baseline, components.reference); writes MLServer's copy.

    The MLServer copy is a joblib dump of the estimator loaded from the verified skops artifact, so
    both servers hold the same fitted model.
    """
    import joblib
    import skops.io as sio

    from components.reference import build_reference
    from components.train_model import core as train
    from shipyard.artifacts import read_dataset, read_model_manifest

    paths = build_reference(work, mlp=train.TrainConfig(max_epochs=30, patience=5))
    manifest = read_model_manifest(paths["baseline"], verify=True)
    weights = paths["baseline"] / train.SKOPS_FILE
    estimator = sio.load(weights, trusted=sio.get_untrusted_types(file=weights))
    repo = work / "mlserver"
    (repo / SKLEARN_MODEL).mkdir(parents=True)
    joblib.dump(estimator, repo / SKLEARN_MODEL / "model.joblib")
    model_settings = {
        "name": SKLEARN_MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    (repo / SKLEARN_MODEL / "model-settings.json").write_text(json.dumps(model_settings, indent=2))

    df, _ = read_dataset(paths["test"])
    row = df[manifest.feature_names].iloc[0].astype("float32").tolist()
    body = {
        "inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP32", "data": row}],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    body_file = work / "request.json"
    body_file.write_text(json.dumps(body))
    return Models(paths["baseline"], paths["model"], repo, body_file, manifest.label_names)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shipyard_command() -> list[str]:
    """The ``shipyard`` console script of this environment (``python -m shipyard.cli`` without it)."""
    script = Path(sys.executable).with_name("shipyard")
    return [str(script)] if script.exists() else [sys.executable, "-m", "shipyard.cli"]


def write_mlserver_settings(repo: Path) -> int:
    """Writes MLServer's ``settings.json`` (loopback, free ports, one process, no access log) into
    its model repository and returns its HTTP port."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "http_port": free_port(),
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": 0,
        "debug": False,
    }
    (repo / "settings.json").write_text(json.dumps(settings, indent=2))
    return int(settings["http_port"])


def ours_server(name: str, model_dir: Path, model: str, work: Path, extra: Sequence[str] = ()) -> Server:
    """``shipyard serve MODEL_DIR --name MODEL`` on 127.0.0.1 and a free port, with ``extra`` options."""
    port = free_port()
    argv = (*shipyard_command(), "serve", str(model_dir), "--name", model, "--host", "127.0.0.1")
    return Server(name, (*argv, "--port", str(port), *extra), port, work)


def servers(
    work: Path, models: Models, mlserver: Path | None, batching: Batching, needed: Sequence[str] | None = None
) -> dict[str, Server]:
    """Every server the cases need, each on its own free port; MLServer's settings.json is written here.

    Args:
        work: The servers' working directory.
        models: The artifacts they serve.
        mlserver: MLServer's executable (None: MLServer is not among ``needed``).
        batching: The TorchScript servers' options.
        needed: The names of the servers to start (None: all).
    """
    http_port = write_mlserver_settings(models.mlserver_repo)

    def ours(name: str, model_dir: Path, model: str, extra: Sequence[str] = ()) -> Server:
        return ours_server(name, model_dir, model, work, extra)

    out = [
        ours("ours_sklearn", models.sklearn_dir, SKLEARN_MODEL),
        Server(
            "mlserver_sklearn",
            (str(mlserver or "mlserver"), "start", str(models.mlserver_repo)),
            http_port,
            models.mlserver_repo,
        ),
        Server("ceiling", (sys.executable, str(SUPPORT / "ceiling.py"), str(port := free_port())), port, work),
        ours("ours_torch", models.torch_dir, TORCH_MODEL, batching.off),
    ]
    if batching.on:
        out.append(ours("ours_torch_batched", models.torch_dir, TORCH_MODEL, batching.on))
    return {s.name: s for s in out if needed is None or s.name in needed}


def prioritized(nice: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that puts the child in a session (and so an autogroup) of its own at ``nice``.

    Other work on the machine (another session's tests, say) otherwise gets an equal share of the
    CPU each server or wrk is pinned to: the measured processes are time-sliced, and a closed-loop
    load generator that is off its CPU starves the server (see the module docstring). Settings the
    kernel refuses (no privilege) are skipped; :func:`priority_in_effect` says what took.
    """
    if nice is None:
        return None

    def preexec() -> None:
        os.setsid()
        try:
            with open("/proc/self/autogroup", "w") as f:  # the session's group weight against other sessions'
                f.write(str(nice))
        except OSError:
            pass  # no autogroups (kernel option off or absent) or not permitted
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)  # inherited by the threads the process starts
        except OSError:
            pass

    return preexec


def priority_in_effect(nice: int | None) -> dict[str, Any]:
    """What :func:`prioritized` achieves here, read back from a child started with it."""
    if nice is None:
        return {"requested": None}
    code = (
        "import json, os\ntry: g = open('/proc/self/autogroup').read().strip()\nexcept OSError: g = None\n"
        "print(json.dumps([os.getpriority(os.PRIO_PROCESS, 0), g]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, preexec_fn=prioritized(nice))
    process_nice, group = json.loads(out.stdout)
    try:
        autogroups = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        autogroups = False
    return {
        "requested": nice,
        "process_nice": process_nice,
        "autogroup": group,
        "autogroups_enabled": autogroups,
        "applied": process_nice == nice and (not autogroups or (group or "").endswith(f"nice {nice}")),
    }


def launch(server: Server, pin: bool, logs: Path, nice: int | None = None) -> subprocess.Popen[bytes]:
    """Starts ``server`` (on CPU 0 when pinned; at ``nice``, see :func:`prioritized`), output to
    ``logs/<name>.log``."""
    argv = ["taskset", "-c", SERVER_CPU, *server.argv] if pin else list(server.argv)
    log = (logs / f"{server.name}.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(SERVE_ENV_PREFIX)}
    env.update(SERVER_ENV)
    try:
        return subprocess.Popen(
            argv, cwd=server.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=prioritized(nice)
        )
    finally:
        log.close()  # the child keeps its own descriptor


def wait_ready(server: Server, proc: subprocess.Popen[bytes], logs: Path, timeout: float = READY_TIMEOUT_S) -> None:
    """Polls ``/v2/health/ready`` until 200.

    Raises:
        SetupError: The process exited or did not become ready in time (with the log's tail).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(server.url("/v2/health/ready"), timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    tail = (logs / f"{server.name}.log").read_text(errors="replace")[-3000:]
    state = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready after {timeout:.0f}s"
    raise SetupError(f"server {server.name} ({shlex.join(server.argv)}) {state}; log tail:\n{tail}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's PID, SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post(url: str, body: bytes) -> dict[str, Any]:
    """POSTs JSON; returns the decoded answer.

    Raises:
        SetupError: Any status but 200.
    """
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise SetupError(f"{url}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc


def check_answers(srv: dict[str, Server], models: Models, case_list: Sequence[Case]) -> dict[str, Any]:
    """Sends the benchmark's request once to every case's server before timing.

    Ours and MLServer must agree on the label and (to 1e-6) the probabilities of the row (when
    both are among the cases).

    Raises:
        SetupError: A server does not answer 200, or the two scikit-learn servers disagree.
    """
    body = models.body_file.read_bytes()
    answers = {c.name: post(srv[c.server].url(c.path), body) for c in case_list}
    out: dict[str, Any] = {}
    if "ours_torch_c32" in answers:
        out["torch"] = {o["name"]: o["data"] for o in answers["ours_torch_c32"]["outputs"]}
    if "ours_sklearn" not in answers or "mlserver_sklearn" not in answers:
        return out
    ours = {o["name"]: o["data"] for o in answers["ours_sklearn"]["outputs"]}
    theirs = {o["name"]: o["data"] for o in answers["mlserver_sklearn"]["outputs"]}
    their_labels = [models.label_names[int(i)] for i in theirs["predict"]]
    gap = max(abs(a - b) for a, b in zip(ours["probabilities"], theirs["predict_proba"], strict=True))
    if ours["label"] != their_labels or gap > 1e-6:
        raise SetupError(f"ours and MLServer disagree on the benchmark row: ours {ours}, MLServer {theirs}")
    return {"ours": ours, "mlserver": theirs, "max_abs_probability_gap": gap, **out}


def wrk_argv(
    wrk: str, url: str, body_file: Path, connections: int, duration_s: int, threads: int, pin: bool
) -> list[str]:
    """The wrk command line of one load run."""
    argv = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration_s}s", "--latency", "--timeout", "5s"]
    argv += ["-s", str(SUPPORT / "post.lua"), url, "--", str(body_file)]
    return ["taskset", "-c", WRK_CPU, *argv] if pin else argv


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far, from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all CPUs have spent busy so far (``/proc/stat``: everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def batch_requests(server: Server) -> tuple[float, float] | None:
    """(model calls, requests) counted by the server's ``shipyard_batch_requests`` histogram, or
    None for a server without it."""
    try:
        with urllib.request.urlopen(server.url("/metrics"), timeout=10) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    found: dict[str, float] = {}
    for line in text.splitlines():
        for part in ("count", "sum"):
            if line.startswith(f"shipyard_batch_requests_{part}{{"):
                found[part] = found.get(part, 0.0) + float(line.rsplit(" ", 1)[1])
    return (found["count"], found["sum"]) if len(found) == 2 else None


def measured_run(
    argv: Sequence[str], duration_s: int, server: Server, pid: int, nice: int | None = None
) -> dict[str, Any]:
    """:func:`run_wrk`, plus what the server and the machine did meanwhile.

    Adds ``server_util`` (CPUs' worth of time the server process used: about 1 when it was the
    bottleneck, less when it waited for requests), ``server_cpu_us_per_request``, ``other_cpus``
    (CPUs' worth of time taken by processes other than the server and wrk: 0 on a quiet machine)
    and, for Shipyard servers with batch metrics, ``mean_batch_requests``.
    """
    batches0, cpu0, busy0 = batch_requests(server), process_cpu_s(pid), machine_busy_s()
    wrk0, t0 = os.times(), time.monotonic()
    out = run_wrk(argv, duration_s, nice)
    elapsed, wrk1 = time.monotonic() - t0, os.times()
    server_cpu, busy = process_cpu_s(pid) - cpu0, machine_busy_s() - busy0
    wrk_cpu = (wrk1.children_user - wrk0.children_user) + (wrk1.children_system - wrk0.children_system)
    out["server_util"] = server_cpu / elapsed
    out["server_cpu_us_per_request"] = server_cpu / max(out["requests"], 1) * 1e6
    out["other_cpus"] = max(0.0, busy - server_cpu - wrk_cpu) / elapsed
    batches1 = batch_requests(server)
    if batches0 is not None and batches1 is not None and batches1[0] > batches0[0]:
        out["mean_batch_requests"] = (batches1[1] - batches0[1]) / (batches1[0] - batches0[0])
    return out


def run_wrk(argv: Sequence[str], duration_s: int, nice: int | None = None) -> dict[str, Any]:
    """Runs wrk once (at ``nice``, see :func:`prioritized`); returns requests/s, latency percentiles
    (ms) and the error count."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, preexec_fn=prioritized(nice))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SetupError(f"wrk failed ({shlex.join(argv)}): {proc.stderr.strip()[-1000:] or proc.stdout[-1000:]}")
    raw = json.loads(lines[-1].removeprefix("RESULT "))
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1e3,
        "p99_ms": raw["p99_us"] / 1e3,
        "errors": errors,
        "requests": raw["requests"],
    }


def compare(runs: dict[str, list[dict[str, Any]]], num: str, den: str, target: float, p99: bool) -> dict[str, Any]:
    """requests/s ratio num ÷ den (median of per-cycle ratios) against ``target``."""
    if num not in runs or den not in runs:
        missing = [c for c in (num, den) if c not in runs]
        return {"measured": False, "missing_cases": missing, "target": target}
    ratios = [a["rps"] / b["rps"] for a, b in zip(runs[num], runs[den], strict=True)]
    out: dict[str, Any] = {
        "measured": True,
        "rps_ratio": round(statistics.median(ratios), 4),
        "per_cycle": [round(r, 4) for r in ratios],
        "target": target,
    }
    if all("server_cpu_us_per_request" in r for r in (*runs[num], *runs[den])):
        # server CPU per request, den ÷ num: what the ratio would be were both servers CPU-bound
        cpu = [
            b["server_cpu_us_per_request"] / a["server_cpu_us_per_request"]
            for a, b in zip(runs[num], runs[den], strict=True)
        ]
        out["cpu_ratio_per_cycle"] = [round(r, 4) for r in cpu]
        out["server_util_per_cycle"] = {case: [round(r["server_util"], 2) for r in runs[case]] for case in (num, den)}
    meets = out["rps_ratio"] >= target
    if p99:
        num_p99 = statistics.median(r["p99_ms"] for r in runs[num])
        den_p99 = statistics.median(r["p99_ms"] for r in runs[den])
        out["p99_ms"] = {num: round(num_p99, 2), den: round(den_p99, 2)}
        out["p99_not_worse"] = num_p99 <= den_p99
        meets = meets and out["p99_not_worse"]
    out["meets_target"] = meets
    return out


def load_warnings(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per load run that did not measure its server alone: a server that was not
    CPU-bound, or other processes taking CPU time meanwhile."""
    out = []
    for case, case_runs in runs.items():
        for cycle, r in enumerate(case_runs):
            if r.get("other_cpus", 0.0) > BUSY_OTHER_CPUS:
                out.append(f"{case}, cycle {cycle}: other processes used {r['other_cpus']:.2f} CPUs")
            if r.get("server_util", 1.0) < SERVER_BOUND_UTIL:
                out.append(f"{case}, cycle {cycle}: the server was busy {r['server_util']:.0%} of the time")
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over cycles, and every cycle's figures."""
    return {
        "rps": round(statistics.median(r["rps"] for r in runs), 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
        "errors": sum(r["errors"] for r in runs),
        "cycles": [{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()} for r in runs],
    }


def batching_options(on_args: Sequence[str] | None) -> Batching:
    """The TorchScript servers' batching options.

    Off: ``--batching off`` (it is on by default for TorchScript). On: ``on_args`` when given, else
    ``SHIPYARD_BENCH_BATCHING_ARGS``, else ``--batching on``; empty leaves the on case out.
    """
    if on_args is None:
        on_args = shlex.split(os.environ.get(BATCHING_ENV_VAR, "--batching on"))
    return Batching(("--batching", "off"), tuple(on_args))


def main(
    cycles: int = 3,
    duration_s: int = 10,
    pin: bool = True,
    batching_args: Sequence[str] | None = None,
    only: str | None = None,
    priority: bool = True,
) -> dict[str, Any]:
    """Runs the benchmark and returns its result dict.

    Args:
        cycles: Load runs per case; cases alternate within a cycle.
        duration_s: Seconds of each load run (wrk ``-d``).
        pin: Servers on CPU 0, wrk on CPU 1 (one thread); else both float and wrk uses 2 threads.
        priority: Run every server and wrk in a session of its own at nice :data:`PRIORITY_NICE`
            (process and autogroup), so other work on the machine does not time-slice them.
        batching_args: Extra ``shipyard serve`` options that turn adaptive batching on (the batched
            TorchScript case); None: see :func:`batching_options`, ``[]``: the off case only.
        only: ``sklearn`` or ``batching`` (a key of :data:`GROUPS`) to run those cases alone, and
            start only their servers (no MLServer venv for ``batching``); None: every case.

    Raises:
        SetupError: wrk/taskset missing, a server that does not start, or disagreeing answers.
    """
    batching = batching_options(batching_args)
    wrk = require_wrk()
    if pin:
        require_taskset()
    threads = 1 if pin else 2
    nice = PRIORITY_NICE if priority else None
    priority_state = priority_in_effect(nice)
    wrk_version = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout.split(" [")[0]
    case_list = cases(batching, only)
    needed = {c.server for c in case_list}
    mlserver = ensure_env() if "mlserver_sklearn" in needed else None
    work = Path(tempfile.mkdtemp(prefix="shipyard-serving-"))
    logs = work / "logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    t0 = time.perf_counter()
    try:
        models = build_models(work)
        srv = servers(work, models, mlserver, batching, sorted(needed))
        mlserver_settings = {
            name: json.loads(path.read_text())
            for name, path in (
                ("settings.json", models.mlserver_repo / "settings.json"),
                ("model-settings.json", models.mlserver_repo / SKLEARN_MODEL / "model-settings.json"),
            )
            if mlserver is not None
        }
        for server in srv.values():  # start all, then wait: their imports overlap
            procs[server.name] = launch(server, pin, logs, nice)
        for server in srv.values():
            wait_ready(server, procs[server.name], logs)
        answers = check_answers(srv, models, case_list)
        request = json.loads(models.body_file.read_text())
        commands = {
            c.name: wrk_argv(wrk, srv[c.server].url(c.path), models.body_file, c.connections, duration_s, threads, pin)
            for c in case_list
        }
        for c in case_list:  # warm-up: first requests, lazy imports, allocator
            run_wrk(
                wrk_argv(wrk, srv[c.server].url(c.path), models.body_file, c.connections, WARMUP_S, threads, pin),
                WARMUP_S,
                nice,
            )
        runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in case_list}
        for _ in range(cycles):
            for c in case_list:
                run = measured_run(commands[c.name], duration_s, srv[c.server], procs[c.server].pid, nice)
                runs[c.name].append(run)
        server_commands = {
            name: shlex.join(["taskset", "-c", SERVER_CPU, *s.argv] if pin else s.argv) for name, s in srv.items()
        }
    finally:
        for proc in procs.values():
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "load_generator": wrk_version,
        "cycles": cycles,
        "duration_s": duration_s,
        "only": only,
        "pinned": pin,
        "priority": priority_state,
        "wrk_threads": threads,
        "server_env": SERVER_ENV,
        "versions": {pkg: metadata.version(pkg) for pkg in ("kserve", "uvicorn", "starlette", "scikit-learn", "torch")},
        "mlserver_packages": mlserver_pins() if mlserver is not None else None,
        "mlserver_settings": mlserver_settings,
        "batching_args": {"off": list(batching.off), "on": list(batching.on)},
        "cases": {
            c.name: {"server": c.server, "connections": c.connections, **summarize(runs[c.name])} for c in case_list
        },
        "ratios": {key: compare(runs, num, den, target, p99) for key, num, den, target, p99 in COMPARISONS},
        "warnings": load_warnings(runs),
        "request": request,
        "answers": answers,
        "commands": {"servers": server_commands, "wrk": {k: shlex.join(v) for k, v in commands.items()}},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    save("serving" if only is None else f"serving-{only}", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serving benchmark (see the module docstring).")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run (default: %(default)s)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and wrk to separate CPUs")
    parser.add_argument(
        "--batching-args",
        help=f"shipyard serve options that enable adaptive batching (default: ${BATCHING_ENV_VAR}); "
        "adds the batched TorchScript case",
    )
    parser.add_argument(
        "--only",
        choices=sorted(GROUPS),
        help="run only these cases (sklearn: ours/MLServer/ceiling; batching: MLP on/off)",
    )
    parser.add_argument(
        "--no-priority",
        action="store_true",
        help=f"run servers and wrk at the default priority (not nice {PRIORITY_NICE} in sessions of their own)",
    )
    args = parser.parse_args()
    try:
        out = main(
            args.cycles,
            args.duration,
            not args.no_pin,
            None if args.batching_args is None else shlex.split(args.batching_args),
            args.only,
            not args.no_priority,
        )
    except SetupError as exc:
        sys.exit(f"serving benchmark: {exc}")
    print(json.dumps(out, indent=2))
