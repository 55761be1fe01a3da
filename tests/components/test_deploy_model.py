"""Tests for components.deploy_model.core: service names, the render target, a local smoke test.

The InferenceService rendering itself (serving.rollout.isvc) is tested in tests/serving/rollout/.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from components.deploy_model.core import ISVC_FILE, RESULT_FILE, DeployConfig, deploy, service_name_for
from serving.rollout.isvc import DNS_LABEL
from shipyard.artifacts import read_model_manifest
from shipyard.errors import ConfigError, NotBlessedError


def _evaluation(model: Path, test: Path, path: Path, **options) -> Path:
    """A real evaluation.json of ``model`` (components.evaluate_model.core.evaluate)."""
    from components.evaluate_model.core import EvalConfig, evaluate

    if not path.exists():
        evaluate(str(model), str(test), str(path), str(path.with_suffix(".md")), EvalConfig.from_dict(options))
    return path


@pytest.mark.parametrize(
    ("model_name", "expected"),
    [
        ("bc", "bc"),
        ("Breast_Cancer", "breast-cancer"),
        ("My Model v2!", "my-model-v2"),
        ("--fraud--", "fraud"),
        ("2024-churn", "m-2024-churn"),
        ("___", "m"),
        ("", "m"),
        ("Modèle", "mod-le"),
        ("a" * 70, "a" * 63),
        ("a" * 62 + "_b", "a" * 62),
        ("9" * 70, "m-" + "9" * 61),
    ],
)
def test_service_name_for(model_name, expected):
    name = service_name_for(model_name)
    assert name == expected
    assert DNS_LABEL.match(name) and len(name) <= 63


# --- render ----------------------------------------------------------------------------------------


def _deploy(artifacts, tmp_path: Path, model: str = "baseline", **values) -> tuple[dict, Path]:
    out = tmp_path / "deployment"
    result = deploy(
        str(artifacts[model]),
        "gs://bucket/models/bc/7",
        str(artifacts["test"]),
        "Breast_Cancer",
        str(out),
        str(tmp_path / "deploy.md"),
        DeployConfig.from_dict(values),
        evaluation_json=str(_evaluation(artifacts[model], artifacts["test"], tmp_path / f"evaluation-{model}.json")),
    )
    return result, out


def test_render_target_writes_a_valid_inference_service(baseline_artifacts, tmp_path, validate_isvc):
    result, out = _deploy(baseline_artifacts, tmp_path, target="render", canary_traffic_percent=25, namespace="ml")

    text = (out / ISVC_FILE).read_text()
    assert text.startswith("# Rendered by shipyard deploy_model\n")
    isvc = yaml.safe_load(text)
    validate_isvc(isvc)
    fmt = read_model_manifest(baseline_artifacts["baseline"]).format
    predictor = isvc["spec"]["predictor"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    assert isvc["metadata"]["name"] == "breast-cancer" and isvc["metadata"]["namespace"] == "ml"
    assert isvc["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "shipyard",
        "shipyard.io/model": "breast-cancer",
    }
    assert predictor["canaryTrafficPercent"] == 25
    assert predictor["model"]["storageUri"] == "gs://bucket/models/bc/7"
    assert predictor["model"]["modelFormat"] == {"name": f"shipyard-{fmt}"}
    assert predictor["model"]["runtime"] == "shipyard" and predictor["model"]["protocolVersion"] == "v2"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)

    assert result == {
        "target": "render",
        "service": "breast-cancer",
        "endpoint": "",
        "smoke": None,
        "action": None,
        "blessing": "blessed",
    }
    assert json.loads((out / RESULT_FILE).read_text()) == result
    report = (tmp_path / "deploy.md").read_text()
    assert "# Deployment: breast-cancer" in report and "canary traffic 25%" in report and "```yaml" in report


def test_cluster_options_reach_the_rendered_service(baseline_artifacts, tmp_path, validate_isvc):
    options = {
        "target": "render",
        "deployment_mode": "RawDeployment",
        "gpus": 1,
        "scale_metric": "cpu",
        "scale_target": 70,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "node_selector": {"pool": "gpu"},
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    }
    _, out = _deploy(baseline_artifacts, tmp_path, **options)
    isvc = yaml.safe_load((out / ISVC_FILE).read_text())
    validate_isvc(isvc)
    predictor = isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert "canaryTrafficPercent" not in predictor  # a raw canary is a spec.canary entry (roll_out)
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] in ("1", 1)
    assert predictor["tolerations"] == options["tolerations"] and predictor["nodeSelector"] == {"pool": "gpu"}
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 70)
    assert predictor["model"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.slow
@pytest.mark.parametrize("model", ["model", "quantized"])
def test_rendered_model_format_follows_the_artifact(artifacts, tmp_path, validate_isvc, model):
    _, out = _deploy(artifacts, tmp_path, model=model, target="render", service_name="bc-canary")
    isvc = yaml.safe_load((out / ISVC_FILE).read_text())
    validate_isvc(isvc)
    fmt = read_model_manifest(artifacts[model]).format
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] == f"shipyard-{fmt}"
    assert isvc["metadata"]["name"] == "bc-canary"


def test_a_bad_service_name_is_rejected_before_anything_is_written(baseline_artifacts, tmp_path):
    with pytest.raises(ConfigError, match="service name 'BC_1' must be a DNS-1035 label"):
        _deploy(baseline_artifacts, tmp_path, target="render", service_name="BC_1")
    assert not (tmp_path / "deployment").exists()


def test_an_empty_model_name_is_derived_from_the_data(baseline_artifacts, tmp_path, validate_isvc):
    out = tmp_path / "deployment"
    result = deploy(
        str(baseline_artifacts["baseline"]),
        "gs://bucket/models/churn/1",
        str(baseline_artifacts["test"]),
        "",
        str(out),
        str(tmp_path / "deploy.md"),
        DeployConfig(target="render"),
        "gs://b/x/Churn Export.csv",
        evaluation_json=str(
            _evaluation(baseline_artifacts["baseline"], baseline_artifacts["test"], tmp_path / "e.json")
        ),
    )
    isvc = yaml.safe_load((out / ISVC_FILE).read_text())
    validate_isvc(isvc)
    assert result["service"] == "churn-export" and isvc["metadata"]["name"] == "churn-export"


@pytest.mark.parametrize(("model_name", "source"), [("team/churn", "x.csv"), ("", "")])
def test_an_unusable_model_name_is_rejected_before_anything_is_written(
    baseline_artifacts, tmp_path, model_name, source
):
    with pytest.raises(ConfigError, match=f"model_name {model_name!r}"):
        deploy(
            str(baseline_artifacts["baseline"]),
            "gs://b/m",
            str(baseline_artifacts["test"]),
            model_name,
            str(tmp_path / "deployment"),
            str(tmp_path / "deploy.md"),
            DeployConfig(target="render"),
            source,
            evaluation_json=str(
                _evaluation(baseline_artifacts["baseline"], baseline_artifacts["test"], tmp_path / "e.json")
            ),
        )
    assert not (tmp_path / "deployment").exists()


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"target": "aws"}, "target must be kubernetes, local or render"),
        ({"canary_traffic_percent": 101}, "canary_traffic_percent must be in 0..100"),
        ({"canary_traffic_percent": -1}, "canary_traffic_percent must be in 0..100"),
        ({"smoke_rows": 0}, "ready_timeout_s and smoke_rows must be positive"),
        ({"ready_timeout_s": 0}, "ready_timeout_s and smoke_rows must be positive"),
        ({"canary_percent": 10}, "unknown key(s) 'canary_percent'"),
        ({"canary_traffic_percent": "10"}, "'canary_traffic_percent' must be int"),
    ],
)
def test_deploy_config_errors(values, fragment):
    with pytest.raises(ConfigError) as exc:
        DeployConfig.from_dict(values)
    assert fragment in str(exc.value)


# --- the blessing, checked again at deploy time ------------------------------------------------------


def test_deploy_refuses_an_unblessed_model_naming_the_failed_checks(baseline_artifacts, tmp_path):
    evaluation = _evaluation(
        baseline_artifacts["baseline"],
        baseline_artifacts["test"],
        tmp_path / "unblessed.json",
        thresholds={"roc_auc": {"min": 1.01}},
    )
    with pytest.raises(NotBlessedError, match=r"not blessed; failed check\(s\): roc_auc ≥ 1.01 \(value 0\.9"):
        deploy(
            str(baseline_artifacts["baseline"]),
            "gs://b/m",
            str(baseline_artifacts["test"]),
            "bc",
            str(tmp_path / "deployment"),
            str(tmp_path / "deploy.md"),
            DeployConfig(target="render"),
            evaluation_json=str(evaluation),
        )
    assert not (tmp_path / "deployment").exists() and not (tmp_path / "deploy.md").exists()


def test_a_forced_blessing_deploys_and_is_reported(baseline_artifacts, tmp_path):
    evaluation = _evaluation(
        baseline_artifacts["baseline"],
        baseline_artifacts["test"],
        tmp_path / "forced.json",
        thresholds={"roc_auc": {"min": 1.01}},
        force_bless={"reason": "INC-7 rollback target"},
    )
    result = deploy(
        str(baseline_artifacts["baseline"]),
        "gs://b/m",
        str(baseline_artifacts["test"]),
        "bc",
        str(tmp_path / "deployment"),
        str(tmp_path / "deploy.md"),
        DeployConfig(target="render"),
        evaluation_json=str(evaluation),
    )
    assert result["blessing"] == "force-blessed: INC-7 rollback target"
    assert "Evaluation: force-blessed: INC-7 rollback target." in (tmp_path / "deploy.md").read_text()


def test_check_blessing_table(baseline_artifacts, tmp_path):
    from components.deploy_model.core import check_blessing

    manifest = read_model_manifest(baseline_artifacts["baseline"])
    digest = manifest.files["model.skops"]
    good = {"blessed": True, "model_sha256": digest, "forced": None, "checks": []}
    assert check_blessing(good, manifest, "e.json") == "blessed"
    forced = {**good, "forced": {"reason": "incident 7"}, "checks": [{"check": "x", "passed": False, "gating": True}]}
    assert check_blessing(forced, manifest, "e.json") == "force-blessed: incident 7"
    cases = [
        ({}, "not an evaluation"),
        ({**good, "blessed": "yes"}, "not an evaluation"),
        (
            {**good, "blessed": False, "checks": [{"check": "a", "passed": False, "gating": False}]},
            "failed check\\(s\\): none recorded",
        ),
        (
            {**good, "checks": [{"check": "roc_auc ≥ 0.9", "passed": False, "gating": True}]},
            "says blessed, yet gating check\\(s\\) failed",  # a hand-edited verdict is not trusted
        ),
        ({**good, "model_sha256": "0" * 64}, "the evaluation is of another model"),
        ({k: v for k, v in good.items() if k != "model_sha256"}, "the evaluation is of another model"),
    ]
    for evaluation, pattern in cases:
        with pytest.raises(NotBlessedError, match=pattern):
            check_blessing(evaluation, manifest, "e.json")


# --- local -----------------------------------------------------------------------------------------


@pytest.mark.serving
def test_local_target_smoke_tests_and_stops_the_server(baseline_artifacts, tmp_path, started_servers):
    result, out = _deploy(
        baseline_artifacts, tmp_path, model="baseline", target="local", smoke_rows=4, ready_timeout_s=90
    )

    smoke = result["smoke"]
    assert (smoke["v1"], smoke["v2"], smoke["rows"], smoke["v2_inputs"]) == ("passed", "passed", 4, "matrix")
    assert result["action"] == "smoke-tested locally"
    (server,) = started_servers
    assert result["endpoint"] == f"{server.url}/v2/models/breast-cancer/infer"
    assert server.proc is not None and server.proc.returncode is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    assert (out / "server.log").is_file()
    assert json.loads((out / RESULT_FILE).read_text()) == result
    assert "server stopped" in (tmp_path / "deploy.md").read_text()


# --- raw rows: the smoke requests of a mixed-type model ----------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict[str, Path]:
    from mixed_artifacts import build_mixed

    return build_mixed(tmp_path_factory.mktemp("mixed"))


def test_raw_records_are_json_with_nulls_strings_and_python_scalars():
    import numpy as np
    import pandas as pd

    from components.deploy_model.core import raw_records

    df = pd.DataFrame(
        {
            "tenure": [1.5, np.nan],
            "plan": ["pro", None],
            "autopay": np.array([True, False]),
            "seats": pd.array([3, None], dtype="Int64"),
            "ignored": ["x", "y"],
        }
    )
    records = raw_records(df, ["plan", "tenure", "autopay", "seats"])

    assert records == [
        {"plan": "pro", "tenure": 1.5, "autopay": True, "seats": 3},
        {"plan": None, "tenure": None, "autopay": False, "seats": None},
    ]
    assert [list(r) for r in records] == [["plan", "tenure", "autopay", "seats"]] * 2  # the model's order
    assert all(type(v) in (str, float, bool, int, type(None)) for r in records for v in r.values())
    json.dumps(records, allow_nan=False)


def test_smoke_requests_of_a_mixed_type_model_carry_the_raw_values(mixed):
    from components.deploy_model.core import smoke_requests
    from serving.formats import load_model
    from shipyard.artifacts import read_dataset

    model = load_model(mixed["linear"])
    df, _ = read_dataset(mixed["test"])
    sample = df.head(12)
    v1, v2 = smoke_requests(model, sample)

    records = v1["instances"]
    assert len(records) == 12 and [list(r) for r in records] == [["age", "tenure", "plan", "region", "autopay"]] * 12
    assert records[0]["plan"] == "enterprise" and isinstance(records[0]["autopay"], bool)
    nulls = sample["age"].isna().to_numpy()
    assert nulls.any() and [r["age"] is None for r in records] == nulls.tolist()  # nulls in the raw rows
    assert all(isinstance(r["tenure"], int) for r in records)
    json.dumps(v1, allow_nan=False), json.dumps(v2, allow_nan=False)
    inputs = {i["name"]: i for i in v2["inputs"]}
    assert {n: i["datatype"] for n, i in inputs.items()} == {
        "age": "FP64",
        "tenure": "FP64",
        "plan": "BYTES",
        "region": "BYTES",
        "autopay": "BOOL",
    }
    assert all(i["shape"] == [12] and i["data"] == [r[n] for r in records] for n, i in inputs.items())
    # the datatypes the server advertises win
    _, v2 = smoke_requests(model, sample, {"inputs": [{"name": "tenure", "datatype": "INT64", "shape": [-1]}]})
    assert {i["name"]: i["datatype"] for i in v2["inputs"]}["tenure"] == "INT64"


def test_smoke_requests_of_an_all_numeric_model_send_one_fp32_matrix(baseline_artifacts):
    from components.deploy_model.core import smoke_requests
    from serving.formats import load_model
    from shipyard.artifacts import read_dataset

    model = load_model(baseline_artifacts["baseline"])
    df, _ = read_dataset(baseline_artifacts["test"])
    v1, v2 = smoke_requests(model, df.head(3))

    (tensor,) = v2["inputs"]
    assert tensor["name"] == "input" and tensor["datatype"] == "FP32"
    assert tensor["shape"] == [3, len(model.manifest.feature_names)]
    assert [list(r) for r in v1["instances"]] == [model.manifest.feature_names] * 3


def test_smoke_rows_the_model_does_not_take_are_a_typed_error(mixed, tmp_path):
    from components.deploy_model.core import smoke_requests
    from serving.formats import load_model
    from shipyard.artifacts import read_dataset
    from shipyard.errors import DataValidationError

    df, _ = read_dataset(mixed["test"])
    df["tenure"] = df["tenure"].astype(object)
    df.loc[1, "tenure"] = None
    with pytest.raises(DataValidationError, match=r"feature 'tenure' is null in row 1"):
        smoke_requests(load_model(mixed["linear"]), df.head(3))
    with pytest.raises(DataValidationError, match=r"missing feature column\(s\) \['plan'\]"):
        smoke_requests(load_model(mixed["linear"]), df.drop(columns=["plan"]).head(3))


@pytest.mark.serving
@pytest.mark.parametrize("family", ["linear", "gbdt"])
def test_local_target_smoke_tests_a_mixed_type_model_on_raw_rows(mixed, tmp_path, started_servers, family):
    """The same raw test rows (nulls, strings, booleans, an unseen category) give the same scores over
    V1 and V2 as score_frame, the path evaluation scores them on."""
    result, _ = _deploy(mixed, tmp_path, model=family, target="local", smoke_rows=20, ready_timeout_s=90)

    smoke = result["smoke"]
    assert (smoke["v1"], smoke["v2"], smoke["rows"], smoke["v2_inputs"]) == ("passed", "passed", 20, "per-feature")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("minio://mlpipeline/v2/artifacts/run/model", "s3://mlpipeline/v2/artifacts/run/model"),
        ("gs://bucket/model", "gs://bucket/model"),
        ("s3://bucket/model", "s3://bucket/model"),
        ("/local/path", "/local/path"),
    ],
)
def test_kserve_storage_uri(uri, expected):
    from components.deploy_model.core import kserve_storage_uri

    assert kserve_storage_uri(uri) == expected
