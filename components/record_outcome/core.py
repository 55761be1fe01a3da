"""Recording a pipeline run's outcome (the ExitHandler's task): final state, failing step, its error.

KFP's final status names the exit handler's group, not the step that failed (under kfp.local
its message is ``Task exit-handler-1 failed.``). The failing step and its one-line error come
from the failure markers the steps leave beside their outputs (:mod:`shipyard.attempts`),
read from the run's directory; where there are none (a pipeline root on an object store that
keeps only successful outputs), the status's own message is recorded.
"""

from __future__ import annotations

from typing import Any

from shipyard import attempts, names
from shipyard.artifacts import write_json
from shipyard.errors import ConfigError


def record(
    state: str,
    pipeline_job: str | None,
    pipeline_task: str | None,
    error_message: str | None,
    model_name: str,
    tracking_uri: str,
    output_json: str,
    source: str = "",
    run_dir: str | None = None,
) -> dict[str, Any]:
    """Writes the outcome JSON and logs it as an MLflow run in ``shipyard/<model name>``.

    Args:
        state: The pipeline's final state (``SUCCEEDED``, ``FAILED``, ...).
        pipeline_job: The KFP job resource name.
        pipeline_task: The task that reported the status.
        error_message: The status's failure message, empty on success.
        model_name: Names the MLflow experiment; empty derives it from ``source``
            (:func:`shipyard.names.resolve_model_name`).
        tracking_uri: MLflow tracking URI ("" for the default, see register_model).
        output_json: Where the outcome JSON goes.
        source: The run's data source (for a derived model name).
        run_dir: The run's directory, whose task directories hold the failure markers; None
            finds it from the running KFP task (the parent of this task's directory), and
            outside a KFP task reads no markers.

    Returns:
        The outcome dict: ``state``, ``pipeline_job``, ``task`` (the reporting task),
        ``failed_step`` and ``error`` (the first failed step and its one-line error, else the
        status's message), ``status_error``, ``failures`` (every failed step), ``model_name``
        and ``mlflow_run_id``.
    """
    from components.register_model.core import mlflow_run, resolve_tracking_uri

    pipeline_job, pipeline_task, error_message = pipeline_job or "", pipeline_task or "", error_message or ""
    try:
        name = names.resolve_model_name(model_name, source)
    except ConfigError:  # the run failed on it already; the outcome is still recorded, under a usable name
        name = names.service_name(model_name or source)
    if run_dir is None:
        here = attempts.task_dir()
        run_dir = str(here.parent) if here is not None else None
    failures = attempts.run_failures(run_dir) if run_dir and state != "SUCCEEDED" else []
    first = failures[0] if failures else None
    outcome: dict[str, Any] = {
        "state": state,
        "pipeline_job": pipeline_job,
        "task": pipeline_task,
        "failed_step": first.task if first else "",
        "error": first.error if first else error_message,
        "status_error": error_message,
        "failures": [{"task": f.task, "error": f.error} for f in failures],
        "model_name": name,
    }
    tags = {
        "shipyard.outcome": state,
        "kfp.pipeline_job": pipeline_job[:250],
        "shipyard.failed_step": outcome["failed_step"][:250],
        "shipyard.error": outcome["error"][:4000],
        "kfp.status_error": error_message[:4000],
    }
    uri = resolve_tracking_uri(tracking_uri)
    with mlflow_run(uri, f"shipyard/{name}", "pipeline-outcome", tags) as (_, run):
        outcome["mlflow_run_id"] = run.info.run_id
    write_json(output_json, outcome)
    return outcome
