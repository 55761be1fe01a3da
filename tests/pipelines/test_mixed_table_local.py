"""The flagship pipeline end to end under kfp.local on a table as users bring it: an id, free text, a
date, numeric nulls, strings, booleans and a rare category, read from a CSV.

Every stage must take it: ingest sets the id, text and date columns aside, validation passes, train
fits one preprocessing per family on the training split and stores it in ``model.json``, and the
deployed server answers the raw test rows (V1 records with strings and nulls, V2 tensors per
feature) with the scores evaluation computed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tables
from conftest import run_flagship

from serving.formats import load_model
from shipyard.artifacts import read_dataset, read_model_manifest

pytestmark = [pytest.mark.local, pytest.mark.slow]

NAME = "churn-export"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, local_cli) -> dict:
    out = tmp_path_factory.mktemp("mixed-run")
    data = out / "Churn Export.csv"
    tables.mixed_table(rows=800, seed=3, as_text=True).to_csv(data, index=False)
    return run_flagship(
        local_cli, out, data, tune='{"n_trials": 2}', evaluate='{"thresholds": {"roc_auc": {"min": 0.6}}}'
    )


def test_ingest_sets_ids_text_and_dates_aside(run):
    _, schema = read_dataset(run["dir"] / "ingest-data" / "dataset")
    roles = {c.name: c.role for c in schema.columns}
    assert {c: roles[c] for c in tables.EXCLUDED_ROLES} == tables.EXCLUDED_ROLES
    assert {c.name: c.kind for c in schema.columns if c.role == "feature"} == tables.FEATURE_KINDS
    assert "candidate " in run["stdout"] and "0 errors" in run["stdout"]


def test_every_family_carries_its_fitted_preprocessing(run):
    d = run["dir"] / "train-model"
    comparison = json.loads((d / "comparison_json").read_text())
    assert set(comparison["table"]) == {"gbdt", "mlp", "linear"}
    candidate = read_model_manifest(d / "model")
    assert candidate.details["family"] == comparison["candidate"]
    prep = candidate.preprocessing
    assert prep is not None and [f["name"] for f in prep["features"]] == list(tables.FEATURE_KINDS)
    plan = next(f for f in prep["features"] if f["name"] == "plan")
    assert set(plan["vocabulary"]) == set(tables.PLANS)  # the rare plan shares the unknown bucket
    baseline = read_model_manifest(d / "baseline").preprocessing
    assert baseline is not None and baseline["categorical"] == "onehot"


def test_evaluation_scores_raw_rows_and_the_server_agrees(run):
    d = run["dir"]
    evaluation = json.loads((d / "evaluate-model" / "evaluation").read_text())
    assert evaluation["metrics"]["roc_auc"] > 0.85 and evaluation["blessed"], evaluation["checks"]
    test, _ = read_dataset(d / "split-data" / "test")
    scores = load_model(d / "quantize-model" / "quantized").score_frame(test)
    assert scores.shape == (len(test), 2) and np.isfinite(scores).all()
    deploy = json.loads((d / "deploy-model" / "deployment" / "result.json").read_text())
    assert deploy["smoke"]["v1"] == "passed" and deploy["smoke"]["v2"] == "passed"  # raw rows vs score_frame
