"""KerasModel and TFLiteModel for real (the tf extra): the Keras family's artifacts served through the
protocol in process and over HTTP by `shipyard serve`, as the other formats are.

Two artifacts of each format: the Keras MLP on the breast-cancer reference (all numeric, with
standard scaling, so even a one-matrix request goes through the preprocessing) and on a mixed-type
table (numbers with nulls, strings, booleans), each converted to TFLite.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from mixed_model import LABEL, lists, mixed_frame, records, v2_tensors
from tiers import resource

from serving import codec
from serving.config import ServeConfig
from serving.formats import load_model
from serving.model import KerasModel, TFLiteModel, model_for
from shipyard.artifacts import Column, DatasetSchema, read_dataset, write_dataset
from shipyard.errors import ArtifactError
from shipyard.formats import FORMATS

pytestmark = [pytest.mark.slow]
CLASSES = {"keras": KerasModel, "tflite": TFLiteModel}
SMALL = {"max_epochs": 8, "patience": 4, "min_epochs": 1, "width": 32, "depth": 2, "lr": 5e-3}
NAME = "tf"


def _train(train_dir: Path, val_dir: Path, out: Path) -> dict[str, Path]:
    from components.train_model import core
    from components.train_model.keras_family import convert_to_tflite, fit_keras

    tr = core.load_split(str(train_dir))
    va = core.load_split(str(val_dir), tr.task, tr.label_names)
    fit_keras(tr, va, core.TrainConfig.from_dict(SMALL), str(out / "keras"))
    convert_to_tflite(out / "keras", out / "tflite")
    return {"keras": out / "keras", "tflite": out / "tflite"}


@resource("slow", scope="module")
def reference(baseline_artifacts, tmp_path_factory) -> dict:
    """Keras and TFLite artifacts on the breast-cancer reference, and its test rows."""
    paths = _train(baseline_artifacts["train"], baseline_artifacts["val"], tmp_path_factory.mktemp("tf-reference"))
    df, _ = read_dataset(baseline_artifacts["test"])
    return {**paths, "rows": df.drop(columns=["target"]).head(6)}


@resource("slow", scope="module")
def mixed(tmp_path_factory) -> dict:
    """Keras and TFLite artifacts on the mixed-type table, and test rows holding nulls."""
    root = tmp_path_factory.mktemp("tf-mixed")
    df = mixed_frame(600, 0)
    kinds = {"tenure": "numeric", "plan": "categorical", "autopay": "categorical", "seats": "numeric"}
    kinds["region"] = "categorical"
    schema = DatasetSchema(
        tuple(Column(f, str(df[f].dtype), "feature", kinds[f], nullable=f in ("tenure", "plan")) for f in kinds)
        + (Column(LABEL, "object", "label"),)
    )
    write_dataset(root / "train", df.iloc[:400].reset_index(drop=True), schema)
    write_dataset(root / "val", df.iloc[400:500].reset_index(drop=True), schema)
    paths = _train(root / "train", root / "val", root)
    rows = df.iloc[500:524].drop(columns=[LABEL]).reset_index(drop=True)
    assert rows["tenure"].isna().any() and rows["plan"].isna().any(), "the rows hold nulls"
    return {**paths, "rows": rows, "features": list(kinds)}


def _expected(model_dir: Path, rows) -> tuple[list, np.ndarray]:
    """Labels and probabilities of raw rows as evaluation computes them (``LoadedModel.score_frame``)."""
    loaded = load_model(model_dir)
    scores = loaded.score_frame(rows)
    return loaded.labels(scores), scores


def _loaded(fmt: str, model_dir: Path):
    model = model_for(NAME, model_dir, ServeConfig(batching="off"))
    assert type(model) is CLASSES[fmt]
    model.load()
    return model


# --- the model classes, in process ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["keras", "tflite"])
def test_model_for_picks_the_class_and_batching_follows_the_format_table(reference, fmt):
    model = model_for(NAME, reference[fmt])
    assert type(model) is CLASSES[fmt]
    model.load()
    assert model.ready and model.loaded is not None and model.loaded.manifest.format == fmt
    assert (model.batcher is not None) == FORMATS[fmt].batched
    model.stop()
    other = "tflite" if fmt == "keras" else "keras"
    with pytest.raises(ArtifactError, match=f"{CLASSES[other].__name__} serves {other}, the artifact is {fmt}"):
        CLASSES[other](NAME, reference[fmt]).load()


@pytest.mark.parametrize("fmt", ["keras", "tflite"])
def test_v1_and_v2_answer_what_evaluation_scores(reference, fmt):
    from kserve.protocol.infer_type import InferInput, InferRequest

    from serving.fastpath import v2_inputs

    rows = reference["rows"]
    labels, scores = _expected(reference[fmt], rows)
    model = _loaded(fmt, reference[fmt])
    answer = asyncio.run(model.predict({"instances": rows.to_numpy().tolist()}))
    assert answer["predictions"] == labels
    np.testing.assert_allclose(answer["probabilities"], scores, atol=1e-5)
    x = rows.to_numpy(dtype=np.float32)
    body = {
        "id": "r1",
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
    }
    direct = asyncio.run(model.infer_v2(*v2_inputs(body)))
    request = InferRequest(NAME, [InferInput("input", list(x.shape), "FP32", x.ravel().tolist())], request_id="r1")
    via_kserve, _ = asyncio.run(model.predict(request)).to_rest()
    model.stop()
    assert direct == via_kserve
    outputs = {o["name"]: o for o in direct["outputs"]}
    assert outputs["label"]["data"] == labels
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], scores.shape), scores, atol=1e-5)


@pytest.mark.parametrize("fmt", ["keras", "tflite"])
def test_keras_and_tflite_agree_on_raw_mixed_rows(mixed, fmt):
    rows, features = mixed["rows"], mixed["features"]
    labels, scores = _expected(mixed[fmt], rows)
    _, keras_scores = _expected(mixed["keras"], rows)
    np.testing.assert_allclose(scores, keras_scores, atol=1e-5)
    model = _loaded(fmt, mixed[fmt])
    for instances in (records(rows, features), lists(rows, features)):
        answer = asyncio.run(model.predict({"instances": instances}))
        assert answer["predictions"] == labels
        np.testing.assert_allclose(answer["probabilities"], scores, atol=1e-5)
    model.stop()


# --- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["keras", "tflite"])
def served(request, reference, model_server):
    import httpx

    with model_server(reference[request.param], NAME) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield {"client": client, "fmt": request.param, "dir": reference[request.param], "server": server}


@pytest.mark.serving
def test_served_over_http_ready_metadata_v1_v2_and_a_bad_payload(served, reference):
    c, rows = served["client"], reference["rows"]
    assert served["server"].url.startswith("http://127.0.0.1:")
    assert c.get("/v2/health/ready").status_code == 200 and c.get(f"/v2/models/{NAME}/ready").status_code == 200
    meta = c.get(f"/v2/models/{NAME}").json()
    assert [i["name"] for i in meta["inputs"]] == list(rows.columns)
    labels, scores = _expected(served["dir"], rows)
    r = c.post(f"/v1/models/{NAME}:predict", json={"instances": rows.to_dict(orient="records")})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == labels
    np.testing.assert_allclose(r.json()["probabilities"], scores, atol=1e-5)
    tensors = [{"name": f, "shape": [len(rows)], "datatype": "FP64", "data": rows[f].tolist()} for f in rows.columns]
    r = c.post(f"/v2/models/{NAME}/infer", json={"id": "1", "inputs": tensors})
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["label"]["data"] == labels
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], scores.shape), scores, atol=1e-5)
    r = c.post(f"/v1/models/{NAME}:predict", json={"instances": [[1.0, 2.0, 3.0]]})
    assert r.status_code == 400 and "30" in r.json()["error"], r.text
    assert c.get("/v2/health/ready").status_code == 200


@pytest.mark.serving
def test_served_over_http_raw_mixed_rows(mixed, model_server):
    """Raw rows with nulls, strings and booleans over V1 records and V2 per-feature tensors (the Keras
    artifact; TFLite's loader takes the same rows in process above, through the same protocol code)."""
    import httpx

    rows, features = mixed["rows"], mixed["features"]
    labels, scores = _expected(mixed["keras"], rows)
    with model_server(mixed["keras"], NAME) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post(f"/v1/models/{NAME}:predict", json={"instances": records(rows, features)})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == labels
        np.testing.assert_allclose(r.json()["probabilities"], scores, atol=1e-5)
        r = c.post(f"/v2/models/{NAME}/infer", json={"id": "m", "inputs": v2_tensors(rows, features)})
        assert r.status_code == 200, r.text
        outputs = {o["name"]: o for o in r.json()["outputs"]}
        assert outputs["label"]["data"] == labels
        np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], scores.shape), scores, atol=1e-5)
        bad = records(rows.head(1), features)
        bad[0]["seats"] = "many"
        r = c.post(f"/v1/models/{NAME}:predict", json={"instances": bad})
        assert r.status_code == 400 and "seats" in r.json()["error"], r.text


def test_numeric_rows_are_scaled_before_the_weights_see_them(reference):
    """The reference model's preprocessing scales its numbers (not the identity): the raw matrix a V2
    request carries must go through it, and the weights on unscaled numbers would answer otherwise."""
    loaded = load_model(reference["keras"])
    assert not loaded.preprocessing.identity and loaded.manifest.preprocessing["numeric"] == "standard"
    rows = reference["rows"]
    unscaled = loaded.scores(codec.from_frame(rows, loaded.manifest.feature_names))
    assert np.abs(unscaled - loaded.score_frame(rows)).max() > 1e-3
