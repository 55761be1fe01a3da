"""Failed flagship runs under kfp.local: the deterministic problem found early, and an outcome that names it.

One run on a CSV with two string columns: a feature (which validate_data always refused) and
the label, with a class per row (which used to pass validation and fail tuning three times
over): validate_data stops it, naming both, the summary shows what the exit handler did,
and the outcome JSON and its MLflow run name the failing step and its one-line error. A second
run whose exit handler itself fails (its MLflow store cannot be created) shows that handler as
FAILED, with its own error, in the summary and in the one-line error.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.local


def _rows(stdout: str) -> dict[str, tuple[str, str]]:
    """Summary table rows: stage → (status, the rest of the line)."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0][:1].isalpha() and "-" in parts[0] and not parts[0].endswith(":"):
            status, _, rest = parts[1].partition("  ")
            rows[parts[0]] = (status.strip(), rest.strip())
    return rows


@pytest.fixture(scope="module")
def labelled_by_name(tmp_path_factory, local_cli) -> dict:
    import numpy as np
    import pandas as pd

    root = tmp_path_factory.mktemp("string-label")
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame(
        {
            "a": rng.random(n),
            "city": rng.choice(["oslo", "rome", "lima"], n),
            "customer": [f"cust-{i:04d}" for i in range(n)],
        }
    )
    data = root / "Customer Scores.csv"
    frame.to_csv(data, index=False)
    out = root / "out"
    proc = local_cli(
        "run", "train_and_deploy", "--local", "--output", str(out), "--set", f"data={data}", "--set", "label=customer"
    )
    run_dir = next((out / "artifacts").glob("train-and-deploy-*"))
    return {"proc": proc, "out": out, "dir": run_dir}


def test_an_id_as_label_fails_in_validation_not_in_tuning(labelled_by_name):
    """A label unique per row (an id chosen by mistake) has classes too rare to train on; the string
    feature ``city`` is a categorical feature and no anomaly."""
    proc = labelled_by_name["proc"]
    assert proc.returncode == 1
    error = "task 'validate-data' failed: DataValidationError: 1 error-severity anomaly; first: rare_class"
    assert error in proc.stderr
    found = json.loads((labelled_by_name["dir"] / "validate-data" / "anomalies").read_text())["anomalies"]
    assert {(a["type"], a["column"]) for a in found if a["severity"] == "error"} == {("rare_class", "customer")}
    rows = _rows(proc.stdout)
    assert rows["validate-data"][0] == "FAILED"
    assert rows["tune-hyperparams"][0] == "not run" and rows["train-model"][0] == "not run"
    assert not (labelled_by_name["dir"] / "tune-hyperparams").exists()


def test_the_summary_shows_what_the_exit_handler_recorded(labelled_by_name):
    rows = _rows(labelled_by_name["proc"].stdout)
    status, figure = rows["record-outcome"]
    assert status == "done" and "outcome FAILED: recorded validate-data failed (MLflow run" in figure
    assert "model name:    customer-scores" in labelled_by_name["proc"].stdout


def test_the_outcome_names_the_failing_step_and_its_error(labelled_by_name):
    from mlflow.tracking import MlflowClient

    outcome = json.loads((labelled_by_name["dir"] / "record-outcome" / "outcome").read_text())
    assert outcome["state"] == "FAILED" and outcome["failed_step"] == "validate-data"
    assert outcome["error"].startswith("DataValidationError: 1 error-severity anomaly; first: rare_class")
    assert outcome["status_error"] == "Task exit-handler-1 failed."  # all that kfp.local's status says
    assert outcome["model_name"] == "customer-scores"
    client = MlflowClient(f"sqlite:///{labelled_by_name['out'] / 'mlflow.db'}")
    run = client.get_run(outcome["mlflow_run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "shipyard/customer-scores"
    assert run.data.tags["shipyard.failed_step"] == "validate-data"
    assert run.data.tags["shipyard.error"] == outcome["error"]


def test_an_exit_handler_that_fails_is_shown_failed_with_its_own_error(tmp_path, local_cli):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    data = tmp_path / "tiny.csv"
    data.write_text("a,target\n1,0\n2,1\n")
    proc = local_cli(
        "run",
        "train_and_deploy",
        "--local",
        "--output",
        str(tmp_path / "out"),
        "--set",
        f"data={data}",
        "--set",
        f"mlflow_tracking_uri=sqlite:///{blocker}/mlflow.db",
    )
    assert proc.returncode == 1
    rows = _rows(proc.stdout)
    assert rows["validate-data"][0] == "FAILED" and "too_few_rows" in rows["validate-data"][1]
    assert rows["record-outcome"][0] == "FAILED" and rows["record-outcome"][1]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "task 'validate-data' failed: DataValidationError" in lines[0]
    assert "task 'record-outcome' failed too:" in lines[0]
