"""The Kubernetes side of serving: applying an InferenceService through the API and reading its state.

``apply_to_cluster`` is what ``deploy_model`` calls; the rollout's Kubernetes backend uses the
same client, group and readiness rule.
"""

from __future__ import annotations

import time
from typing import Any

from shipyard.errors import DeploymentError

KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


def custom_objects_api() -> Any:  # pragma: no cover - needs a kubeconfig or in-cluster credentials
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def is_ready(isvc: dict[str, Any]) -> bool:
    """True when the InferenceService's ``Ready`` condition is ``True``."""
    conditions = isvc.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def apply_to_cluster(isvc: dict[str, Any], timeout_s: float, api: Any = None, poll_s: float = 5.0) -> dict[str, Any]:
    """Creates the InferenceService, or merge-patches an existing one, and waits until it is ready.

    Patching an existing service makes KServe start a new revision that receives
    ``canaryTrafficPercent`` of the traffic; a new service gets all of it.

    Args:
        isvc: The rendered InferenceService.
        timeout_s: How long to wait for ``Ready``.
        api: A ``kubernetes.client.CustomObjectsApi`` (default: from the in-cluster or local kubeconfig).
        poll_s: Seconds between readiness polls.

    Returns:
        ``{"action": "created"|"patched", "url": ...}``.

    Raises:
        DeploymentError: The API refused the request, or the service was not ready in time.
    """
    from kubernetes.client.exceptions import ApiException

    api = api or custom_objects_api()
    name, namespace = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
    where = f"InferenceService {namespace}/{name}"
    args = (KSERVE_GROUP, KSERVE_VERSION, namespace, ISVC_PLURAL)
    try:
        try:
            api.get_namespaced_custom_object(*args, name)
            exists = True
        except ApiException as exc:
            if exc.status != 404:
                raise
            exists = False
        if exists:
            api.patch_namespaced_custom_object(*args, name, isvc)
        else:
            api.create_namespaced_custom_object(*args, isvc)
        deadline = time.monotonic() + timeout_s
        while True:
            current = api.get_namespaced_custom_object(*args, name)
            if is_ready(current):
                return {"action": "patched" if exists else "created", "url": current["status"].get("url", "")}
            if time.monotonic() >= deadline:
                conditions = current.get("status", {}).get("conditions", [])
                raise DeploymentError(f"{where} not ready after {timeout_s:g}s; conditions: {conditions}")
            time.sleep(poll_s)
    except ApiException as exc:
        raise DeploymentError(f"{where}: Kubernetes API answered {exc.status} {exc.reason}: {exc.body}") from exc
