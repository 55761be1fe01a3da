"""The flagship pipeline end to end under kfp.local, checking each stage's artifacts against the contracts.

The run reads breast cancer from a CSV named ``Tumour Scans.csv`` and gives no model name, so
every step that names the model uses the one derived from the file: ``tumour-scans``.
"""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import FLAGSHIP_STAGES, run_flagship

from shipyard.artifacts import read_dataset, read_model_manifest

pytestmark = [pytest.mark.local, pytest.mark.slow]


NAME = "tumour-scans"
#: A value threshold; the in-run baseline is a reported row only, so how this machine's MLP compares
#: with it cannot block the blessing (and so the deploy step).
EVALUATE = '{"thresholds": {"roc_auc": {"min": 0.9}}}'
#: A short rollout policy with latency bounds a loaded 2-core machine meets (the second run's canary).
ROLLOUT = json.dumps(
    {
        "policy": {
            "interval_s": 3,
            "min_requests": 5,
            "step_weights": [20, 50, 100],
            "max_inconclusive": 6,
            "p99_max_s": 2.0,
            "p99_max_ratio": 20.0,
        }
    }
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, local_cli) -> dict:
    from sklearn.datasets import load_breast_cancer

    out = tmp_path_factory.mktemp("local-run")
    data = out / "Tumour Scans.csv"
    load_breast_cancer(as_frame=True).frame.to_csv(data, index=False)
    return run_flagship(
        local_cli,
        out,
        data,
        tune='{"n_trials": 3}',
        # the MLP, so its quantized variants are checked on every machine (the mixed run checks "best")
        train='{"candidate": "mlp"}',
        evaluate=EVALUATE,
    )


def test_summary_table_names_every_stage(run):
    for stage in FLAGSHIP_STAGES:
        assert stage in run["stdout"]
    assert "MLflow UI:" in run["stdout"] and "mlflow.db" in run["stdout"]
    assert f"model name:    {NAME}" in run["stdout"]


def test_dataset_contracts(run):
    d = run["dir"]
    df, schema = read_dataset(d / "ingest-data" / "dataset")
    assert len(df) == 569 and schema.label == "target" and len(schema.features) == 30
    sizes = {part: len(read_dataset(d / "split-data" / part)[0]) for part in ("train", "val", "test")}
    assert sum(sizes.values()) == 569 and sizes["train"] > sizes["val"] > 0
    validation_schema = json.loads((d / "validate-data" / "schema" / "schema.json").read_text())
    assert validation_schema["columns"]["target"]["role"] == "label"


def test_model_contracts(run):
    d = run["dir"]
    comparison = json.loads((d / "train-model" / "comparison_json").read_text())
    assert set(comparison["table"]) == {"gbdt", "mlp", "linear"} and comparison["candidate"] == "mlp"
    for path, fmt in ((d / "train-model" / "model", "torchscript"), (d / "train-model" / "baseline", "sklearn-skops")):
        manifest = read_model_manifest(path)  # verifies every sha256
        assert manifest.format == fmt and manifest.task == "binary" and manifest.label_names == (0, 1)
        assert manifest.preprocessing is None  # all-numeric without nulls: the identity
    quantized = read_model_manifest(d / "quantize-model" / "quantized")
    assert quantized.parent and quantized.parent["format"] == "torchscript"
    table = json.loads((d / "quantize-model" / "table").read_text())
    assert set(table["table"]) == {"fp32-torchscript", "int8-torchscript", "fp32-onnx", "int8-onnx"}


def test_tuning_and_evaluation(run):
    d = run["dir"]
    trials = json.loads((d / "tune-hyperparams" / "study" / "trials.json").read_text())
    assert trials["result"]["trials"] == 3
    evaluation = json.loads((d / "evaluate-model" / "evaluation").read_text())
    assert evaluation["metrics"]["roc_auc"] > 0.9
    assert isinstance(evaluation["blessed"], bool)


