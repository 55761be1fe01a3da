"""Every served format over real HTTP: a KServe ModelServer started by `shipyard serve` on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from mixed_model import metric_samples as _samples

from serving import codec
from serving.formats import load_model
from shipyard.artifacts import read_dataset

pytestmark = [pytest.mark.serving, pytest.mark.slow]
NAME = "bc"
BODY_LIMIT = 64 * 1024


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
def served(request, artifacts, model_server):
    model_dir = request.getfixturevalue("onnx_model") if request.param == "onnx" else artifacts[request.param]
    with model_server(model_dir, NAME, args=["--max-body-bytes", str(BODY_LIMIT)]) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield {
                "client": client,
                "model": load_model(model_dir),
                "server": server,
                "kind": request.param,
                "test_dir": artifacts["test"],
            }


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
    schema = served["model"].manifest.input_schema
    assert [i["name"] for i in meta["inputs"]] == [col.name for col in schema]  # named, in the model's order
    assert {i["datatype"] for i in meta["inputs"]} <= {"FP32", "FP64", "INT64", "BOOL"} and len(meta["inputs"]) == 30
    assert all(i["shape"] == [-1] for i in meta["inputs"])
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


ROW = ", ".join(["1.0"] * 30)
TAIL = ROW[5:].encode()  # the row without its first value
TOO_BIG = b'{"instances": [' + b", ".join([b"[" + ROW.encode() + b"]"] * 700) + b"]}"  # ~110 KB > BODY_LIMIT
BAD = [
    ("v1", b"{not json", 400, "not valid JSON"),
    ("v2", b"{not json", 400, "not valid JSON"),
    ("v1", b'{"inputs": []}', 400, "instances"),
    ("v2", b'{"id": "x"}', 400, "inputs: Field required"),
    ("v1", b'{"instances": [[1, 2, 3]]}', 400, "30 features"),
    ("v1", b'{"instances": [{"mean radius": 1}]}', 400, "missing feature"),
    ("v1", b'{"instances": [["a", "b"]]}', 400, "expected rows of 30 numbers"),
    ("v1", b'{"instances": [[NaN, ' + TAIL + b"]]}", 400, None),  # not JSON: NaN has no literal
    ("v1", b'{"instances": [[1e400, ' + TAIL + b"]]}", 400, "infinity"),
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
        "does not match shape",
    ),
    (
        "v2",
        b'{"id": "x", "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}',
        400,
        "30 features",
    ),
    (
        "v2",
        b'{"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [null, ' + TAIL + b"]}]}",
        400,
        "expected a finite number",
    ),
    (
        "v2",
        b'{"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1]}, '
        b'{"name": "mean radius", "shape": [1], "datatype": "FP32", "data": [1]}]}',
        400,
        "unknown input(s) ['nope']",
    ),
    (
        "v2",
        b'{"inputs": [{"name": "input", "shape": [1, 30], "datatype": "INT8", "data": [1000, ' + TAIL + b"]}]}",
        400,
        "datatype INT8",
    ),
    (
        "v2",
        b'{"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP16", "data": [1.0, ' + TAIL + b"]}]}",
        400,
        "FP16",
    ),
    (
        "v2",
        b'{"id": 5, "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": ['
        + ROW.encode()
        + b"]}]}",
        400,
        "id",
    ),
    ("v1", b'{"instances": [{"' + b"x" * 5000 + b'": 1}]}', 400, "..."),  # client input is not echoed in full
    ("missing", b'{"instances": [[1]]}', 404, "does not exist"),
    ("v1", TOO_BIG, 413, "exceeds the limit"),
]
URLS = {"v1": f"/v1/models/{NAME}:predict", "v2": f"/v2/models/{NAME}/infer", "missing": "/v1/models/nope:predict"}


@pytest.mark.parametrize("case", range(len(BAD)))
def test_each_bad_payload_gets_its_4xx_and_a_json_error(served, case):
    route, body, status, words = BAD[case]
    r = served["client"].post(URLS[route], content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, (route, body[:80], r.status_code, r.text)
    assert isinstance(r.json()["error"], str) and r.json()["error"], "the error body says what was wrong"
    assert len(r.json()["error"]) < 1000, "error messages repeat only a bounded part of the input"
    if words:
        assert words in r.json()["error"], r.text


def test_a_chunked_body_over_the_limit_gets_413(served):
    def chunks():
        yield b'{"instances": ['
        for _ in range(2000):
            yield b"[" + b", ".join([b"1.0"] * 30) + b"], "
        yield b"[1]]}"

    r = served["client"].post(URLS["v1"], content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]


def test_a_few_hundred_mixed_bad_requests_leave_the_server_ready(served, rows):
    c = served["client"]
    rng = np.random.default_rng(0)
    for i in rng.integers(0, len(BAD), 300):
        route, body, status, _ = BAD[i]
        r = c.post(URLS[route], content=body, headers={"content-type": "application/json"})
        assert r.status_code == status and r.text, (route, body[:80], r.status_code)
    assert c.get("/v2/health/ready").status_code == 200
    good = c.post(URLS["v1"], json={"instances": rows.to_numpy().tolist()})
    assert good.status_code == 200 and len(good.json()["predictions"]) == len(rows)


def _raw_post(served, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    """POST with exactly these headers (and Content-Length, Host): no client adds a Content-Type."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", served["server"].port, timeout=30)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for key, value in {"Content-Length": str(len(body)), **headers}.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _v2_body(rows) -> bytes:
    x = rows.to_numpy(dtype=np.float32)
    return json.dumps(
        {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    ).encode()


def test_a_body_without_content_type_is_json_as_kserve_reads_it(served, rows):
    """V1 and V2 without a Content-Type header get the answer a JSON request gets (KServe's routes
    read a body without one as JSON)."""
    labels, scores = _expected(served, rows)
    v1 = json.dumps({"instances": rows.to_numpy().tolist()}).encode()
    for headers in ({}, {"Content-Type": "application/json"}, {"Content-Type": "application/json; charset=utf-8"}):
        status, answer = _raw_post(served, URLS["v1"], v1, headers)
        assert status == 200 and answer["predictions"] == labels, (headers, status, answer)
        np.testing.assert_allclose(answer["probabilities"], scores, atol=1e-5)
        status, answer = _raw_post(served, URLS["v2"], _v2_body(rows), headers)
        assert status == 200, (headers, status, answer)
        outputs = {o["name"]: o for o in answer["outputs"]}
        assert outputs["label"]["data"] == labels
        np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], scores.shape), scores, atol=1e-5)


