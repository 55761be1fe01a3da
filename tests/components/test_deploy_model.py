"""Tests for components.deploy_model.core and serving.rollout.isvc: names, rendering, a local smoke test."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from components.deploy_model import core
from components.deploy_model.core import ISVC_FILE, RESULT_FILE, DeployConfig, deploy, service_name_for
from serving.rollout.isvc import DNS_LABEL, SERVED_FORMATS, render_inference_service, render_serving_runtime
from shipyard.artifacts import read_model_manifest
from shipyard.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
GENERATED_RUNTIME = REPO / "manifests" / "generated" / "cluster-serving-runtime.yaml"


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


@pytest.fixture(scope="module")
def validate_isvc(isvc_schema):
    """Validates against the CRD schema (the schema itself is checked once, not per call: it is large)."""
    import jsonschema

    validator = jsonschema.validators.validator_for(isvc_schema)(isvc_schema)
    return validator.validate


def test_the_crd_schema_rejects_a_malformed_service(validate_isvc):
    import jsonschema

    isvc = render_inference_service("bc", "gs://b/m", "onnx")
    validate_isvc(isvc)
    isvc["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    with pytest.raises(jsonschema.ValidationError, match="canaryTrafficPercent|'ten'"):
        validate_isvc(isvc)


def _deploy(artifacts, tmp_path: Path, model: str = "quantized", **values) -> tuple[dict, Path]:
    out = tmp_path / "deployment"
    result = deploy(
        str(artifacts[model]),
        "gs://bucket/models/bc/7",
        str(artifacts["test"]),
        "Breast_Cancer",
        str(out),
        str(tmp_path / "deploy.md"),
        DeployConfig.from_dict(values),
    )
    return result, out


def test_render_target_writes_a_valid_inference_service(artifacts, tmp_path, validate_isvc):
    result, out = _deploy(artifacts, tmp_path, target="render", canary_traffic_percent=25, namespace="ml")

    text = (out / ISVC_FILE).read_text()
    assert text.startswith("# Rendered by shipyard deploy_model\n")
    isvc = yaml.safe_load(text)
    validate_isvc(isvc)
    fmt = read_model_manifest(artifacts["quantized"]).format
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

    assert result == {"target": "render", "service": "breast-cancer", "endpoint": "", "smoke": None, "action": None}
    assert json.loads((out / RESULT_FILE).read_text()) == result
    report = (tmp_path / "deploy.md").read_text()
    assert "# Deployment: breast-cancer" in report and "canary traffic 25%" in report and "```yaml" in report


@pytest.mark.parametrize("model", ["baseline", "model"])
def test_rendered_model_format_follows_the_artifact(artifacts, tmp_path, validate_isvc, model):
    _, out = _deploy(artifacts, tmp_path, model=model, target="render", service_name="bc-canary")
    isvc = yaml.safe_load((out / ISVC_FILE).read_text())
    validate_isvc(isvc)
    fmt = read_model_manifest(artifacts[model]).format
    assert isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] == f"shipyard-{fmt}"
    assert isvc["metadata"]["name"] == "bc-canary"


def test_a_bad_service_name_is_rejected_before_anything_is_written(artifacts, tmp_path):
    with pytest.raises(ConfigError, match="service name 'BC_1' must be a DNS-1035 label"):
        _deploy(artifacts, tmp_path, target="render", service_name="BC_1")
    assert not (tmp_path / "deployment").exists()


def test_an_empty_model_name_is_derived_from_the_data(artifacts, tmp_path, validate_isvc):
    out = tmp_path / "deployment"
    result = deploy(
        str(artifacts["quantized"]),
        "gs://bucket/models/churn/1",
        str(artifacts["test"]),
        "",
        str(out),
        str(tmp_path / "deploy.md"),
        DeployConfig(target="render"),
        "gs://b/x/Churn Export.csv",
    )
    isvc = yaml.safe_load((out / ISVC_FILE).read_text())
    validate_isvc(isvc)
    assert result["service"] == "churn-export" and isvc["metadata"]["name"] == "churn-export"


@pytest.mark.parametrize(("model_name", "source"), [("team/churn", "x.csv"), ("", "")])
def test_an_unusable_model_name_is_rejected_before_anything_is_written(artifacts, tmp_path, model_name, source):
    with pytest.raises(ConfigError, match=f"model_name {model_name!r}"):
        deploy(
            str(artifacts["quantized"]),
            "gs://b/m",
            str(artifacts["test"]),
            model_name,
            str(tmp_path / "deployment"),
            str(tmp_path / "deploy.md"),
            DeployConfig(target="render"),
            source,
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


# --- local -----------------------------------------------------------------------------------------


@pytest.mark.serving
def test_local_target_smoke_tests_and_stops_the_server(artifacts, tmp_path, monkeypatch):
    servers: list[core.LocalServer] = []

    class Recording(core.LocalServer):
        def __enter__(self):
            servers.append(self)
            return super().__enter__()

    monkeypatch.setattr(core, "LocalServer", Recording)

    result, out = _deploy(artifacts, tmp_path, model="baseline", target="local", smoke_rows=4, ready_timeout_s=90)

    smoke = result["smoke"]
    assert (smoke["v1"], smoke["v2"], smoke["rows"]) == ("passed", "passed", 4)
    assert result["action"] == "smoke-tested locally"
    assert result["endpoint"] == f"{servers[0].url}/v2/models/breast-cancer/infer"
    (server,) = servers
    assert server.proc is not None and server.proc.returncode is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    assert (out / "server.log").is_file()
    assert json.loads((out / RESULT_FILE).read_text()) == result
    assert "server stopped" in (tmp_path / "deploy.md").read_text()


# --- render_inference_service / render_serving_runtime ---------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "Bad_Name"}, "service name 'Bad_Name' must be a DNS-1035 label"),
        ({"name": "1bc"}, "service name '1bc'"),
        ({"name": "bc-"}, "service name 'bc-'"),
        ({"name": "b" * 64}, "must be a DNS-1035 label"),
        ({"model_format": "keras"}, "model format 'keras' cannot be served"),
        ({"model_format": "tflite"}, "model format 'tflite' cannot be served"),
        ({"canary_traffic_percent": 101}, "canary_traffic_percent must be in 0..100, got 101"),
        ({"min_replicas": 4, "max_replicas": 3}, "min_replicas <= max_replicas"),
        ({"min_replicas": 0, "max_replicas": 0}, "max_replicas >= 1"),
        ({"storage_uri": ""}, "storage_uri is empty"),
    ],
)
def test_render_inference_service_errors(kwargs, fragment):
    args = {"name": "bc", "storage_uri": "gs://b/m", "model_format": "onnx", **kwargs}
    with pytest.raises(ConfigError) as exc:
        render_inference_service(**args)
    assert fragment in str(exc.value)


def test_render_inference_service_without_canary_omits_it(validate_isvc):
    isvc = render_inference_service(
        "bc",
        "pvc://models/bc",
        "torchscript",
        canary_traffic_percent=None,
        service_account="reader",
        annotations={"serving.kserve.io/deploymentMode": "Raw"},
    )
    validate_isvc(isvc)
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "reader"
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Raw"}


def test_render_serving_runtime_lists_the_three_formats():
    runtime = render_serving_runtime(image="registry.example/shipyard:test")
    formats = runtime["spec"]["supportedModelFormats"]
    assert [f["name"] for f in formats] == [f"shipyard-{f}" for f in SERVED_FORMATS]
    assert [f["name"] for f in formats] == ["shipyard-sklearn-skops", "shipyard-torchscript", "shipyard-onnx"]
    assert all(f["autoSelect"] is True and f["version"] == "1" for f in formats)
    (container,) = runtime["spec"]["containers"]
    assert container["image"] == "registry.example/shipyard:test"
    assert container["args"][:2] == ["serve", "/mnt/models"] and "{{.Name}}" in container["args"]
    assert runtime["kind"] == "ClusterServingRuntime" and runtime["metadata"]["name"] == "shipyard"
    assert runtime["spec"]["protocolVersions"] == ["v1", "v2"]


def test_committed_serving_runtime_is_not_stale():
    if not GENERATED_RUNTIME.is_file():
        pytest.skip(f"{GENERATED_RUNTIME} is not committed")
    assert yaml.safe_load(GENERATED_RUNTIME.read_text()) == render_serving_runtime(), (
        "manifests/generated is stale; regenerate with `make manifests`"
    )


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
