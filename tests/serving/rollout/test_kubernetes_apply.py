"""deploy_model's Kubernetes path against a fake CustomObjectsApi (no cluster exists here).

The fake records calls with the signatures of ``kubernetes.client.CustomObjectsApi`` and raises
the client's own ``ApiException``, so the create / patch / wait / error logic runs for real.
"""

from __future__ import annotations

import inspect

import pytest
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from serving.rollout.isvc import render_inference_service
from serving.rollout.kubernetes import apply_to_cluster
from shipyard.errors import DeploymentError


class FakeApi:
    """Stores InferenceServices; becomes Ready after ``ready_after`` gets."""

    def __init__(self, existing: bool = False, ready_after: int = 1, fail_with: int | None = None):
        self.objects: dict[str, dict] = {}
        self.calls: list[str] = []
        self.ready_after, self.fail_with, self.gets = ready_after, fail_with, 0
        if existing:
            self.objects["bc"] = {"metadata": {"name": "bc"}, "status": {}}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append("get")
        if self.fail_with:
            raise ApiException(status=self.fail_with, reason="Forbidden")
        if name not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        self.gets += 1
        obj = dict(self.objects[name])
        if self.gets > self.ready_after:
            obj["status"] = {
                "url": f"http://{name}.{namespace}.example",
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        return obj

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append("create")
        self.objects[body["metadata"]["name"]] = body

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append("patch")
        self.objects[name] = {**self.objects[name], **body}


def test_fake_matches_the_real_client_signatures():
    for method in ("get_namespaced_custom_object", "create_namespaced_custom_object", "patch_namespaced_custom_object"):
        real = list(inspect.signature(getattr(CustomObjectsApi, method)).parameters)[1:]
        fake = list(inspect.signature(getattr(FakeApi, method)).parameters)[1:]
        assert real[: len(fake)] == fake, method


@pytest.fixture
def isvc():
    return render_inference_service("bc", "gs://bucket/model", "onnx", canary_traffic_percent=20)


def test_creates_a_new_service_and_waits_for_ready(isvc):
    api = FakeApi(existing=False, ready_after=2)
    result = apply_to_cluster(isvc, timeout_s=5, api=api, poll_s=0)
    assert result == {"action": "created", "url": "http://bc.default.example"}
    assert api.calls[:2] == ["get", "create"] and api.calls.count("get") >= 3


def test_patches_an_existing_service_as_a_canary(isvc):
    api = FakeApi(existing=True)
    result = apply_to_cluster(isvc, timeout_s=5, api=api, poll_s=0)
    assert result["action"] == "patched"
    assert api.objects["bc"]["spec"]["predictor"]["canaryTrafficPercent"] == 20


def test_not_ready_in_time_is_a_deployment_error(isvc):
    with pytest.raises(DeploymentError, match="not ready after 0s"):
        apply_to_cluster(isvc, timeout_s=0, api=FakeApi(ready_after=10**6), poll_s=0)


def test_api_refusal_is_a_deployment_error(isvc):
    with pytest.raises(DeploymentError, match="default/bc: Kubernetes API answered 403 Forbidden"):
        apply_to_cluster(isvc, timeout_s=5, api=FakeApi(fail_with=403), poll_s=0)


def test_an_existing_raw_deployment_is_kept_for_the_rollouts_canary_entry():
    raw = render_inference_service(
        "bc", "gs://bucket/new", "onnx", deployment_mode="RawDeployment", canary_traffic_percent=None
    )
    api = FakeApi(existing=True)
    before = dict(api.objects["bc"])
    result = apply_to_cluster(raw, timeout_s=5, api=api, poll_s=0, keep_existing=True)
    assert result["action"] == "kept" and "patch" not in api.calls and api.objects["bc"] == before
    created = apply_to_cluster(raw, timeout_s=5, api=FakeApi(existing=False), poll_s=0, keep_existing=True)
    assert created["action"] == "created"  # a new service is created all the same
