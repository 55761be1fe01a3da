"""The recurring drift_check pipeline: compiled structure, and both branches under kfp.local."""

from __future__ import annotations

import json

import pytest
import yaml

from components.ingest_data import core as ingest
from components.validate_data import core as validation


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A validate_data schema artifact (with its drift profile) of breast cancer."""
    root = tmp_path_factory.mktemp("reference")
    ingest.ingest("sklearn:breast_cancer", str(root / "ds"), ingest.IngestConfig())
    validation.validate(
        str(root / "ds"), str(root / "schema"), str(root / "v.json"), str(root / "v.md"), validation.ValidateConfig()
    )
    return root / "schema"


def test_compiled_structure(tmp_path, cli):
    assert cli("compile", "--output", str(tmp_path), "--pipeline", "drift_check").returncode == 0
    ir = next(yaml.safe_load_all((tmp_path / "drift_check.yaml").read_text()))  # then the platform spec
    root = ir["root"]["dag"]["tasks"]
    assert {"importer", "ingest-data", "drift-check", "condition-1"} <= set(root)
    assert "drift-check-Output" in root["condition-1"]["triggerPolicy"]["condition"]
    nested = ir["components"][root["condition-1"]["componentRef"]["name"]]["dag"]["tasks"]
    assert list(nested) == ["train-and-deploy"]
    assert root["drift-check"]["cachingOptions"].get("enableCache") is not True
    assert ir["root"]["inputDefinitions"]["parameters"]["model_name"]["defaultValue"] == ""
    retrain = nested["train-and-deploy"]["inputs"]["parameters"]
    assert retrain["data"]["componentInputParameter"].endswith("current_data")  # the name derives from the new data
    assert retrain["model_name"]["componentInputParameter"].endswith("model_name")


@pytest.mark.local
def test_no_drift_skips_the_retrain(reference, tmp_path, local_cli):
    proc = local_cli(
        "run",
        "drift_check",
        "--local",
        "--output",
        str(tmp_path),
        "--set",
        "current_data=sklearn:breast_cancer",
        "--set",
        f"reference_uri={reference}",
    )
    assert proc.returncode == 0, proc.stderr
    assert "no dataset drift: 0 of 31 columns" in proc.stdout
    status = {
        line.split()[0]: line.split()[1] for line in proc.stdout.splitlines() if line[:1].isalpha() and "  " in line
    }
    assert status["drift-check"] == "done" and status["train-model"] == "skipped"


@pytest.mark.local
@pytest.mark.slow
def test_drift_retrains_and_deploys(reference, tmp_path, local_cli):
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    frame: pd.DataFrame = load_breast_cancer(as_frame=True).frame
    for column in list(frame.columns)[:25]:
        frame[column] = frame[column] * 1.3
    frame.to_csv(tmp_path / "drifted.csv", index=False)
    proc = local_cli(
        "run",
        "drift_check",
        "--local",
        "--output",
        str(tmp_path / "out"),
        "--set",
        f"current_data={tmp_path / 'drifted.csv'}",
        "--set",
        f"reference_uri={reference}",
        "--set",
        'ingest={"id_columns": []}',
    )
    assert proc.returncode == 0, proc.stderr
    assert "DATASET DRIFT" in proc.stdout
    run_dir = next((tmp_path / "out" / "artifacts").glob("drift-check-*"))
    outcome = json.loads((run_dir / "record-outcome" / "outcome").read_text())
    assert outcome["state"] == "SUCCEEDED" and (run_dir / "train-model" / "model" / "model.json").is_file()
    # No model_name given: the retraining run registers under the name derived from the new data.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    assert outcome["model_name"] == "drifted"
    assert [m.name for m in client.search_registered_models()] == ["drifted"]
    assert "model name:    drifted" in proc.stdout
