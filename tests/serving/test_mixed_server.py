"""Raw rows over real HTTP: a mixed-type GBDT (numbers, nulls, strings, booleans) served by `shipyard serve`.

The same raw rows give the same scores through ``LoadedModel.score_frame`` (what evaluation runs)
and over V1 records, V1 lists and V2 per-feature tensors; an unseen category is scored through the
unknown bucket and counted on /metrics; the client's faults are 400s naming the feature and the
row; the model's (a non-finite output) is a 500.
"""

from __future__ import annotations

import numpy as np
import pytest
from mixed_model import LABELS, build_mixed_model, lists, records, v2_tensors
from mixed_model import metric_samples as _samples

from serving.formats import load_model

pytestmark = [pytest.mark.serving]
NAME = "churn"
V1, V2 = f"/v1/models/{NAME}:predict", f"/v2/models/{NAME}/infer"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return build_mixed_model(tmp_path_factory.mktemp("mixed") / "model")


@pytest.fixture(scope="module")
def served(mixed, model_server):
    import httpx

    with model_server(mixed.path, NAME) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client


def _rows(mixed):
    rows = mixed.test.head(24).copy()
    assert rows["tenure"].isna().any() and rows["plan"].isna().any(), "the rows hold nulls"
    return rows


def test_metadata_says_bytes_for_categorical_and_the_numeric_datatype_for_numbers(served):
    meta = served.get(f"/v2/models/{NAME}").json()
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("tenure", "FP64"),
        ("plan", "BYTES"),
        ("autopay", "BOOL"),
        ("seats", "INT64"),
        ("region", "BYTES"),
    ]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {"label": "BYTES", "probabilities": "FP32"}


def test_the_same_raw_rows_score_the_same_through_evaluation_and_every_protocol(mixed, served):
    rows = _rows(mixed)
    model = load_model(mixed.path)
    expected = model.score_frame(rows)  # evaluation's path
    labels = model.labels(expected)
    assert set(labels) == set(LABELS), "the rows exercise both classes"
    for instances in (records(rows, mixed.features), lists(rows, mixed.features)):
        r = served.post(V1, json={"instances": instances})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == labels
        np.testing.assert_allclose(r.json()["probabilities"], expected, atol=1e-6)
    r = served.post(V2, json={"id": "m", "inputs": v2_tensors(rows, mixed.features)})
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["label"]["data"] == labels and outputs["label"]["datatype"] == "BYTES"
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], expected.shape), expected, atol=1e-6)


def test_an_unseen_category_takes_the_unknown_bucket_and_is_counted(mixed, served):
    rows = _rows(mixed).head(5).copy()
    rows.loc[[1, 3], "plan"] = "enterprise"  # never seen in training
    rows.loc[2, "region"] = "mars"

    def key(feature: str) -> str:
        return f'shipyard_unknown_categories_total{{feature="{feature}",model="{NAME}"}}'

    before = _samples(served.get("/metrics").text)
    r = served.post(V1, json={"instances": records(rows, mixed.features)})
    assert r.status_code == 200, r.text
    expected = load_model(mixed.path).score_frame(rows)
    np.testing.assert_allclose(r.json()["probabilities"], expected, atol=1e-6)
    unknown = rows.copy()
    unknown.loc[[1, 3], "plan"] = "legacy"  # rare in training: the same unknown bucket
    np.testing.assert_allclose(r.json()["probabilities"], load_model(mixed.path).score_frame(unknown)[:5], atol=1e-6)
    after = _samples(served.get("/metrics").text)
    assert after[key("plan")] - before.get(key("plan"), 0.0) == 2
    assert after[key("region")] - before.get(key("region"), 0.0) == 1
    assert key("autopay") in after, "every categorical feature has its series"


def _record_case(mixed, change):
    instances = records(_rows(mixed).head(4), mixed.features)
    change(instances)
    return V1, {"instances": instances}


def _v2_case(mixed, change):
    tensors = v2_tensors(_rows(mixed).head(4), mixed.features)
    change({t["name"]: t for t in tensors})
    return V2, {"inputs": tensors}