def test_registered_in_mlflow(run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{run['out'] / 'mlflow.db'}")
    assert [m.name for m in client.search_registered_models()] == [NAME]  # derived from the file name
    versions = client.search_model_versions(f"name='{NAME}'")
    assert len(versions) == 1
    evaluation = json.loads((run["dir"] / "evaluate-model" / "evaluation").read_text())
    assert evaluation["blessed"], evaluation["checks"]
    assert client.get_model_version_by_alias(NAME, "challenger").version == versions[0].version
    # no champion before: the rollout promotes the first version without canary analysis
    assert client.get_model_version_by_alias(NAME, "champion").version == versions[0].version
    rollout = json.loads((run["dir"] / "roll-out" / "rollout" / "rollout.json").read_text())
    assert rollout["phase"] == "Succeeded" and "no @champion yet" in rollout["reason"]
    assert client.get_model_version(NAME, versions[0].version).tags["shipyard.rollout"] == "Succeeded"
    run_data = client.get_run(versions[0].run_id).data
    assert "test_roc_auc" in run_data.metrics and run_data.tags["shipyard.format"] in ("onnx", "torchscript")


def test_deploy_smoke_and_isvc(run, isvc_schema):
    import jsonschema

    deploy = run["dir"] / "deploy-model"
    evaluation = json.loads((run["dir"] / "evaluate-model" / "evaluation").read_text())
    assert evaluation["blessed"], evaluation["checks"]
    report = json.loads((deploy / "deployment" / "result.json").read_text())
    assert report["smoke"]["v1"] == "passed" and report["smoke"]["v2"] == "passed"
    assert report["endpoint"].startswith("http://127.0.0.1:")
    assert report["endpoint"].endswith(f"/v2/models/{NAME}/infer") and report["service"] == NAME
    isvc = yaml.safe_load((deploy / "deployment" / "inferenceservice.yaml").read_text())
    jsonschema.validate(isvc, isvc_schema)
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert isvc["metadata"]["name"] == NAME


def test_outcome_recorded(run):
    from mlflow.tracking import MlflowClient

    outcome = json.loads((run["dir"] / "record-outcome" / "outcome").read_text())
    assert outcome["state"] == "SUCCEEDED" and outcome["mlflow_run_id"]
    assert outcome["model_name"] == NAME and outcome["failed_step"] == "" and outcome["failures"] == []
    client = MlflowClient(f"sqlite:///{run['out'] / 'mlflow.db'}")
    experiment = client.get_experiment(client.get_run(outcome["mlflow_run_id"]).info.experiment_id)
    assert experiment.name == f"shipyard/{NAME}"


def test_the_next_run_is_judged_against_and_rolled_out_beside_the_champion(run, local_cli, cli, tmp_path_factory):
    """Last in this module: it adds a second version to the first run's registry."""
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{run['out'] / 'mlflow.db'}"
    promoted = cli("models", "promote", NAME, "1", "--tracking-uri", store)
    assert promoted.returncode == 0 and "already the champion" in promoted.stdout, promoted.stdout + promoted.stderr
    second = run_flagship(
        local_cli,
        tmp_path_factory.mktemp("second-run"),
        run["out"] / "Tumour Scans.csv",
        mlflow_tracking_uri=store,
        tune='{"n_trials": 3}',
        train='{"candidate": "mlp"}',
        evaluate=EVALUATE,
        rollout=ROLLOUT,
    )
    evaluation = json.loads((second["dir"] / "evaluate-model" / "evaluation").read_text())
    assert str(evaluation["champion"]["version"]) == "1"  # fetched from the registry by the evaluate step
    champion_rows = [c for c in evaluation["checks"] if c["kind"] == "champion"]
    assert champion_rows and champion_rows[0]["metric"] == evaluation["primary_metric"]
    client = MlflowClient(store)
    version = client.get_model_version(NAME, "2")
    assert version.tags["shipyard.eval.champion_version"] == "1"
    # the same data and seed make the same model, so it is blessed and its canary passes every step
    assert evaluation["blessed"], evaluation["checks"]
    rollout = json.loads((second["dir"] / "roll-out" / "rollout" / "rollout.json").read_text())
    assert rollout["phase"] == "Succeeded", (rollout["reason"], rollout["timeline"])
    assert [e["weight"] for e in rollout["timeline"] if e.get("decision", "").startswith("weight")] == [20, 50, 100]
    assert int(client.get_model_version_by_alias(NAME, "champion").version) == 2  # moved by the rollout
    assert int(client.get_model_version_by_alias(NAME, "previous").version) == 1
    assert version.tags["shipyard.rollout"] == "Succeeded"
    artifacts = {f.path for f in client.list_artifacts(version.run_id, "reports")}
    assert {"reports/rollout.json", "reports/rollout.html"} <= artifacts
    card = (second["dir"] / "register-model" / "card").read_text()
    assert card.startswith(f"# Model card: {NAME} version 2\n")
    assert "| parent_version | 1 |" in card and "Champion: version 1." in card
    assert version.tags["shipyard.model_card"].endswith("model_card/model_card.md")
