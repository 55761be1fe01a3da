"""Shared fixtures. Each slow or external resource is reached through a fixture that declares its tier.

Resources and the marker a test using them must carry (checked at collection, see ``tiers.py``):

- ``artifacts``: the breast-cancer reference with the trained MLP and its quantized variant → ``slow``
- ``local_cli``, ``local_run``, ``kfp_local``: a pipeline run under kfp.local → ``local``
- ``model_server``, ``started_servers``: ``shipyard serve`` processes on 127.0.0.1 → ``serving``
- ``postgres``, ``scratch_postgres``: PostgreSQL on 127.0.0.1:5432 → ``integration``
- ``gcs``: a Google Cloud Storage emulator on 127.0.0.1 (``gs://`` through ``shipyard.storage``) → ``serving``

``baseline_artifacts`` (the reference data split three ways and the scikit-learn baseline, fitted in
well under a second) and ``cli`` (the command line, for anything but a kfp.local run) are fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from tiers import pytest_make_collect_report, resource  # noqa: F401  (the hook is registered from here)

pytest_plugins = ("pytester",)

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _no_leaked_mlflow_registry_uri() -> Iterator[None]:
    """``mlflow.set_registry_uri(uri)`` also exports ``MLFLOW_REGISTRY_URI`` and ``set_registry_uri(None)``
    leaves it set, so one test's registry would become every later test's default: undone after each test."""
    before = os.environ.get("MLFLOW_REGISTRY_URI")
    yield
    utils = sys.modules.get("mlflow.tracking._model_registry.utils")
    if utils is not None:
        utils.set_registry_uri(None)
    if before is None:
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    else:
        os.environ["MLFLOW_REGISTRY_URI"] = before


@pytest.fixture(scope="session")
def baseline_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference data ingested and split, and the scikit-learn baseline fitted on it (no MLP)."""
    from components.reference import build_reference

    return build_reference(tmp_path_factory.mktemp("baseline-artifacts"))