def test_a_content_type_that_is_not_json_gets_415_naming_it(served, rows):
    """What `curl -d` sends unless told otherwise (form-urlencoded) and text/plain get a 415 that names
    the type and the fix, not "expected a JSON object with instances"; the server stays ready."""
    v1 = json.dumps({"instances": rows.to_numpy().tolist()}).encode()
    for route, body in (("v1", v1), ("v2", _v2_body(rows))):
        status, answer = _raw_post(served, URLS[route], body, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 415, (route, status, answer)
        assert "Content-Type application/x-www-form-urlencoded" in answer["error"]
        assert "-H 'Content-Type: application/json'" in answer["error"]
        status, answer = _raw_post(served, URLS[route], body, {"Content-Type": "text/plain; charset=utf-8"})
        assert status == 415 and "Content-Type text/plain is not an inference request" in answer["error"], answer
    # KServe's own JSON types still reach its routes: application/octet-stream is read as JSON for V1.
    status, answer = _raw_post(served, URLS["v1"], v1, {"Content-Type": "application/octet-stream"})
    assert status == 200 and answer["predictions"] == _expected(served, rows)[0], answer
    assert served["client"].get("/v2/health/ready").status_code == 200
    metrics = _samples(served["client"].get("/metrics").text)
    assert metrics['shipyard_requests_total{route="v1_predict",status="415"}'] >= 2


def test_the_log_names_the_address_it_listens_on(served):
    log = Path(served["server"].log_path).read_text()
    assert f"Uvicorn running on http://127.0.0.1:{served['server'].port} " in log, log[-2000:]


def test_metrics_count_requests_batches_classes_and_features(served, rows):
    c = served["client"]
    before = _samples(c.get("/metrics").text)
    labels, _ = _expected(served, rows)
    assert c.post(URLS["v1"], json={"instances": rows.to_numpy().tolist()}).status_code == 200
    assert c.post(URLS["v1"], content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    after = _samples(c.get("/metrics").text)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta('shipyard_requests_total{route="v1_predict",status="200"}') == 1
    assert delta('shipyard_requests_total{route="v1_predict",status="400"}') == 1
    assert delta('shipyard_request_duration_seconds_count{route="v1_predict"}') == 2
    assert delta(f'shipyard_batch_rows_sum{{model="{NAME}"}}') == len(rows)
    for label in set(labels):
        key = f'shipyard_predictions_total{{label="{label}",model="{NAME}"}}'
        assert delta(key) == labels.count(label), key
    feature = rows.columns[0]
    assert delta(f'shipyard_feature_count_total{{feature="{feature}",model="{NAME}"}}') == len(rows)
    assert delta(f'shipyard_feature_sum_total{{feature="{feature}",model="{NAME}"}}') == pytest.approx(
        float(rows[feature].astype(np.float32).sum()), rel=1e-5
    )
    highest = after[f'shipyard_feature_max{{feature="{feature}",model="{NAME}"}}']
    assert highest >= float(rows[feature].max()) * (1 - 1e-6)


def test_sigterm_stops_the_server(artifacts, model_server):
    with model_server(artifacts["baseline"], NAME) as server:
        proc = server.proc
    assert proc is not None and proc.poll() is not None, "server still running after SIGTERM"


def test_concurrent_clients_get_their_own_answers(served, rows):
    """16 clients at once, each with its own row count: no failure, and every answer is its own rows'."""
    from concurrent.futures import ThreadPoolExecutor

    model = served["model"]
    df, _ = read_dataset(served["test_dir"])
    x = df.drop(columns=["target"])
    scores = model.scores(codec.from_frame(x, model.manifest.feature_names))
    expected = model.labels(scores)
    # A batched row is computed beside other rows (another kernel path): its probabilities agree to
    # float32 rounding, so its label is compared only where the two highest are further apart than that.
    clear = np.diff(np.sort(scores, axis=1)[:, -2:], axis=1)[:, 0] > 2e-5

    def answers_its_rows(r: httpx.Response, rows: slice) -> bool:
        if r.status_code != 200:
            return False
        got = r.json()
        if not len(got["predictions"]) == len(got["probabilities"]) == len(expected[rows]):
            return False
        pairs = zip(got["predictions"], expected[rows], clear[rows], strict=True)
        labels_agree = all(a == b for a, b, is_clear in pairs if is_clear)
        return labels_agree and np.allclose(got["probabilities"], scores[rows], atol=1e-5, rtol=0)

    def client(k: int) -> list[str]:
        failures = []
        with httpx.Client(base_url=served["server"].url, timeout=30) as c:
            for i in range(15):
                start, n = (k * 15 + i) % (len(x) - 5), 1 + (k + i) % 5
                r = c.post(URLS["v1"], json={"instances": x.iloc[start : start + n].to_numpy().tolist()})
                if not answers_its_rows(r, slice(start, start + n)):
                    failures.append(f"client {k} request {i}: {r.status_code} {r.text[:100]}")
        return failures

    before = _samples(served["client"].get("/metrics").text)
    with ThreadPoolExecutor(16) as pool:
        failures = [f for result in pool.map(client, range(16)) for f in result]
    assert failures == []
    after = _samples(served["client"].get("/metrics").text)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    calls = delta(f'shipyard_batch_requests_count{{model="{NAME}"}}')
    alone = delta(f'shipyard_batch_requests_bucket{{le="1.0",model="{NAME}"}}')
    assert delta(f'shipyard_batch_requests_sum{{model="{NAME}"}}') == 16 * 15, "every request in one model call"
    if served["kind"] == "baseline":  # scikit-learn: unbatched, one call per request
        assert calls == alone == 16 * 15
    else:  # batched: how many requests shared a call is the scheduler's doing (test_runtime checks the sharing)
        assert 1 <= calls <= 16 * 15 and alone <= calls


def test_sigterm_drains_readiness_first_and_finishes_in_flight_requests(artifacts, rows, model_server):
    """SIGTERM: readiness turns 503 while predictions still succeed; the process then exits 0."""
    import signal
    import threading
    import time

    body = {"instances": rows.to_numpy().tolist()}
    # Events, not sleeps, order the steps below; the drain window only has to outlast a few requests.
    with model_server(artifacts["model"], NAME, args=["--shutdown-delay", "5"]) as server:
        assert server.proc is not None
        results: list[int] = []
        stop = threading.Event()

        def keep_predicting() -> None:  # a client that keeps sending through the shutdown
            with httpx.Client(base_url=server.url, timeout=10) as c:
                while not stop.is_set():
                    try:
                        results.append(c.post(URLS["v1"], json=body).status_code)
                    except httpx.TransportError:
                        return  # the listener has closed: the drain window is over

        workers = [threading.Thread(target=keep_predicting) for _ in range(4)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:  # the clients are being answered
            time.sleep(0.01)
        assert results, "no prediction was answered before SIGTERM"
        server.proc.send_signal(signal.SIGTERM)
        with httpx.Client(base_url=server.url, timeout=5) as c:
            while c.get("/v2/health/ready").status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.01)  # until the server has handled the signal
            assert c.get("/v2/health/ready").status_code == 503
            assert c.get(f"/v2/models/{NAME}/ready").status_code == 503
            assert c.get("/v2/health/live").status_code == 200
            assert c.post(URLS["v1"], json=body).status_code == 200  # still served while draining
        assert server.proc.wait(timeout=30) == 0
        stop.set()
        for w in workers:
            w.join(timeout=15)
    assert results and set(results) == {200}, "every request that got an answer succeeded"


def test_payload_log_records_what_was_served_for_a_later_drift_check(artifacts, rows, tmp_path, model_server):
    from components.drift_check import core as drift
    from serving.payload_log import read_payloads

    logs = tmp_path / "payloads"
    with model_server(artifacts["baseline"], NAME, args=["--payload-log", str(logs)]) as server:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for _ in range(3):
                assert c.post(URLS["v1"], json={"instances": rows.to_dict(orient="records")}).status_code == 200
            x = rows.to_numpy(dtype=np.float32)
            body = {
                "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
            }
            assert c.post(URLS["v2"], json=body).status_code == 200
            metrics = _samples(c.get("/metrics").text)
            assert metrics[f'shipyard_payload_records_total{{model="{NAME}",outcome="dropped"}}'] == 0
    logged = read_payloads(str(logs), NAME)  # written by the time SIGTERM's shutdown has finished
    assert len(logged) == 4 * len(rows) and list(logged.columns) == list(rows.columns)
    np.testing.assert_allclose(logged.to_numpy()[: len(rows)], rows.to_numpy(), rtol=1e-6)
    train, _ = read_dataset(artifacts["train"])
    profile = drift.build_profile(train, list(rows.columns))
    result = drift.check(profile, logged, drift.DriftConfig(columns=tuple(rows.columns)))
    assert len(result["columns"]) == len(rows.columns)
