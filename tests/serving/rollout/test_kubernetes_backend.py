"""KubernetesBackend against a fake CustomObjectsApi (no cluster exists here) and, for the wire, a local HTTP API.

The fake has the real client's method signatures, raises the client's own ``ApiException``, applies
every patch with RFC 7386 merge-patch semantics (the content type the real client sends, checked
below against a real ``CustomObjectsApi`` talking HTTP to 127.0.0.1), honours a
``metadata.resourceVersion`` precondition with 409 Conflict as the API server does, and validates
the stored InferenceService against the CRD schema after every write. KServe's controller is played
by the tests: they write the status it would write.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import inspect
import json
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from tiers import resource

from serving.rollout.backend import Backend
from serving.rollout.isvc import render_inference_service
from serving.rollout.kubernetes import (
    COMMAND_ANNOTATION,
    STATE_ANNOTATION,
    KubernetesBackend,
    merge_patch_between,
)
from shipyard.errors import ConfigError, DeploymentError

STABLE_URI, CANARY_URI = "gs://models/bc/1", "gs://models/bc/2"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2: a patch that is not an object replaces; null removes a member; objects merge."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_the_tests_merge_patch_follows_rfc_7386(target, patch, expected):
    assert merge_patch(target, patch) == expected


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 4}}),
        ({"a": [1, 2]}, {"a": [1]}),
        ({"a": {"b": 1}}, {"x": {"y": [1]}}),
        ({}, {"a": {"b": "c"}}),
    ],
)
def test_merge_patch_between_turns_old_into_new(old, new):
    assert merge_patch(old, merge_patch_between(old, new)) == new


class FakeApi:
    """InferenceServices in a dict, written with merge-patch semantics and validated after every write."""

    def __init__(self, validate: Callable[[dict], None]):
        self.validate = validate
        self.objects: dict[str, dict] = {}
        self.calls: list[tuple[str, Any]] = []
        self.fail: dict[str, int] = {}  # verb -> HTTP status the next call of that verb answers
        self.conflicts = 0  # patches with a resourceVersion that a concurrent writer beats

    def put(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        obj["metadata"].update(resourceVersion="1", generation=1)
        obj.setdefault("status", {})["observedGeneration"] = 1
        self.validate(obj)
        self.objects[obj["metadata"]["name"]] = obj
        return obj

    def set_status(self, name: str, **status: Any) -> None:
        """What KServe's controller writes (through the status subresource); observedGeneration catches up."""
        obj = self.objects[name]
        obj["status"] = {**obj.get("status", {}), **status, "observedGeneration": obj["metadata"]["generation"]}
        self.validate(obj)

    def _failure(self, verb: str) -> None:
        if verb in self.fail:
            status = self.fail.pop(verb)
            raise ApiException(status=status, reason={403: "Forbidden", 500: "Internal Server Error"}[status])

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **kwargs):
        assert (group, version, plural) == ("serving.kserve.io", "v1beta1", "inferenceservices")
        self.calls.append(("get", name))
        self._failure("get")
        if name not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.objects[name])

    def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **kwargs):
        assert (group, version, plural) == ("serving.kserve.io", "v1beta1", "inferenceservices")
        assert isinstance(body, dict), "the client sends application/merge-patch+json: the body must be an object"
        self.calls.append(("patch", copy.deepcopy(body)))
        self._failure("patch")
        if name not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        current = self.objects[name]
        precondition = body.get("metadata", {}).get("resourceVersion")
        if precondition is not None and self.conflicts:
            self.conflicts -= 1
            current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        if precondition is not None and precondition != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        patched = merge_patch(current, {k: v for k, v in body.items() if k != "status"})  # status is a subresource
        patched["status"] = current.get("status", {})
        patched["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        if patched.get("spec") != current.get("spec"):
            patched["metadata"]["generation"] = current["metadata"]["generation"] + 1
        self.validate(patched)
        self.objects[name] = patched
        return copy.deepcopy(patched)

    def patches(self) -> list[dict]:
        return [body for verb, body in self.calls if verb == "patch"]


def test_fake_matches_the_real_client_signatures():
    for method in ("get_namespaced_custom_object", "patch_namespaced_custom_object"):
        real = list(inspect.signature(getattr(CustomObjectsApi, method)).parameters)
        fake = list(inspect.signature(getattr(FakeApi, method)).parameters)
        assert real == fake, method


def test_the_backend_implements_the_protocol():
    members = {name for name in dir(Backend) if not name.startswith("_")} | set(Backend.__annotations__)
    for name in members:
        assert hasattr(KubernetesBackend("bc", api=object()), name), name
        if callable(getattr(Backend, name, None)):
            proto = list(inspect.signature(getattr(Backend, name)).parameters)
            assert list(inspect.signature(getattr(KubernetesBackend, name)).parameters) == proto, name


@pytest.fixture
def api(validate_isvc) -> FakeApi:
    return FakeApi(validate_isvc)


def predictor_status(created: str, ready: str, rolled: str, previous: str = "") -> dict:
    status = {"latestCreatedRevision": created, "latestReadyRevision": ready, "latestRolledoutRevision": rolled}
    return {"predictor": {**status, **({"previousRolledoutRevision": previous} if previous else {})}}


@pytest.fixture
def serverless(api: FakeApi) -> FakeApi:
    """A Serverless service that deploy_model has just patched: revision 2 created, not ready yet; 1 has the traffic."""
    api.put(render_inference_service("bc", CANARY_URI, "onnx", namespace="ml", canary_traffic_percent=10))
    api.set_status("bc", components=predictor_status("bc-predictor-00002", "bc-predictor-00001", "bc-predictor-00001"))
    return api


def spec_percent(api: FakeApi) -> int | None:
    return api.objects["bc"]["spec"]["predictor"].get("canaryTrafficPercent", None)


def test_serverless_walks_the_weights_and_promotes(serverless: FakeApi):
    backend = KubernetesBackend("bc", "ml", api=serverless)
    assert backend.description == "kubernetes serverless ml/bc"
    backend.start()
    assert spec_percent(serverless) == 0, "the canary starts at weight 0"
    assert backend.canary_ready() is False
    serverless.set_status(
        "bc", components=predictor_status("bc-predictor-00002", "bc-predictor-00002", "bc-predictor-00001")
    )
    assert backend.canary_ready() is True
    for weight in (5, 10, 25, 50):
        backend.set_weight(weight)
        assert spec_percent(serverless) == weight
    backend.promote()
    assert "canaryTrafficPercent" not in serverless.objects["bc"]["spec"]["predictor"], "KServe: promote = remove it"
    assert serverless.patches()[-1] == {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    assert serverless.objects["bc"]["spec"]["predictor"]["model"]["storageUri"] == CANARY_URI


def test_serverless_rollback_sends_everything_to_the_rolled_out_revision(serverless: FakeApi):
    backend = KubernetesBackend("bc", "ml", api=serverless)
    backend.start()
    backend.set_weight(25)
    backend.rollback()
    assert spec_percent(serverless) == 0
    backend.rollback()
    assert spec_percent(serverless) == 0, "rollback twice is fine"


def test_serverless_selectors_name_the_knative_revisions_fixed_at_start(serverless: FakeApi):
    backend = KubernetesBackend("bc", "ml", api=serverless)
    backend.start()
    assert backend.selector("canary") == 'namespace="ml",serving_knative_dev_revision="bc-predictor-00002"'
    assert backend.selector("stable") == 'namespace="ml",serving_knative_dev_revision="bc-predictor-00001"'
    backend.promote()  # KServe then moves latestRolledoutRevision to 00002; the rollout's sides stay what they were
    serverless.set_status(
        "bc",
        components=predictor_status(
            "bc-predictor-00002", "bc-predictor-00002", "bc-predictor-00002", "bc-predictor-00001"
        ),
    )
    assert backend.selector("stable").endswith('"bc-predictor-00001"')
    custom = KubernetesBackend("bc", "ml", api=serverless, selectors={"canary": 'job="c"'})
    assert custom.selector("canary") == 'job="c"'
    with pytest.raises(ConfigError, match="side 'both' is not one of"):
        custom.selector("both")


@pytest.mark.parametrize(
    "components",
    [
        predictor_status("bc-predictor-00001", "bc-predictor-00001", "bc-predictor-00001"),
        predictor_status("bc-predictor-00002", "", ""),
        {},
    ],
)
def test_serverless_start_needs_a_canary_revision(serverless: FakeApi, components):
    serverless.set_status("bc", components=components)
    with pytest.raises(DeploymentError, match="ml/bc has no canary revision"):
        KubernetesBackend("bc", "ml", api=serverless).start()
    assert serverless.patches() == [], "nothing is written when there is nothing to roll out"


def test_serverless_readiness_waits_for_the_controller_and_notices_a_newer_revision(serverless: FakeApi):
    backend = KubernetesBackend("bc", "ml", api=serverless)
    backend.start()
    serverless.set_status(
        "bc", components=predictor_status("bc-predictor-00002", "bc-predictor-00002", "bc-predictor-00001")
    )
    backend.set_weight(5)  # a spec change the controller has not observed yet
    assert backend.canary_ready() is False, "status of an older generation says nothing"
    serverless.set_status("bc")
    assert backend.canary_ready() is True
    serverless.set_status(
        "bc", components=predictor_status("bc-predictor-00003", "bc-predictor-00002", "bc-predictor-00001")
    )
    with pytest.raises(DeploymentError, match="revision 'bc-predictor-00003' replaced the canary"):
        backend.canary_ready()


def test_a_serverless_backend_refuses_a_raw_service(api: FakeApi):
    api.put(
        render_inference_service("bc", STABLE_URI, "onnx", canary_traffic_percent=None, deployment_mode="RawDeployment")
    )
    with pytest.raises(DeploymentError, match="is RawDeployment; use mode='raw'"):
        KubernetesBackend("bc", api=api).start()


@pytest.fixture
def raw(api: FakeApi) -> FakeApi:
    """A RawDeployment service serving the stable model, with tolerations and scaling the canary must not carry."""
    api.put(
        render_inference_service(
            "bc",
            STABLE_URI,
            "onnx",
            namespace="ml",
            canary_traffic_percent=None,
            deployment_mode="RawDeployment",
            min_replicas=2,
            max_replicas=6,
            scale_metric="cpu",
            scale_target=70,
            service_account="model-reader",
            tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        )
    )
    return api


def raw_backend(api: FakeApi, **canary: Any) -> KubernetesBackend:
    return KubernetesBackend(
        "bc", "ml", mode="raw", api=api, canary={"storage_uri": CANARY_URI, "model_format": "onnx", **canary}
    )


def canary_status(name: str, ready: bool, percent: int = 0) -> list[dict]:
    return [{"name": name, "ready": ready, "trafficPercent": percent}]


def test_raw_canary_is_added_weighted_and_promoted_by_retargeting(raw: FakeApi):
    backend = raw_backend(raw)
    backend.start()
    (entry,) = raw.objects["bc"]["spec"]["canary"]
    assert entry["trafficPercent"] == 0 and entry["predictor"]["name"] == "canary"
    assert entry["predictor"]["model"]["storageUri"] == CANARY_URI
    assert entry["predictor"]["serviceAccountName"] == "model-reader", "the canary reads storage like stable"
    assert entry["predictor"]["model"]["securityContext"]["runAsNonRoot"] is True
    assert not {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget"} & set(entry["predictor"])
    assert all("resourceVersion" in body["metadata"] for body in raw.patches()), "list edits carry a precondition"
    writes = len(raw.patches())
    backend.start()
    assert len(raw.patches()) == writes, "start() again changes nothing"

    assert backend.canary_ready() is False, "no canaryStatuses yet"
    raw.set_status("bc", canaryStatuses=canary_status("canary", False))
    assert backend.canary_ready() is False
    raw.set_status("bc", canaryStatuses=canary_status("canary", True))
    assert backend.canary_ready() is True
    for weight in (5, 10, 25, 50, 100):
        backend.set_weight(weight)
        assert raw.objects["bc"]["spec"]["canary"][0]["trafficPercent"] == weight
    backend.promote()
    spec = raw.objects["bc"]["spec"]
    assert "canary" not in spec
    assert spec["predictor"]["name"] == "canary", "retargeted: KServe keeps the canary's Deployment and pods"
    assert spec["predictor"]["model"]["storageUri"] == CANARY_URI
    assert (spec["predictor"]["minReplicas"], spec["predictor"]["maxReplicas"]) == (2, 6)
    assert (spec["predictor"]["scaleMetric"], spec["predictor"]["scaleTarget"]) == ("cpu", 70)


def test_raw_promotion_of_a_given_predictor_removes_what_it_lacks(raw: FakeApi):
    stable = raw.objects["bc"]["spec"]["predictor"]
    predictor = {"name": "v2", "model": {**stable["model"], "storageUri": CANARY_URI}}
    backend = KubernetesBackend("bc", "ml", mode="raw", api=raw, canary={"predictor": predictor})
    backend.start()
    backend.promote()
    promoted = raw.objects["bc"]["spec"]["predictor"]
    assert "tolerations" not in promoted and "serviceAccountName" not in promoted, "the predictor is replaced whole"
    assert promoted["name"] == "v2" and promoted["minReplicas"] == 2


def test_raw_rollback_removes_the_entry_and_keeps_stable(raw: FakeApi):
    stable = copy.deepcopy(raw.objects["bc"]["spec"]["predictor"])
    backend = raw_backend(raw)
    backend.start()
    backend.set_weight(10)
    backend.rollback()
    assert "canary" not in raw.objects["bc"]["spec"]
    assert raw.objects["bc"]["spec"]["predictor"] == stable
    writes = len(raw.patches())
    backend.rollback()
    assert len(raw.patches()) == writes, "rolling back twice writes nothing"
    with pytest.raises(DeploymentError, match="no spec.canary entry 'canary' \\(start\\(\\) adds it\\)"):
        backend.set_weight(5)


def test_raw_leaves_other_canaries_alone(raw: FakeApi):
    other = {
        "trafficPercent": 0,
        "predictor": {
            "name": "shadow",
            "model": {"name": "", "modelFormat": {"name": "shipyard-onnx"}, "storageUri": "gs://x"},
        },
    }
    raw.patch_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", "ml", "inferenceservices", "bc", {"spec": {"canary": [other]}}
    )
    backend = raw_backend(raw)
    backend.start()
    backend.set_weight(20)
    assert [e["predictor"]["name"] for e in raw.objects["bc"]["spec"]["canary"]] == ["shadow", "canary"]
    backend.rollback()
    assert raw.objects["bc"]["spec"]["canary"] == [other]


def test_successive_raw_rollouts_alternate_the_canary_name(raw: FakeApi):
    first = raw_backend(raw)
    first.start()
    first.promote()
    second = KubernetesBackend(
        "bc", "ml", mode="raw", api=raw, canary={"storage_uri": "gs://models/bc/3", "model_format": "onnx"}
    )
    second.start()
    assert raw.objects["bc"]["spec"]["canary"][0]["predictor"]["name"] == "canary-2"
    assert second.selector("stable") == 'namespace="ml",pod=~"bc\\-canary\\-predictor-[a-z0-9]+-[a-z0-9]+"'
    assert second.selector("canary") == 'namespace="ml",pod=~"bc\\-canary\\-2\\-predictor-[a-z0-9]+-[a-z0-9]+"'
    second.promote()
    assert raw.objects["bc"]["spec"]["predictor"]["name"] == "canary-2"


def test_raw_selectors_name_kservés_deployments(raw: FakeApi):
    backend = raw_backend(raw)
    assert backend.selector("stable") == 'namespace="ml",pod=~"bc\\-predictor-[a-z0-9]+-[a-z0-9]+"'
    assert backend.selector("canary") == 'namespace="ml",pod=~"bc\\-canary\\-predictor-[a-z0-9]+-[a-z0-9]+"'


def test_a_raw_write_retries_a_conflict_and_gives_up_after_three(raw: FakeApi):
    backend = raw_backend(raw, name="v2")
    backend.poll_s = 0
    raw.conflicts = 1
    backend.start()
    assert raw.objects["bc"]["spec"]["canary"][0]["predictor"]["name"] == "v2"
    raw.conflicts = 3
    with pytest.raises(
        DeploymentError, match="ml/bc: set the canary's weight to 5: Kubernetes API answered 409 Conflict"
    ):
        backend.set_weight(5)
    assert raw.objects["bc"]["spec"]["canary"][0]["trafficPercent"] == 0


def test_a_raw_backend_refuses_a_serverless_service(serverless: FakeApi):
    with pytest.raises(DeploymentError, match="is not RawDeployment"):
        raw_backend(serverless).start()


def test_state_and_command_annotations_round_trip(serverless: FakeApi):
    backend = KubernetesBackend("bc", "ml", api=serverless)
    assert backend.read_state() is None and backend.command() is None
    state = {"phase": "Progressing", "step": 1, "weight": 10, "reason": "", "nested": {"a": [1, 2]}}
    backend.publish(state)
    assert backend.read_state() == state
    assert json.loads(serverless.objects["bc"]["metadata"]["annotations"][STATE_ANNOTATION]) == state
    operator = KubernetesBackend("bc", "ml", api=serverless)  # `shipyard rollout promote`, another process
    operator.send_command("promote")
    assert serverless.objects["bc"]["metadata"]["annotations"][COMMAND_ANNOTATION] == "promote"
    assert backend.command() == "promote"
    assert COMMAND_ANNOTATION not in serverless.objects["bc"]["metadata"]["annotations"], "reading consumes it"
    assert backend.command() is None
    assert backend.read_state() == state, "the state stays"
    with pytest.raises(ConfigError, match="command 'pause' is not one of"):
        operator.send_command("pause")


def test_an_unknown_command_is_cleared_and_ignored(serverless: FakeApi):
    body = {"metadata": {"annotations": {COMMAND_ANNOTATION: "promte"}}}
    serverless.patch_namespaced_custom_object("serving.kserve.io", "v1beta1", "ml", "inferenceservices", "bc", body)
    backend = KubernetesBackend("bc", "ml", api=serverless)
    assert backend.command() is None
    assert COMMAND_ANNOTATION not in serverless.objects["bc"]["metadata"]["annotations"]


def test_a_command_sent_while_it_is_read_is_not_lost(serverless: FakeApi):
    backend = KubernetesBackend("bc", "ml", api=serverless, poll_s=0)
    backend.send_command("abort")
    serverless.conflicts = 1  # someone wrote the object between our read and our clear
    assert backend.command() == "abort"


def test_a_state_annotation_that_is_not_json_is_an_error(serverless: FakeApi):
    body = {"metadata": {"annotations": {STATE_ANNOTATION: "{not json"}}}
    serverless.patch_namespaced_custom_object("serving.kserve.io", "v1beta1", "ml", "inferenceservices", "bc", body)
    with pytest.raises(DeploymentError, match=f"annotation {STATE_ANNOTATION} is not JSON"):
        KubernetesBackend("bc", "ml", api=serverless).read_state()


@pytest.mark.parametrize(
    ("verb", "status", "call", "fragment"),
    [
        ("get", 403, "start", "ml/bc: get: Kubernetes API answered 403 Forbidden"),
        ("patch", 403, "start", "ml/bc: set the canary's weight to 0: Kubernetes API answered 403 Forbidden"),
        ("patch", 500, "promote", "ml/bc: promote the canary: Kubernetes API answered 500 Internal Server Error"),
        ("patch", 403, "rollback", "roll the canary back: Kubernetes API answered 403"),
        ("patch", 403, "publish", "publish the rollout state: Kubernetes API answered 403"),
        ("get", 500, "read_state", "get: Kubernetes API answered 500"),
        ("get", 403, "command", "get: Kubernetes API answered 403"),
    ],
)
def test_api_errors_are_deployment_errors_naming_the_object(serverless: FakeApi, verb, status, call, fragment):
    backend = KubernetesBackend("bc", "ml", api=serverless)
    serverless.fail[verb] = status
    args = {"publish": ({"phase": "Progressing"},)}.get(call, ())
    with pytest.raises(DeploymentError, match=fragment.replace("(", "\\(").replace(")", "\\)")):
        getattr(backend, call)(*args)


def test_a_missing_service_is_a_deployment_error(api: FakeApi):
    with pytest.raises(DeploymentError, match="InferenceService ml/nope: get: Kubernetes API answered 404 Not Found"):
        KubernetesBackend("nope", "ml", api=api).start()


def test_raw_api_errors_are_deployment_errors(raw: FakeApi):
    backend = raw_backend(raw)
    raw.fail["patch"] = 403
    with pytest.raises(DeploymentError, match="ml/bc: add the canary: Kubernetes API answered 403 Forbidden"):
        backend.start()


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mode": "knative"}, "mode 'knative' is not one of"),
        ({"mode": "raw"}, "mode='raw' needs canary.predictor, or canary.storage_uri and model_format"),
        (
            {"mode": "raw", "canary": {"predictor": {"model": {}}}},
            "canary.predictor must be a predictor spec with a 'name'",
        ),
        ({"mode": "raw", "canary": {"uri": "gs://x"}}, "canary has unknown keys ['uri']"),
        ({"canary": {"storage_uri": "gs://x", "model_format": "onnx"}}, "canary is for mode='raw' only"),
        ({"selectors": {"baseline": 'job="x"'}}, "selectors has sides ['baseline']"),
    ],
)
def test_constructor_errors(kwargs, fragment):
    with pytest.raises(ConfigError) as exc:
        KubernetesBackend("bc", "ml", api=object(), **kwargs)
    assert fragment in str(exc.value)


