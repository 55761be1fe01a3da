"""One MLflow run per pipeline step, nested under one run per pipeline run, as KFP 2.17 lays it out.

On a cluster KFP 2.17 creates an MLflow run per pipeline run and a nested run per task, and
injects ``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_ID`` and ``MLFLOW_RUN_ID`` (the task's run)
into the step: :func:`step_run` then logs into that run and leaves its status to KFP. Locally
``shipyard run --local`` (:func:`pipeline_run`) creates the same shape itself: a parent run for the
pipeline run whose id the steps find in ``$SHIPYARD_MLFLOW_PARENT_RUN_ID``, each step a nested
run it opens and ends (FINISHED, or FAILED when the step raises). With no tracking URI at all
(neither given nor in the environment) a step tracks nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: The local pipeline run's MLflow run id, for its steps (KFP sets MLFLOW_RUN_ID on a cluster).
PARENT_ENV = "SHIPYARD_MLFLOW_PARENT_RUN_ID"
#: The code's git commit, baked into the image at build time (``docker/``); else ``git`` is asked.
GIT_COMMIT_ENV = "SHIPYARD_GIT_COMMIT"
_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", PARENT_ENV)
#: MLflow's limit on a parameter value's length.
_PARAM_CHARS = 6000


class StepRun:
    """The MLflow run of one step: parameters, metrics, tags and files, through an explicit client."""

    def __init__(self, client: Any, run_id: str):
        self.client = client
        self.run_id = run_id
        #: The status a nested run ends with (see :meth:`child`); empty: by how its block ended.
        self.status = ""

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:_PARAM_CHARS]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[start : start + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    @contextlib.contextmanager
    def child(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[StepRun]:
        """A run nested under this one (a tuning trial). It ends with its ``status`` (FINISHED
        unless the caller sets another, e.g. KILLED for a pruned trial), or FAILED when the block
        raises without setting one."""
        experiment = self.client.get_run(self.run_id).info.experiment_id
        created = self.client.create_run(
            experiment, run_name=name, tags={"mlflow.parentRunId": self.run_id, **(tags or {})}
        )
        nested = StepRun(self.client, created.info.run_id)
        try:
            yield nested
        except BaseException:
            self.client.set_terminated(nested.run_id, status=nested.status or "FAILED")
            raise
        self.client.set_terminated(nested.run_id, status=nested.status or "FINISHED")


def tracking_uri(explicit: str = "") -> str:
    """The tracking URI a step logs to: ``explicit``, else ``$MLFLOW_TRACKING_URI``, else empty (none)."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI", "")


@contextlib.contextmanager
def step_run(
    step: str, experiment: str, uri: str = "", tags: Mapping[str, str] | None = None
) -> Iterator[StepRun | None]:
    """The step's MLflow run (None when there is no tracking URI).

    Args:
        step: The step's name (the run's name and its ``shipyard.step`` tag).
        experiment: The experiment to use when ``$MLFLOW_EXPERIMENT_ID`` is not set.
        uri: The tracking URI (see :func:`tracking_uri`).
        tags: More tags for the run.
    """
    from mlflow.tracking import MlflowClient

    from components.register_model.core import experiment_id
    from shipyard import rdb

    uri = tracking_uri(uri)
    if not uri:
        yield None
        return
    rdb.prepare(uri, "mlflow", "mlflow")
    client = MlflowClient(uri, registry_uri=uri)
    all_tags = {"shipyard.step": step, **(tags or {})}
    injected = os.environ.get("MLFLOW_RUN_ID", "")
    if injected:  # KFP's run for this task: log into it, KFP ends it
        run = StepRun(client, injected)
        run.set_tags(all_tags)
        yield run
        return
    parent = os.environ.get(PARENT_ENV, "")
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    exp = os.environ.get("MLFLOW_EXPERIMENT_ID") or experiment_id(client, uri, experiment)
    created = client.create_run(exp, run_name=step, tags=all_tags)
    try:
        yield StepRun(client, created.info.run_id)
    except BaseException:
        client.set_terminated(created.info.run_id, status="FAILED")
        raise
    client.set_terminated(created.info.run_id, status="FINISHED")


