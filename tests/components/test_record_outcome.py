"""Tests for components.record_outcome.core: the outcome JSON and its MLflow run."""

from __future__ import annotations

import json

import pytest

from components.record_outcome.core import record
from shipyard import attempts
from shipyard.errors import DataValidationError, DeploymentError


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A fresh SQLite store; no inherited tracking URI; MLflow's global URI undone afterwards."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(None)


def _run(uri: str, run_id: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    return run, client.get_experiment(run.info.experiment_id)


def test_failed_run_is_recorded_in_json_and_mlflow(store, tmp_path):
    out = tmp_path / "outcome" / "outcome.json"

    outcome = record(
        "FAILED",
        "projects/p/pipelineJobs/job-1",
        "train-model",
        "train: validation loss became nan",
        "bc",
        store,
        str(out),
    )

    assert json.loads(out.read_text()) == outcome
    assert outcome == {
        "state": "FAILED",
        "pipeline_job": "projects/p/pipelineJobs/job-1",
        "task": "train-model",
        "failed_step": "",
        "error": "train: validation loss became nan",
        "status_error": "train: validation loss became nan",
        "failures": [],
        "model_name": "bc",
        "mlflow_run_id": outcome["mlflow_run_id"],
    }
    run, experiment = _run(store, outcome["mlflow_run_id"])
    assert experiment.name == "shipyard/bc"
    assert run.info.run_name == "pipeline-outcome" and run.info.status == "FINISHED"
    assert run.data.tags["shipyard.outcome"] == "FAILED"
    assert run.data.tags["kfp.pipeline_job"] == "projects/p/pipelineJobs/job-1"
    assert run.data.tags["shipyard.error"] == "train: validation loss became nan"


def test_none_values_are_recorded_as_empty_strings(store, tmp_path):
    out = tmp_path / "outcome.json"

    outcome = record("SUCCEEDED", None, None, None, "bc", store, str(out))

    assert json.loads(out.read_text()) == outcome
    assert (outcome["state"], outcome["pipeline_job"], outcome["task"], outcome["error"]) == ("SUCCEEDED", "", "", "")
    run, _ = _run(store, outcome["mlflow_run_id"])
    assert run.data.tags["shipyard.outcome"] == "SUCCEEDED"
    assert run.data.tags["shipyard.error"] == "" and run.data.tags["kfp.pipeline_job"] == ""


def test_long_values_are_cut_in_tags_but_kept_in_the_json(store, tmp_path):
    message = "x" * 10_000
    job = "j" * 400

    outcome = record("FAILED", job, "evaluate-model", message, "bc", store, str(tmp_path / "o.json"))

    assert outcome["error"] == message and outcome["pipeline_job"] == job
    run, _ = _run(store, outcome["mlflow_run_id"])
    assert run.data.tags["shipyard.error"] == message[:4000]
    assert run.data.tags["kfp.pipeline_job"] == job[:250]


def test_outcomes_share_the_experiment_with_registered_models(store, tmp_path, baseline_artifacts):
    from components.register_model.core import register

    registered = register(str(baseline_artifacts["baseline"]), "bc", None, True, store)
    outcome = record("SUCCEEDED", "job-2", "register-model", "", "bc", store, str(tmp_path / "o.json"))

    run, experiment = _run(store, outcome["mlflow_run_id"])
    registered_run, _ = _run(store, registered["run_id"])
    assert run.info.experiment_id == registered_run.info.experiment_id
    assert experiment.artifact_location.startswith((tmp_path / "mlartifacts").resolve().as_uri())


def test_default_store_is_under_shipyard_home(monkeypatch, tmp_path):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    try:
        outcome = record("CANCELED", "job-3", "", "", "bc", "", str(tmp_path / "o.json"))
    finally:
        mlflow.set_tracking_uri(None)
    assert (tmp_path / "home" / "mlflow.db").is_file()
    run, _ = _run(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}", outcome["mlflow_run_id"])
    assert run.data.tags["shipyard.outcome"] == "CANCELED"


def test_the_failing_step_and_its_one_line_error_come_from_the_run_markers(store, tmp_path):
    run_dir = tmp_path / "run"
    attempts.write_failure(run_dir / "validate-data", DataValidationError("1 error-severity anomaly; rare_class"))
    attempts.write_failure(run_dir / "deploy-model", DeploymentError("later failure\nwith a second line"))
    (run_dir / "ingest-data").mkdir()  # a task that succeeded: no marker

    outcome = record(
        "FAILED",
        "job-4",
        "exit-handler-1",
        "Task exit-handler-1 failed.",
        "bc",
        store,
        str(tmp_path / "o.json"),
        "",
        str(run_dir),
    )

    assert outcome["failed_step"] == "validate-data"
    assert outcome["error"] == "DataValidationError: 1 error-severity anomaly; rare_class"
    assert outcome["status_error"] == "Task exit-handler-1 failed." and outcome["task"] == "exit-handler-1"
    assert outcome["failures"] == [
        {"task": "validate-data", "error": "DataValidationError: 1 error-severity anomaly; rare_class"},
        {"task": "deploy-model", "error": "DeploymentError: later failure"},
    ]
    tags = _run(store, outcome["mlflow_run_id"])[0].data.tags
    assert tags["shipyard.failed_step"] == "validate-data"
    assert tags["shipyard.error"] == "DataValidationError: 1 error-severity anomaly; rare_class"
    assert tags["kfp.status_error"] == "Task exit-handler-1 failed."


def test_a_succeeded_run_reports_no_failure_even_with_a_marker_left(store, tmp_path):
    run_dir = tmp_path / "run"
    attempts.write_failure(run_dir / "train-model", RuntimeError("preempted once"))

    outcome = record(
        "SUCCEEDED", "job-5", "exit-handler-1", "", "bc", store, str(tmp_path / "o.json"), "", str(run_dir)
    )

    assert outcome["failed_step"] == "" and outcome["error"] == "" and outcome["failures"] == []


def test_an_empty_model_name_is_derived_from_the_data(store, tmp_path):
    outcome = record("FAILED", "job-6", "", "", "", store, str(tmp_path / "o.json"), "sklearn:diabetes")

    _, experiment = _run(store, outcome["mlflow_run_id"])
    assert outcome["model_name"] == "diabetes" and experiment.name == "shipyard/diabetes"


def test_an_unusable_model_name_is_still_recorded(store, tmp_path):
    outcome = record("FAILED", "job-7", "", "", "team/Churn", store, str(tmp_path / "o.json"), "x.csv")

    _, experiment = _run(store, outcome["mlflow_run_id"])
    assert experiment.name == "shipyard/team-churn" and outcome["state"] == "FAILED"
