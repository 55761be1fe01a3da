"""A registered version is an MLflow Model that MLflow itself loads and serves, and that scores as Shipyard does.

For an all-numeric model (the breast-cancer baseline) and a mixed-type one (numbers with nulls,
strings with nulls and unseen values, booleans: ``mixed_artifacts.build_mixed``'s GBDT), the same
test rows give the same probabilities through ``mlflow.pyfunc.load_model("models:/NAME@challenger")``,
through a real ``shipyard serve`` (KServe ``ModelServer``) over HTTP, and through ``mlflow models
serve`` over HTTP (``/invocations``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow_process import MLFLOW, child_server, free_port, mlflow_env

from components.register_model.core import CHALLENGER, register
from serving.formats import load_model
from shipyard.artifacts import read_dataset

pytestmark = [pytest.mark.serving]
ROWS = 24


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict[str, Path]:
    from mixed_artifacts import build_mixed

    return build_mixed(tmp_path_factory.mktemp("mixed"))


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A SQLite store; MLflow's process-global URI points at it for ``models:/`` and is reset after."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(params=["numeric", "mixed"])
def case(request, baseline_artifacts, mixed) -> dict[str, Any]:
    if request.param == "numeric":
        return {"name": "bc", "model": baseline_artifacts["baseline"], "test": baseline_artifacts["test"]}
    return {"name": "churn", "model": mixed["gbdt"], "test": mixed["test"]}


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _rows(case: dict[str, Any]) -> Any:
    df, _ = read_dataset(case["test"])
    features = load_model(case["model"]).manifest.feature_names
    return df[features].head(ROWS).reset_index(drop=True)


def _records(df) -> list[dict[str, Any]]:
    return [{k: _cell(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _registered(case: dict[str, Any], store: str) -> dict[str, Any]:
    return register(str(case["model"]), case["name"], None, True, store, example_dir=str(case["test"]))


def test_the_version_is_an_mlflow_model_with_a_signature_an_example_and_no_pickle(case, store):
    import mlflow

    result = _registered(case, store)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{case['name']}/{result['version']}"))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    flavor = mlmodel["flavors"]["python_function"]
    assert flavor["loader_module"] == "mlflow.pyfunc.loaders.code_model"
    code = (local / Path(flavor["model_code_path"]).name).read_text()
    assert "from serving.mlflow_pyfunc import ShipyardPyfunc" in code
    assert not [p for p in local.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib")], "no pickle anywhere"
    manifest = load_model(local / "artifacts" / "shipyard").manifest  # hash-checked, as the pyfunc loads it
    assert manifest.files == load_model(case["model"]).manifest.files
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [c["name"] for c in inputs] == manifest.feature_names
    outputs = json.loads(mlmodel["signature"]["outputs"])
    assert [c["name"] for c in outputs] == [str(n) for n in manifest.label_names]
    example = json.loads((local / "input_example.json").read_text())
    assert example["columns"] == manifest.feature_names and len(example["data"]) == 5
    if case["name"] == "churn":
        types = {c["name"]: (c["type"], c["required"]) for c in inputs}
        assert types == {
            "age": ("double", False),  # nulls in training: imputed
            "tenure": ("long", True),
            "plan": ("string", True),
            "region": ("string", False),  # nulls in training: the missing bucket
            "autopay": ("boolean", True),
        }
    else:
        assert {(c["type"], c["required"]) for c in inputs} == {("double", True)}


def test_pyfunc_predict_equals_the_shipyard_server(case, store, model_server):
    import httpx
    import mlflow

    _registered(case, store)
    rows = _rows(case)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{case['name']}@{CHALLENGER}")
    got = pyfunc.predict(rows)
    manifest = load_model(case["model"]).manifest
    assert list(got.columns) == [str(n) for n in manifest.label_names] and len(got) == ROWS
    with model_server(case["model"], case["name"]) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post(f"/v1/models/{case['name']}:predict", json={"instances": _records(rows)})
    assert r.status_code == 200, r.text
    served = np.asarray(r.json()["probabilities"])
    assert served.shape == got.shape
    np.testing.assert_allclose(got.to_numpy(), served, atol=1e-6)  # the server rounds to 6 decimals
    labels = [manifest.label_names[i] for i in got.to_numpy().argmax(axis=1)]
    assert r.json()["predictions"] == labels


def test_mlflow_models_serve_answers_invocations_with_the_same_values(case, store, tmp_path):
    import httpx
    import mlflow

    result = _registered(case, store)
    rows = _rows(case)
    expected = mlflow.pyfunc.load_model(f"models:/{case['name']}/{result['version']}").predict(rows)
    port = free_port()
    args = [MLFLOW, "models", "serve", "-m", f"models:/{case['name']}/{result['version']}"]
    args += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    url = f"http://127.0.0.1:{port}"
    with child_server(args, f"{url}/ping", tmp_path / "models-serve.log", mlflow_env(store)):
        r = httpx.post(f"{url}/invocations", json={"dataframe_records": _records(rows)}, timeout=60)
        assert r.status_code == 200, r.text
        bad = httpx.post(f"{url}/invocations", json={"dataframe_records": [{"nope": 1}]}, timeout=60)
    answer = r.json()["predictions"]
    assert len(answer) == ROWS and set(answer[0]) == set(expected.columns)
    got = np.asarray([[row[c] for c in expected.columns] for row in answer])
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=0, atol=1e-12)
    assert bad.status_code == 400, bad.text  # a missing feature is the client's fault
