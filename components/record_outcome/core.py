"""Recording a pipeline run's outcome (the ExitHandler's task): final state, reporting task, error."""

from __future__ import annotations

from typing import Any

from shipyard.artifacts import write_json


def record(
    state: str,
    pipeline_job: str | None,
    pipeline_task: str | None,
    error_message: str | None,
    model_name: str,
    tracking_uri: str,
    output_json: str,
) -> dict[str, Any]:
    """Writes the outcome JSON and logs it as an MLflow run in ``shipyard/<model_name>``.

    Args:
        state: The pipeline's final state (``SUCCEEDED``, ``FAILED``, ...).
        pipeline_job: The KFP job resource name.
        pipeline_task: The task that reported the status.
        error_message: The failure message, empty on success.
        model_name: Names the MLflow experiment.
        tracking_uri: MLflow tracking URI ("" for the default, see register_model).
        output_json: Where the outcome JSON goes.

    Returns:
        The outcome dict, including the MLflow run id.
    """
    from components.register_model.core import mlflow_run, resolve_tracking_uri

    pipeline_job, pipeline_task, error_message = pipeline_job or "", pipeline_task or "", error_message or ""
    outcome = {"state": state, "pipeline_job": pipeline_job, "task": pipeline_task, "error": error_message}
    tags = {"shipyard.outcome": state, "kfp.pipeline_job": pipeline_job[:250], "shipyard.error": error_message[:4000]}
    uri = resolve_tracking_uri(tracking_uri)
    with mlflow_run(uri, f"shipyard/{model_name}", "pipeline-outcome", tags) as (_, run):
        outcome["mlflow_run_id"] = run.info.run_id
    write_json(output_json, outcome)
    return outcome
