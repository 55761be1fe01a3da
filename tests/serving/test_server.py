"""Every served format over real HTTP: a KServe ModelServer started by `shipyard serve` on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from components.deploy_model.core import LocalServer
from serving import codec
from serving.formats import load_model
from shipyard.artifacts import read_dataset

pytestmark = [pytest.mark.serving, pytest.mark.slow]
NAME = "bc"


@pytest.fixture(scope="module")
def onnx_model(artifacts, tmp_path_factory) -> Path:
    from components.quantize_model.core import _build_variant
    from components.train_model.core import load_split
    from shipyard.artifacts import read_model_manifest

    out = tmp_path_factory.mktemp("onnx") / "model"
    val = load_split(str(artifacts["val"]))
    _build_variant("fp32-onnx", artifacts["model"], read_model_manifest(artifacts["model"]), out, val.x)
    return out


@pytest.fixture(scope="module", params=["baseline", "model", "onnx"])
def served(request, artifacts, tmp_path_factory):
    model_dir = request.getfixturevalue("onnx_model") if request.param == "onnx" else artifacts[request.param]
    log = tmp_path_factory.mktemp("server") / "server.log"
    with LocalServer(str(model_dir), NAME, log_path=str(log)) as server:
        server.wait_ready(90)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield {"client": client, "model": load_model(model_dir), "server": server}


@pytest.fixture(scope="module")
def rows(artifacts):
    df, _ = read_dataset(artifacts["test"])
    return df.drop(columns=["target"]).head(4)


def test_ready_and_metadata(served):
    c = served["client"]
    assert c.get("/v2/health/live").status_code == 200
    assert c.get("/v2/health/ready").status_code == 200
    assert c.get(f"/v2/models/{NAME}/ready").status_code == 200
    meta = c.get(f"/v2/models/{NAME}").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]
    assert {o["name"] for o in meta["outputs"]} == {"label", "probabilities"}


def test_binds_loopback_only(served):
    assert served["server"].url.startswith("http://127.0.0.1:")
    port = served["server"].port
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = {line.split()[1] for line in listening if line.split()[3] == "0A"}  # LISTEN
    assert f"0100007F:{port:04X}" in local and f"00000000:{port:04X}" not in local


def _expected(served, rows):
    model = served["model"]
    scores = model.scores(codec.from_frame(rows, model.manifest.feature_names))
    return model.labels(scores), scores


def test_v1_lists_and_records(served, rows):
    c = served["client"]
    labels, scores = _expected(served, rows)
    for instances in (rows.to_numpy().tolist(), rows.to_dict(orient="records")):
        r = c.post(f"/v1/models/{NAME}:predict", json={"instances": instances})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == labels
        np.testing.assert_allclose(r.json()["probabilities"], scores, atol=1e-5)


def test_v2_matrix_and_per_feature(served, rows):
    c = served["client"]
    labels, scores = _expected(served, rows)
    x = rows.to_numpy(dtype=np.float32)
    bodies = [
        {
            "id": "1",
            "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
        },
        {
            "id": "2",
            "inputs": [
                {"name": col, "shape": [len(rows)], "datatype": "FP64", "data": rows[col].tolist()}
                for col in rows.columns
            ],
        },
    ]
    for body in bodies:
        r = c.post(f"/v2/models/{NAME}/infer", json=body)
        assert r.status_code == 200, r.text
        outputs = {o["name"]: o for o in r.json()["outputs"]}
        assert outputs["label"]["data"] == labels
        np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], scores.shape), scores, atol=1e-5)


BAD = [
    ("v1", b"{not json", 400, None),
    ("v1", b'{"inputs": []}', 400, "instances"),
    ("v1", b'{"instances": [[1, 2, 3]]}', 400, "30 features"),
    ("v1", b'{"instances": [{"mean radius": 1}]}', 400, "missing feature"),
    ("v1", b'{"instances": [["a", "b"]]}', 400, "expected rows of 30 numbers"),
    (
        "v2",
        b'{"id": "x", "inputs": [{"name": "input", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}]}',
        400,
        "not numeric",
    ),
    (
        "v2",
        b'{"id": "x", "inputs": [{"name": "input", "shape": [2, 30], "datatype": "FP32", "data": [1.0]}]}',
        400,
        None,
    ),
    (
        "v2",
        b'{"id": "x", "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
        400,
        "30 features",
    ),
    ("missing", b'{"instances": [[1]]}', 404, None),
]


def test_bad_payloads_get_4xx_and_server_stays_ready(served, rows):
    c = served["client"]
    urls = {"v1": f"/v1/models/{NAME}:predict", "v2": f"/v2/models/{NAME}/infer", "missing": "/v1/models/nope:predict"}
    for route, body, status, words in BAD * 5:
        r = c.post(urls[route], content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, (route, body, r.status_code, r.text)
        assert r.text, "empty error body"
        if words:
            assert words in r.text, (body, r.text)
    assert c.get("/v2/health/ready").status_code == 200
    good = c.post(f"/v1/models/{NAME}:predict", json={"instances": rows.to_numpy().tolist()})
    assert good.status_code == 200


def test_metrics_endpoint(served):
    r = served["client"].get("/metrics")
    assert r.status_code == 200 and "request_predict_seconds" in r.text


def test_sigterm_stops_the_server(artifacts, tmp_path):
    with LocalServer(str(artifacts["baseline"]), NAME) as server:
        server.wait_ready(90)
        proc = server.proc
    assert proc is not None and proc.poll() is not None, "server still running after SIGTERM"
