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