@resource("slow", scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reference with the TorchScript MLP trained (``model``) and quantized (``quantized``) too."""
    from components.quantize_model.core import QuantizeConfig
    from components.reference import build_reference
    from components.train_model.core import TrainConfig

    return build_reference(
        tmp_path_factory.mktemp("artifacts"),
        mlp=TrainConfig(max_epochs=60, patience=10),
        quantize=QuantizeConfig(latency_repeats=20),
    )


@pytest.fixture
def copy_artifact(tmp_path: Path):
    """Copies a session artifact into the test's tmp dir (for tests that modify it)."""

    def copy(src: Path) -> Path:
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        return dst

    return copy


def run_cli(
    *args: str, timeout: float = 900, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``shipyard ARGS...`` in a fresh interpreter (in ``cwd``, with ``env``) and returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=None if env is None else dict(env),
    )


def _run_logs(args: tuple[str, ...], cwd: Path | None = None) -> Path | None:
    """Where ``shipyard run ... --local`` writes its run logs (``None``: not a local run)."""
    if not args or args[0] != "run" or "--local" not in args:
        return None
    output = args[args.index("--output") + 1] if "--output" in args[:-1] else "shipyard-output"
    return (cwd or Path.cwd()) / output / "logs"


def cli_without_local_runs(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli`, failing the test when the command started a kfp.local run (that is ``local_cli``'s)."""
    logs = _run_logs(args, kwargs.get("cwd"))
    existed = logs is not None and logs.exists()
    proc = run_cli(*args, **kwargs)
    if logs is not None and not existed and logs.exists():
        pytest.fail(
            f"`shipyard {' '.join(args)}` started a kfp.local run (it wrote {logs}): "
            "use the local_cli fixture and mark the test local",
            pytrace=False,
        )
    return proc


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """The command line in a fresh interpreter, for anything but a pipeline run (usage errors of ``run`` are fine)."""
    return cli_without_local_runs


@resource("local", scope="session")
def local_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """The command line for ``shipyard run ... --local``: pipeline runs under kfp.local."""
    return run_cli


def run_flagship(local_cli: Callable[..., Any], out: Path, data: Path, **options: str) -> dict[str, Any]:
    """``shipyard run train_and_deploy --local`` on ``data`` with ``--set KEY=VALUE`` per option;
    asserts it succeeded and returns ``{"out", "dir" (the run directory), "stdout"}``."""
    sets = [arg for key, value in options.items() for arg in ("--set", f"{key}={value}")]
    proc = local_cli("run", "train_and_deploy", "--local", "--output", str(out), "--set", f"data={data}", *sets)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = next((out / "artifacts").glob("train-and-deploy-*"))
    return {"out": out, "dir": run_dir, "stdout": proc.stdout}


@resource("local", scope="session")
def local_run() -> Callable[..., Any]:
    """:func:`shipyard.localrun.run`: a pipeline run in this process under kfp.local."""
    from shipyard import localrun

    return localrun.run


@resource("local")
def kfp_local(tmp_path: Path) -> Path:
    """kfp.local set up in this process (SubprocessRunner, no venv); returns the pipeline root."""
    from kfp import local

    root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    return root


@resource("serving", scope="session")
def model_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., contextlib.AbstractContextManager]]:
    """Starts ``shipyard serve`` on 127.0.0.1 (a ``LocalServer``), waits until it is ready, stops it by PID.

    Call it as ``with model_server(model_dir, name, args=[...]) as server:``; a server still running at the
    end of the session (a test that failed half-way) is stopped then.
    """
    from serving.rollout.processes import LocalServer

    running: list[LocalServer] = []

    @contextlib.contextmanager
    def start(model_dir: Path | str, name: str, args: tuple[str, ...] | list[str] = (), ready_s: float = 90):
        log = tmp_path_factory.mktemp("server") / "server.log"
        server = LocalServer(str(model_dir), name, log_path=str(log), args=list(args))
        running.append(server)
        with server:
            server.wait_ready(ready_s)
            yield server

    yield start
    for server in running:
        server.__exit__(None, None, None)


@resource("serving")
def started_servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """Every ``LocalServer`` the code under test starts (deploy_model's local target), in order; stopped at the end."""
    from components.deploy_model import core

    servers: list[core.LocalServer] = []

    class Recording(core.LocalServer):
        def __enter__(self):
            servers.append(self)
            return super().__enter__()

    monkeypatch.setattr(core, "LocalServer", Recording)
    yield servers
    for server in servers:
        server.__exit__(None, None, None)


def postgres_available() -> bool:
    """True when PostgreSQL answers on 127.0.0.1:5432."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


@resource("integration", scope="session")
def postgres() -> str:
    """The URL of the ``test`` database on 127.0.0.1:5432 (user postgres, trust auth); skips when it does not answer."""
    from scratch_postgres import ADMIN_URL

    if not postgres_available():
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432")
    return ADMIN_URL


@resource("integration", scope="session")
def scratch_postgres(postgres: str) -> Callable[[str], contextlib.AbstractContextManager[str]]:
    """``with scratch_postgres(prefix) as url:`` a database of its own, dropped afterwards (scratch_postgres.py)."""
    from scratch_postgres import scratch_database

    return scratch_database


#: The flagship's executor tasks, in pipeline order (the exit handler's record-outcome last).
FLAGSHIP_STAGES = (
    "ingest-data",
    "validate-data",
    "split-data",
    "tune-hyperparams",
    "train-model",
    "quantize-model",
    "evaluate-model",
    "register-model",
    "deploy-model",
    "roll-out",
    "record-outcome",
)

CRD_NAME = "kserve-inferenceservice-crd.json"
#: The shared schema beside the checkout (``../shared/schemas``), the copy committed under tests/.
CRD_SHARED = TESTS.parents[1] / "shared" / "schemas" / CRD_NAME
CRD_COPY = TESTS / "schemas" / CRD_NAME


def crd_path(environ: Mapping[str, str] = os.environ, shared: Path = CRD_SHARED) -> Path:
    """The InferenceService CRD to check against: ``SHIPYARD_ISVC_CRD``, else the shared one, else the copy."""
    if environ.get("SHIPYARD_ISVC_CRD"):
        return Path(environ["SHIPYARD_ISVC_CRD"])
    return shared if shared.is_file() else CRD_COPY


@pytest.fixture(scope="session")
def isvc_schema() -> dict:
    """The InferenceService openAPIV3Schema (from :func:`crd_path`; never skipped)."""
    crd = json.loads(crd_path().read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="session")
def validate_isvc(isvc_schema: dict) -> Callable[[dict], None]:
    """Validates an InferenceService against the CRD schema (the schema is checked once: it is large)."""
    import jsonschema

    validator = jsonschema.validators.validator_for(isvc_schema)(isvc_schema)
    return validator.validate


# --- Local rollout (serving/rollout: haproxy, prometheus) -------------------------------------------

#: Debian packages the local rollout backend runs, by the binary each provides.
ROLLOUT_PACKAGES = {"haproxy": "haproxy", "prometheus": "prometheus"}


def _rollout_binaries() -> dict[str, str | None]:
    return {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin") for name in ROLLOUT_PACKAGES}


@resource("serving", scope="session")
def rollout_tools() -> dict[str, str]:
    """HAProxy and Prometheus (``binary -> path``): installed with apt-get only when missing; skips,
    naming the reason, only where that install is impossible (no apt-get, not root, no network)."""
    found = _rollout_binaries()
    missing = [ROLLOUT_PACKAGES[name] for name, path in found.items() if path is None]
    if missing:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip(f"{', '.join(missing)} not installed and cannot be (needs apt-get as root)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *missing]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
            if proc.returncode != 0:
                pytest.skip(
                    f"`{' '.join(cmd)}` failed, so {', '.join(missing)} cannot be installed: {proc.stderr[-300:]}"
                )
        found = _rollout_binaries()
        if any(path is None for path in found.values()):
            pytest.skip(f"{', '.join(missing)} still missing after apt-get install")
    return {name: str(path) for name, path in found.items()}


# --- gs:// (shipyard.storage against a GCS emulator) ---------------------------------------------

#: The emulator's bucket; each test writes under its own prefix.
GCS_BUCKET = "shipyard-test"


@resource("serving", scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A GCS JSON-API emulator (the ``gcp-storage-emulator`` dev dependency) on 127.0.0.1, in memory,
    with :data:`GCS_BUCKET` created: its ``http://host:port``. Stopped by its PID at the session's end."""
    from mlflow_process import child_server, free_port

    port = str(free_port())
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", port]
    log = tmp_path_factory.mktemp("gcs-emulator") / "emulator.log"
    with child_server([*args, "--in-memory", "--default-bucket", GCS_BUCKET], f"{url}/storage/v1/b", log, ready_s=60):
        yield url


@pytest.fixture
def gcs(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A ``gs://`` prefix of this test's own (new on every run) in the emulator, which
    ``shipyard.storage`` reaches through ``STORAGE_EMULATOR_HOST`` (the google-cloud-storage
    client's own variable)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:80]
    return f"gs://{GCS_BUCKET}/{name}-{uuid.uuid4().hex[:8]}"  # the session's bucket: a prefix no other test has
