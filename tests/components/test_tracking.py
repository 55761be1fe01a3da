"""components.tracking and the train step's MLflow run, on a real MLflow SQLite store: the KFP 2.17
shape (a run per pipeline run, a nested run per step), an injected MLFLOW_RUN_ID honoured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from components import tracking
from components.train_model import core
from shipyard.artifacts import DATA_FILE, sha256_file

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"max_epochs": 5, "min_epochs": 5, "patience": 5, "width": 16, "depth": 1, "ensemble": 2, "gbdt_max_iter": 20}


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", tracking.PARENT_ENV):
        monkeypatch.delenv(key, raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_without_a_tracking_uri_nothing_is_tracked(store):
    with tracking.step_run("train", "shipyard/x") as run:
        assert run is None


_STEP = """
import sys
from components import tracking
with tracking.step_run(sys.argv[1], "shipyard/unused") as run:
    run.log_metrics({"m": 1.5}, step=2)
    if sys.argv[1] == "bad":
        raise SystemExit("step failed")
"""


def _step(name: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", _STEP, name], cwd=ROOT, env=env, capture_output=True).returncode


def test_a_local_pipeline_run_nests_one_run_per_step_process(store):
    with tracking.pipeline_run(store, "shipyard/demo", "train-and-deploy") as parent:
        assert os.environ[tracking.PARENT_ENV] == parent.run_id
        assert _step("good") == 0 and _step("bad") != 0
        parent.failed = True
    assert tracking.PARENT_ENV not in os.environ and "MLFLOW_EXPERIMENT_ID" not in os.environ
    client = MlflowClient(store)
    top = client.get_run(parent.run_id)
    assert top.info.status == "FAILED" and top.data.tags["shipyard.pipeline"] == "train-and-deploy"
    children = client.search_runs([top.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'")
    status = {r.data.tags["shipyard.step"]: r.info.status for r in children}
    assert status == {"good": "FINISHED", "bad": "FAILED"}
    good = next(r for r in children if r.info.run_name == "good")
    assert [(m.value, m.step) for m in client.get_metric_history(good.info.run_id, "m")] == [(1.5, 2)]
    assert client.get_experiment(top.info.experiment_id).name == "shipyard/demo"


def test_a_store_that_cannot_be_opened_leaves_the_error_to_the_steps(tmp_path):
    """No parent run and no environment for the steps: each step that tracks opens the store itself
    and fails with its error, which the run's summary names."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with tracking.pipeline_run(f"sqlite:///{blocker}/mlflow.db", "shipyard/demo", "train-and-deploy") as parent:
        assert parent is None and tracking.PARENT_ENV not in os.environ
    assert blocker.read_text() == ""


def test_a_registration_or_outcome_run_is_nested_under_the_pipeline_run(store):
    """Runs a step opens of its own (register_model, record_outcome) sit under the local pipeline
    run in its experiment, and only point to it from another experiment."""
    from components.register_model.core import mlflow_run

    with tracking.pipeline_run(store, "shipyard/demo", "train-and-deploy") as parent:
        with mlflow_run(store, "shipyard/demo", "demo-register", {"k": "v"}) as (_, same):
            pass
        with mlflow_run(store, "shipyard/other", "pipeline-outcome", {}) as (_, other):
            pass
    with mlflow_run(store, "shipyard/demo", "alone", {}) as (_, alone):
        pass
    client = MlflowClient(store)
    tags = {
        name: client.get_run(r.info.run_id).data.tags
        for name, r in (("same", same), ("other", other), ("alone", alone))
    }
    assert tags["same"]["mlflow.parentRunId"] == parent.run_id and tags["same"]["k"] == "v"
    assert tags["other"]["shipyard.parent_run"] == parent.run_id and "mlflow.parentRunId" not in tags["other"]
    assert "mlflow.parentRunId" not in tags["alone"] and "shipyard.parent_run" not in tags["alone"]