BAD = [
    (_record_case, lambda r: r[2].update(seats="many"), ["'seats'", "row 2", "expected a number"]),
    (_record_case, lambda r: r[1].update(region=None), ["'region'", "null in row 1"]),
    (_record_case, lambda r: r[3].pop("tenure"), ["instances[3]", "missing feature(s) ['tenure']"]),
    (_record_case, lambda r: r[0].update(autopay="maybe"), ["'autopay'", "row 0", "true or false"]),
    (_record_case, lambda r: r.append([1.0, "pro", True, 3, "eu"]), ["mixes records"]),
    (_v2_case, lambda t: t["seats"]["data"].__setitem__(1, "x"), ["'seats'", "row 1", "expected a number"]),
    (_v2_case, lambda t: t["region"]["data"].__setitem__(3, None), ["'region'", "null in row 3"]),
    (_v2_case, lambda t: t["seats"].update(datatype="BYTES"), ["'seats'", "numeric", "expected INT64"]),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_the_clients_faults_are_400s_naming_the_feature_and_the_row(mixed, served, case):
    build, change, words = BAD[case]
    route, body = build(mixed, change)
    r = served.post(route, json=body)
    assert r.status_code == 400, r.text
    for word in words:
        assert word in r.json()["error"], r.json()["error"]


def test_a_missing_v2_feature_and_a_short_v1_row_are_400s(mixed, served):
    tensors = [t for t in v2_tensors(_rows(mixed).head(2), mixed.features) if t["name"] != "region"]
    r = served.post(V2, json={"inputs": tensors})
    assert r.status_code == 400 and "missing feature(s) ['region']" in r.json()["error"], r.text
    r = served.post(V1, json={"instances": [[1.0, "pro", True, 3]]})
    assert r.status_code == 400 and "instances[0]: expected a list of 5 values" in r.json()["error"], r.text
    matrix = {"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}
    r = served.post(V2, json={"inputs": [matrix]})
    assert r.status_code == 400 and "send one tensor per feature" in r.json()["error"], r.text
    assert served.get("/v2/health/ready").status_code == 200


def test_a_non_finite_output_is_the_models_fault_a_500(tmp_path, model_server):
    """A linear regression on the encoded rows, asked about 3e38 seats (a float32 number): its
    prediction is past float32, which is the model's fault (500), not a bad request (400)."""
    import httpx
    from sklearn.linear_model import LinearRegression

    built = build_mixed_model(tmp_path / "model", task="regression", estimator=LinearRegression())
    good = records(built.test.head(2), built.features)
    huge = [dict(good[0], seats=3e38)]
    with model_server(built.path, NAME) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post(V1, json={"instances": good}).status_code == 200
        for body in ({"instances": huge}, {"instances": good + huge}):
            r = c.post(V1, json=body)
            assert r.status_code == 500, r.text
            assert "not finite in float32" in r.json()["error"] and "row" in r.json()["error"]
        tensors = v2_tensors(built.test.head(1), built.features)
        tensors[3] = {"name": "seats", "shape": [1], "datatype": "FP64", "data": [3e38]}
        r = c.post(V2, json={"inputs": tensors})
        assert r.status_code == 500 and "not finite in float32" in r.json()["error"], r.text
        assert c.get("/v2/health/ready").status_code == 200


def test_the_payload_log_records_raw_rows_that_a_drift_check_compares(mixed, tmp_path, model_server):
    """For a model with preprocessing the log holds the raw values (strings, nulls), not the encoded
    matrix: read back, they equal the rows sent, and drift_check compares them with the training data."""
    import httpx

    from components.drift_check import core as drift
    from serving.payload_log import read_payloads

    rows = _rows(mixed).head(8).reset_index(drop=True)
    logs = tmp_path / "payloads"
    with model_server(mixed.path, NAME, args=["--payload-log", str(logs)]) as server:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            assert c.post(V1, json={"instances": records(rows, mixed.features)}).status_code == 200
            assert c.post(V2, json={"inputs": v2_tensors(rows, mixed.features)}).status_code == 200
    logged = read_payloads(str(logs), NAME)
    assert list(logged.columns) == mixed.features and len(logged) == 2 * len(rows)
    for half in (logged.iloc[: len(rows)], logged.iloc[len(rows) :]):
        half = half.reset_index(drop=True)
        assert half["plan"].tolist() == [None if v is None else v for v in rows["plan"].tolist()]
        assert half["region"].tolist() == rows["region"].tolist()
        assert half["autopay"].tolist() == rows["autopay"].tolist()
        np.testing.assert_array_equal(half["tenure"].to_numpy(dtype=float), rows["tenure"].to_numpy())
    profile = drift.build_profile(mixed.train, mixed.features)
    result = drift.check(profile, logged, drift.DriftConfig(columns=tuple(mixed.features)))
    assert len(result["columns"]) == len(mixed.features)