def parent_tags(client: Any, experiment: str) -> dict[str, str]:
    """Tags that place a run a step creates of its own (a registration, the run's outcome) under
    the pipeline run: the parent of ``shipyard run --local`` (``$SHIPYARD_MLFLOW_PARENT_RUN_ID``),
    else the task's run KFP 2.17 injected (``$MLFLOW_RUN_ID``). Nested (``mlflow.parentRunId``)
    when that run is in ``experiment``; otherwise, or when it cannot be read, only pointed to
    (``shipyard.parent_run``): MLflow nests runs within one experiment only."""
    parent = os.environ.get(PARENT_ENV, "") or os.environ.get("MLFLOW_RUN_ID", "")
    if not parent:
        return {}
    try:
        same = str(client.get_run(parent).info.experiment_id) == str(experiment)
    except Exception:  # noqa: BLE001 - a pointer is all that is lost
        same = False
    return {"mlflow.parentRunId" if same else "shipyard.parent_run": parent}


class PipelineRun:
    """The parent run of a local pipeline run: its id, and whether the pipeline failed."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.failed = False


@contextlib.contextmanager
def pipeline_run(
    uri: str, experiment: str, name: str, tags: Mapping[str, str] | None = None
) -> Iterator[PipelineRun | None]:
    """A local pipeline run's parent MLflow run. While it is open the environment tells the steps
    (run as subprocesses) where to nest their runs. Yields it, or None without a URI or when the
    store cannot be opened (the steps that use it then fail with that store's own error); it ends
    FAILED when the block raises or sets ``failed``, else FINISHED.
    """
    from mlflow.tracking import MlflowClient

    from components.register_model.core import experiment_id
    from shipyard import rdb

    if not uri:
        yield None
        return
    try:
        with _quiet("mlflow", "alembic"):  # the command's own output stays one line per thing
            rdb.prepare(uri, "mlflow", "mlflow")
            client = MlflowClient(uri, registry_uri=uri)
            exp = experiment_id(client, uri, experiment)
            created = client.create_run(exp, run_name=name, tags={"shipyard.pipeline": name, **(tags or {})})
    except (TypeError, AttributeError, NameError):  # a bug here, not a store that cannot be opened
        raise
    except Exception:  # noqa: BLE001 - a store that cannot be opened is the steps' error to report
        # the steps that track open the same store and fail with its error, named in the run's
        # summary; without a parent their runs would be top-level, as on a cluster without 2.17
        created = None
    if created is None:
        yield None
        return
    parent = PipelineRun(created.info.run_id)
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": exp, PARENT_ENV: parent.run_id})
    try:
        yield parent
    except BaseException:
        parent.failed = True
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        client.set_terminated(parent.run_id, status="FAILED" if parent.failed else "FINISHED")


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The named loggers say only warnings and errors inside the block."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def system_tags() -> dict[str, str]:
    """Where the step ran: torch and CUDA/cuDNN versions, the device, CPUs, Python and the code's commit."""
    import torch

    tags = {
        "shipyard.torch": torch.__version__,
        "shipyard.cpu_count": str(os.cpu_count() or 0),
        "shipyard.python": platform.python_version(),
        "shipyard.platform": platform.platform(),
        "shipyard.git_commit": git_commit(),
    }
    if torch.cuda.is_available():
        tags.update(
            {
                "shipyard.device": torch.cuda.get_device_name(0),
                "shipyard.cuda": str(torch.version.cuda),
                "shipyard.cudnn": str(torch.backends.cudnn.version()),
                "shipyard.gpus": str(torch.cuda.device_count()),
            }
        )
    else:
        tags["shipyard.device"] = platform.processor() or platform.machine() or "cpu"
    return tags


def git_commit() -> str:
    """The code's commit: ``$SHIPYARD_GIT_COMMIT`` (an image's build label), else ``git rev-parse
    HEAD`` of the checkout this module is in (with ``-dirty`` for uncommitted changes), else ``unknown``."""
    baked = os.environ.get(GIT_COMMIT_ENV, "")
    if baked:
        return baked
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head or "unknown"