def test_a_run_id_that_kfp_injected_is_logged_into_and_left_running(store, monkeypatch):
    client = MlflowClient(store)
    exp = client.create_experiment("kfp")
    task_run = client.create_run(exp, run_name="kfp-task").info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_RUN_ID", task_run)
    with tracking.step_run("train", "shipyard/unused") as run:
        run.log_params({"lr": 0.1})
    got = client.get_run(task_run)
    assert got.info.status == "RUNNING" and got.data.params == {"lr": "0.1"}
    assert got.data.tags["shipyard.step"] == "train"
    assert len(client.search_runs([exp])) == 1


def test_train_logs_params_epochs_system_data_and_curves(baseline_artifacts, tmp_path, store):
    summary = core.train(
        str(baseline_artifacts["train"]),
        str(baseline_artifacts["val"]),
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        core.TrainConfig.from_dict(SMALL),
        comparison_md=str(tmp_path / "comparison.md"),
        tracking_uri=store,
        curves_html=str(tmp_path / "curves.html"),
    )
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("shipyard/train").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["max_epochs"] == "5"
    history = client.get_metric_history(run.info.run_id, "mlp_val_loss")
    assert [m.step for m in history] == list(range(5))
    assert [m.value for m in history] == [h["val_loss"] for h in summary["history"]]
    names = ("mlp_train_loss", "mlp_lr", "mlp_seconds", "mlp_rows_per_second", "gbdt_fit_seconds", "linear_accuracy")
    for name in names:
        assert name in run.data.metrics, name
    tags = run.data.tags
    assert tags["shipyard.train_sha256"] == sha256_file(Path(baseline_artifacts["train"]) / DATA_FILE)
    assert tags["shipyard.candidate"] == summary["candidate"] and tags["shipyard.git_commit"] != "unknown"
    assert int(tags["shipyard.cpu_count"]) >= 1 and tags["shipyard.torch"]
    files = {f.path for f in client.list_artifacts(run.info.run_id, "train")}
    assert files == {"train/training_curves.png", "train/comparison.md"}
    html = (tmp_path / "curves.html").read_text()
    assert "data:image/png;base64," in html and "5 epochs" in html


def test_the_commit_baked_into_an_image_wins(monkeypatch):
    monkeypatch.setenv(tracking.GIT_COMMIT_ENV, "abc123")
    assert tracking.git_commit() == "abc123"
    monkeypatch.delenv(tracking.GIT_COMMIT_ENV)
    assert len(tracking.git_commit().split("-")[0]) == 40  # this checkout's HEAD


def test_every_tuning_trial_is_a_run_nested_under_the_tune_step(baseline_artifacts, tmp_path, store):
    from components.tune_hyperparams import core as tune

    config = tune.TuneConfig.from_dict({"n_trials": 3, "base": {**SMALL, "max_epochs": 3, "min_epochs": 3}})
    result = tune.tune(
        str(baseline_artifacts["train"]),
        str(baseline_artifacts["val"]),
        str(tmp_path / "study"),
        str(tmp_path / "report.md"),
        config,
        tracking_uri=store,
    )
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("shipyard/tune").experiment_id])
    (step,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = sorted((r for r in runs if r is not step), key=lambda r: int(r.data.tags["shipyard.trial"]))
    assert len(trials) == result["trials"] == 3
    assert all(r.data.tags["mlflow.parentRunId"] == step.info.run_id for r in trials)
    assert step.data.metrics["best_value"] == result["best_value"]
    for run in trials:
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert [m.step for m in history] == list(range(3)), run.info.run_name
        assert run.data.tags["shipyard.trial_state"] == "COMPLETE" and run.info.status == "FINISHED"
        assert set(run.data.params) == set(config.search_space)


@pytest.mark.parametrize("image", ["cpu", "gpu"])
def test_each_image_bakes_in_the_commit_it_was_built_from(image):
    lines = (ROOT / "docker" / f"{image}.Dockerfile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    after = lines[start + 1 :]
    assert f"ENV {tracking.GIT_COMMIT_ENV}=${tracking.GIT_COMMIT_ENV}" in after
    assert any(line.startswith(f"ARG {tracking.GIT_COMMIT_ENV}") for line in after)