@pytest.mark.parametrize("weight", [-1, 101, 2.5, True, "10"])
def test_a_bad_weight_is_a_config_error(serverless: FakeApi, weight):
    with pytest.raises(ConfigError, match="weight must be a whole number in 0..100"):
        KubernetesBackend("bc", "ml", api=serverless).set_weight(weight)


def test_a_query_without_prometheus_is_a_deployment_error():
    with pytest.raises(DeploymentError, match="no prometheus_url"):
        KubernetesBackend("bc", "ml", api=object()).query("up")


# -- the wire: a real CustomObjectsApi and a real PrometheusClient against HTTP servers on 127.0.0.1 ----------


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self) -> None:
        self.server.handle_request_of(self, "GET", b"")  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.server.handle_request_of(self, "POST", self._body())  # type: ignore[attr-defined]

    def do_PATCH(self) -> None:
        self.server.handle_request_of(self, "PATCH", self._body())  # type: ignore[attr-defined]


class LocalHTTP(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 answering with ``handler(method, path, headers, body) -> (status, json)``."""

    def __init__(self, handler: Callable[[str, str, Any, bytes], tuple[int, Any]]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.handler = handler
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []

    def handle_request_of(self, request: _Handler, method: str, body: bytes) -> None:
        self.requests.append((method, request.path, dict(request.headers), body))
        status, answer = self.handler(method, request.path, request.headers, body)
        request._answer(status, answer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@resource("serving")
def local_http() -> Iterator[Callable[..., contextlib.AbstractContextManager[LocalHTTP]]]:
    """``with local_http(handler) as server:`` an in-process HTTP server on 127.0.0.1, shut down on exit."""

    @contextlib.contextmanager
    def start(handler: Callable[[str, str, Any, bytes], tuple[int, Any]]) -> Iterator[LocalHTTP]:
        server = LocalHTTP(handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    yield start


@pytest.mark.serving
def test_the_real_client_sends_merge_patches_that_the_backend_relies_on(local_http, validate_isvc):
    from kubernetes.client import ApiClient, Configuration

    store = {"bc": FakeApi(validate_isvc)}
    fake = store["bc"]
    fake.put(render_inference_service("bc", CANARY_URI, "onnx", namespace="ml"))
    fake.set_status("bc", components=predictor_status("bc-predictor-00002", "bc-predictor-00002", "bc-predictor-00001"))
    path = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/bc"

    def handler(method: str, url: str, headers: Any, body: bytes) -> tuple[int, Any]:
        if url != path:
            return 404, {"kind": "Status", "reason": "NotFound"}
        if method == "GET":
            return 200, fake.objects["bc"]
        if headers["Content-Type"] != "application/merge-patch+json":
            return 415, {"kind": "Status", "reason": "UnsupportedMediaType"}
        patched = fake.patch_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", "ml", "inferenceservices", "bc", json.loads(body)
        )
        return 200, patched

    with local_http(handler) as server:
        configuration = Configuration(host=server.url)
        api = CustomObjectsApi(ApiClient(configuration))
        backend = KubernetesBackend("bc", "ml", api=api)
        backend.start()
        backend.set_weight(25)
        backend.promote()
        backend.publish({"phase": "Succeeded"})
        assert backend.read_state() == {"phase": "Succeeded"}
    patches = [
        (headers["Content-Type"], json.loads(body)) for method, _, headers, body in server.requests if method == "PATCH"
    ]
    assert [content_type for content_type, _ in patches] == ["application/merge-patch+json"] * 4
    assert patches[2][1] == {"spec": {"predictor": {"canaryTrafficPercent": None}}}, "null travels: merge patch removes"
    assert "canaryTrafficPercent" not in fake.objects["bc"]["spec"]["predictor"]


def _minimal_prometheus_module() -> types.ModuleType:
    """``serving.rollout.prometheus`` as its contract says (used only while that module is not on this branch)."""
    import urllib.parse
    import urllib.request

    from serving.rollout.backend import Sample

    class PrometheusClient:
        def __init__(self, url: str, timeout_s: float = 10.0):
            self.url, self.timeout_s = url.rstrip("/"), timeout_s

        def query(self, promql: str) -> list[Sample]:
            data = urllib.parse.urlencode({"query": promql}).encode()
            with urllib.request.urlopen(f"{self.url}/api/v1/query", data=data, timeout=self.timeout_s) as resp:
                answer = json.loads(resp.read())
            return [Sample(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]

    module = types.ModuleType("serving.rollout.prometheus")
    module.PrometheusClient = PrometheusClient  # type: ignore[attr-defined]
    return module


@pytest.mark.serving
def test_query_goes_to_the_prometheus_http_api(local_http, monkeypatch):
    from serving.rollout.backend import Sample

    try:
        import serving.rollout.prometheus  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "serving.rollout.prometheus", _minimal_prometheus_module())

    def handler(method: str, url: str, headers: Any, body: bytes) -> tuple[int, Any]:
        import urllib.parse

        query = urllib.parse.parse_qs(body.decode() or urllib.parse.urlsplit(url).query)["query"][0]
        result = [{"metric": {"route": "v1_predict"}, "value": [1700000000.0, "0.25"]}] if "canary" in query else []
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}

    with local_http(handler) as server:
        backend = KubernetesBackend(
            "bc", "ml", api=object(), prometheus_url=server.url, selectors={"canary": 'job="canary"'}
        )
        promql = f"sum(rate(shipyard_requests_total{{{backend.selector('canary')}}}[30s]))"
        assert backend.query(promql) == [Sample({"route": "v1_predict"}, 0.25)]
        assert backend.query('up{job="stable"}') == []
    assert all(path.startswith("/api/v1/query") for _, path, _, _ in server.requests)


def test_no_kubeconfig_is_a_deployment_error_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(DeploymentError, match="no Kubernetes credentials"):
        KubernetesBackend("bc", namespace="ml").canary_ready()


def test_an_api_that_cannot_be_reached_is_a_deployment_error(serverless: FakeApi, monkeypatch):
    from urllib3.exceptions import MaxRetryError

    def unreachable(*args: Any, **kwargs: Any) -> dict:
        raise MaxRetryError(None, "/apis/serving.kserve.io", "connection refused")

    monkeypatch.setattr(serverless, "get_namespaced_custom_object", unreachable)
    with pytest.raises(DeploymentError, match="get: the Kubernetes API cannot be reached"):
        KubernetesBackend("bc", namespace="ml", api=serverless).canary_ready()
