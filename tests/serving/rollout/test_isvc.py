"""Tests for serving.rollout.isvc: the InferenceService and ClusterServingRuntime rendering, against the CRD."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.rollout.isvc import SERVED_FORMATS, render_inference_service, render_serving_runtime
from shipyard.errors import ConfigError


def test_a_rendered_service_passes_the_crd_schema_and_a_malformed_one_does_not(validate_isvc):
    import jsonschema

    isvc = render_inference_service("bc", "gs://b/m", "onnx")
    validate_isvc(isvc)
    isvc["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    with pytest.raises(jsonschema.ValidationError, match="canaryTrafficPercent|'ten'"):
        validate_isvc(isvc)


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


@pytest.mark.parametrize("fmt", SERVED_FORMATS)
def test_every_served_format_renders_a_valid_service(validate_isvc, fmt):
    isvc = render_inference_service("bc", "gs://b/m", fmt, canary_traffic_percent=10)
    validate_isvc(isvc)
    assert isvc["spec"]["predictor"]["model"]["modelFormat"] == {"name": f"shipyard-{fmt}"}
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10


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


def test_the_committed_crd_copy_is_used_when_the_shared_schema_is_absent(tmp_path):
    import json

    from conftest import CRD_COPY, CRD_SHARED, crd_path

    assert crd_path(environ={}, shared=tmp_path / "absent.json") == CRD_COPY
    shared = tmp_path / "crd.json"
    shared.write_text("{}")
    assert crd_path(environ={}, shared=shared) == shared, "the shared schema wins when it is there"
    assert crd_path(environ={"SHIPYARD_ISVC_CRD": "/x.json"}, shared=shared) == Path("/x.json")
    copy = json.loads(CRD_COPY.read_text())
    assert copy["spec"]["names"]["kind"] == "InferenceService" and copy["spec"]["versions"][0]["name"] == "v1beta1"
    if CRD_SHARED.is_file():
        assert copy == json.loads(CRD_SHARED.read_text()), f"{CRD_COPY} is stale: copy {CRD_SHARED} over it"


def test_the_default_service_is_non_root_and_names_no_model_container(validate_isvc):
    isvc = render_inference_service("bc", "gs://b/m", "onnx")
    validate_isvc(isvc)
    model = isvc["spec"]["predictor"]["model"]
    assert model["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "name" not in model, "KServe's webhook rejects a named model in a standard predictor"
    assert "annotations" not in isvc["metadata"], "no deployment_mode: the cluster's default"
    assert (
        "securityContext"
        not in render_inference_service("bc", "gs://b/m", "onnx", security_context=False)["spec"]["predictor"]["model"]
    )
    custom = render_inference_service("bc", "gs://b/m", "onnx", security_context={"runAsUser": 1000})
    assert custom["spec"]["predictor"]["model"]["securityContext"] == {"runAsUser": 1000}


@pytest.mark.parametrize(
    ("mode", "metric"),
    [("Serverless", "concurrency"), ("Serverless", "rps"), ("RawDeployment", "cpu"), ("Standard", "memory")],
)
def test_modes_and_scaling_render_valid_services(validate_isvc, mode, metric):
    percent = 10 if mode == "Serverless" else None
    isvc = render_inference_service(
        "bc",
        "gs://b/m",
        "onnx",
        canary_traffic_percent=percent,
        deployment_mode=mode,
        scale_metric=metric,
        scale_target=80,
        min_replicas=2,
        max_replicas=5,
    )
    validate_isvc(isvc)
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": mode}
    predictor = isvc["spec"]["predictor"]
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == (metric, 80)
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 5)


def test_gpus_tolerations_node_selector_and_service_account(validate_isvc):
    from shipyard import images

    isvc = render_inference_service(
        "bc",
        "s3://b/m",
        "torchscript",
        gpus=2,
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
        service_account="s3-reader",
    )
    validate_isvc(isvc)
    predictor = isvc["spec"]["predictor"]
    resources = predictor["model"]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"
    assert resources["requests"]["cpu"] == "100m", "the GPU is added to the default resources"
    assert predictor["model"]["image"] == images.GPU_IMAGE
    assert predictor["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert predictor["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert predictor["serviceAccountName"] == "s3-reader"
    plain = render_inference_service("bc", "s3://b/m", "onnx", resources={"limits": {"cpu": "2"}})["spec"]["predictor"]
    assert plain["model"]["resources"] == {"limits": {"cpu": "2"}} and "image" not in plain["model"]
    assert "tolerations" not in plain and "nodeSelector" not in plain


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"deployment_mode": "Knative"}, "deployment_mode 'Knative' is not one of"),
        ({"deployment_mode": "RawDeployment"}, "canary_traffic_percent is Serverless only"),
        (
            {"deployment_mode": "Serverless", "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}},
            "contradicts annotation serving.kserve.io/deploymentMode='RawDeployment'",
        ),
        ({"scale_metric": "cpu"}, "scale_metric 'cpu' is not one of ('concurrency', 'rps') for Serverless"),
        (
            {"deployment_mode": "RawDeployment", "canary_traffic_percent": None, "scale_metric": "rps"},
            "scale_metric 'rps' is not one of ('cpu', 'memory') for RawDeployment",
        ),
        ({"scale_metric": "concurrency", "scale_target": 0}, "scale_target must be a whole number >= 1"),
        (
            {
                "deployment_mode": "RawDeployment",
                "canary_traffic_percent": None,
                "scale_metric": "cpu",
                "scale_target": 150,
            },
            "scale_target is a utilization percentage for cpu: 1..100",
        ),
        (
            {"deployment_mode": "RawDeployment", "canary_traffic_percent": None, "min_replicas": 0},
            "min_replicas must be >= 1 for RawDeployment",
        ),
        ({"gpus": -1}, "gpus must be a whole number >= 0"),
        ({"gpus": 1, "resources": {"limits": {"nvidia.com/gpu": "2"}}}, "contradicts gpus=1"),
        ({"resources": {"request": {"cpu": "1"}}}, "resources has keys ['request']"),
        ({"resources": {"limits": {"cpu": 1.5}}}, "resources.limits must map resource names to quantities"),
        ({"tolerations": [{"key": "a", "effects": "NoSchedule"}]}, "tolerations[0]"),
        ({"tolerations": [{"key": "a", "operator": "In"}]}, "tolerations[0].operator must be 'Equal' or 'Exists'"),
        ({"tolerations": [{"key": "a", "effect": "Never"}]}, "tolerations[0].effect must be"),
        ({"node_selector": {"gpu": True}}, "node_selector must map label names to string values"),
        ({"service_account": "Bad_SA"}, "service_account 'Bad_SA'"),
        ({"security_context": "yes"}, "security_context must be true, false or a mapping"),
    ],
)
def test_render_options_errors_name_the_field(kwargs, fragment):
    with pytest.raises(ConfigError) as exc:
        render_inference_service("bc", "gs://b/m", "onnx", **kwargs)
    assert fragment in str(exc.value)


@pytest.fixture
def raw_stable():
    return render_inference_service(
        "bc",
        "gs://b/1",
        "onnx",
        canary_traffic_percent=None,
        deployment_mode="RawDeployment",
        min_replicas=2,
        max_replicas=4,
        scale_metric="cpu",
        scale_target=60,
        service_account="reader",
        node_selector={"pool": "cpu"},
    )


def test_a_raw_canary_is_the_stable_predictor_with_the_new_model_and_no_scaling(validate_isvc, raw_stable):
    from serving.rollout.isvc import predictor_deployment, render_raw_canary, with_raw_canary

    entry = render_raw_canary(raw_stable, "gs://b/2", "torchscript", 5)
    isvc = with_raw_canary(raw_stable, entry)
    validate_isvc(isvc)
    assert "canary" not in raw_stable["spec"], "the stable service is not changed"
    assert entry["trafficPercent"] == 5
    predictor = entry["predictor"]
    assert predictor["name"] == "canary" and predictor_deployment("bc", predictor["name"]) == "bc-canary-predictor"
    assert predictor["model"]["storageUri"] == "gs://b/2"
    assert predictor["model"]["modelFormat"] == {"name": "shipyard-torchscript"}
    assert predictor["model"]["securityContext"] == raw_stable["spec"]["predictor"]["model"]["securityContext"]
    assert (predictor["serviceAccountName"], predictor["nodeSelector"]) == ("reader", {"pool": "cpu"})
    assert not {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "canaryTrafficPercent"} & set(predictor)
    gpu = render_raw_canary(raw_stable, "gs://b/2", "onnx", name="v2", gpus=1)
    assert (
        gpu["predictor"]["name"] == "v2" and gpu["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    )
    validate_isvc(with_raw_canary(raw_stable, gpu))
    promoted = {**raw_stable, "spec": {"predictor": {**raw_stable["spec"]["predictor"], "name": "canary"}}}
    assert render_raw_canary(promoted, "gs://b/3", "onnx")["predictor"]["name"] == "canary-2"
    assert predictor_deployment("bc") == "bc-predictor"


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (("gs://b/2", "onnx", 101), {}, "traffic_percent must be a whole number in 0..100"),
        (("gs://b/2", "keras"), {}, "model format 'keras' cannot be served"),
        (("", "onnx"), {}, "canary_storage_uri is empty"),
        (("gs://b/2", "onnx"), {"name": "V2"}, "canary name 'V2' must be a DNS-1035 label"),
    ],
)
def test_render_raw_canary_errors(raw_stable, args, kwargs, fragment):
    from serving.rollout.isvc import render_raw_canary

    with pytest.raises(ConfigError) as exc:
        render_raw_canary(raw_stable, *args, **kwargs)
    assert fragment in str(exc.value)


def test_a_raw_canary_needs_a_raw_service():
    from serving.rollout.isvc import render_raw_canary

    with pytest.raises(ConfigError, match="default/bc is not RawDeployment"):
        render_raw_canary(render_inference_service("bc", "gs://b/1", "onnx"), "gs://b/2", "onnx")
