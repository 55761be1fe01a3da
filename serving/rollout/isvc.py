"""Rendering KServe resources with the kserve SDK's model classes.

``render_inference_service`` builds a ``serving.kserve.io/v1beta1`` InferenceService whose
predictor runs the Shipyard ServingRuntime for the model's format, with
``canaryTrafficPercent`` set so an update of an existing service becomes a canary.
``render_serving_runtime`` builds the ClusterServingRuntime that runs ``shipyard serve``.
"""

from __future__ import annotations

import re
from typing import Any

from shipyard import images
from shipyard.errors import ConfigError
from shipyard.formats import FORMATS

RUNTIME_NAME = "shipyard"
#: The formats the serving image serves (the ``tf`` extra is not in it), from :data:`shipyard.formats.FORMATS`.
SERVED_FORMATS = tuple(f.name for f in FORMATS.values() if f.in_image)
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def model_format_name(fmt: str) -> str:
    """The KServe modelFormat name for a Shipyard model format (``shipyard-onnx``...)."""
    return FORMATS[fmt].kserve_name


def _sanitize(obj: Any) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def render_inference_service(
    name: str,
    storage_uri: str,
    model_format: str,
    namespace: str = "default",
    canary_traffic_percent: int | None = 10,
    resources: dict[str, dict[str, str]] | None = None,
    service_account: str = "",
    min_replicas: int = 1,
    max_replicas: int = 3,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Renders an InferenceService as a plain dict (ready for YAML or the Kubernetes API).

    Args:
        name: Service name; a DNS-1035 label (lowercase letters, digits, '-').
        storage_uri: Where the Model artifact lives (``gs://``, ``s3://``, ``pvc://``).
        model_format: The artifact's format from ``model.json``.
        namespace: Kubernetes namespace.
        canary_traffic_percent: Traffic share for the newest revision (0–100); None omits it.
        resources: ``{"requests": {...}, "limits": {...}}`` for the predictor container.
        service_account: Service account with read access to ``storage_uri``.
        min_replicas: Minimum predictor replicas.
        max_replicas: Maximum predictor replicas.
        labels: Extra metadata labels.
        annotations: Extra metadata annotations (e.g. deployment mode).

    Raises:
        ConfigError: Bad name, format, percentage or replica bounds.
    """
    from kserve import (
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
        constants,
    )
    from kubernetes.client import V1ObjectMeta, V1ResourceRequirements

    if not DNS_LABEL.match(name):
        raise ConfigError(
            f"deploy: service name {name!r} must be a DNS-1035 label "
            "(lowercase letters, digits, '-', starting with a letter)"
        )
    if model_format not in SERVED_FORMATS:
        raise ConfigError(f"deploy: model format {model_format!r} cannot be served; expected one of {SERVED_FORMATS}")
    if canary_traffic_percent is not None and not 0 <= canary_traffic_percent <= 100:
        raise ConfigError(f"deploy: canary_traffic_percent must be in 0..100, got {canary_traffic_percent}")
    if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
        raise ConfigError(
            f"deploy: need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got {min_replicas}, {max_replicas}"
        )
    if not storage_uri:
        raise ConfigError("deploy: storage_uri is empty; the model artifact must live where the cluster can read it")
    resources = resources or {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    predictor = V1beta1PredictorSpec(
        model=V1beta1ModelSpec(
            name="kserve-container",
            model_format=V1beta1ModelFormat(name=model_format_name(model_format)),
            runtime=RUNTIME_NAME,
            storage_uri=storage_uri,
            protocol_version="v2",
            resources=V1ResourceRequirements(requests=resources.get("requests"), limits=resources.get("limits")),
        ),
        canary_traffic_percent=canary_traffic_percent,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        service_account_name=service_account or None,
    )
    isvc = V1beta1InferenceService(
        api_version=f"{constants.KSERVE_GROUP}/{constants.KSERVE_V1BETA1_VERSION}",
        kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels={"app.kubernetes.io/managed-by": "shipyard", **(labels or {})},
            annotations=annotations or None,
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )
    return _sanitize(isvc)


def render_serving_runtime(image: str | None = None) -> dict[str, Any]:
    """Renders the ClusterServingRuntime that serves every Shipyard model format."""
    from kserve import (
        V1alpha1ClusterServingRuntime,
        V1alpha1ServingRuntimeSpec,
        V1alpha1SupportedModelFormat,
        constants,
    )
    from kubernetes.client import V1Container, V1ContainerPort, V1EnvVar, V1ObjectMeta, V1ResourceRequirements

    container = V1Container(
        name="kserve-container",
        image=image or images.SERVING_IMAGE,
        command=["shipyard"],
        args=["serve", "/mnt/models", "--name", "{{.Name}}", "--host", "0.0.0.0", "--port", "8080"],
        ports=[V1ContainerPort(container_port=8080, protocol="TCP")],
        # On SIGTERM: readiness 503 for 5 s (endpoints stop routing here), then 20 s for requests in
        # flight: inside the pod's default 30 s termination grace period.
        env=[
            V1EnvVar(name="SHIPYARD_SERVE_SHUTDOWN_DELAY_S", value="5"),
            V1EnvVar(name="SHIPYARD_SERVE_GRACE_PERIOD_S", value="20"),
        ],
        resources=V1ResourceRequirements(
            requests={"cpu": "100m", "memory": "512Mi"}, limits={"cpu": "1", "memory": "1Gi"}
        ),
    )
    runtime = V1alpha1ClusterServingRuntime(
        api_version=f"{constants.KSERVE_GROUP}/{constants.KSERVE_V1ALPHA1_VERSION}",
        kind="ClusterServingRuntime",
        metadata=V1ObjectMeta(name=RUNTIME_NAME, labels={"app.kubernetes.io/managed-by": "shipyard"}),
        spec=V1alpha1ServingRuntimeSpec(
            supported_model_formats=[
                V1alpha1SupportedModelFormat(name=model_format_name(f), version="1", auto_select=True)
                for f in SERVED_FORMATS
            ],
            protocol_versions=["v1", "v2"],
            containers=[container],
        ),
    )
    return _sanitize(runtime)
