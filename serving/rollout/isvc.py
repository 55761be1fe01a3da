"""Rendering KServe resources with the kserve SDK's model classes.

``render_inference_service`` builds a ``serving.kserve.io/v1beta1`` InferenceService whose
predictor runs the Shipyard ServingRuntime for the model's format: Serverless (Knative, where an
update of an existing service becomes a canary revision receiving ``canaryTrafficPercent``) or
RawDeployment (plain Deployments, whose canaries are entries of ``spec.canary``, KServe 0.20+,
built by ``render_raw_canary``). ``render_serving_runtime`` builds the ClusterServingRuntime that
runs ``shipyard serve``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard import images
from shipyard.errors import ConfigError
from shipyard.formats import FORMATS

RUNTIME_NAME = "shipyard"
#: The formats the serving image serves (the ``tf`` extra is not in it), from :data:`shipyard.formats.FORMATS`.
SERVED_FORMATS = tuple(f.name for f in FORMATS.values() if f.in_image)
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
SERVERLESS, RAW = "Serverless", "RawDeployment"
#: ``deployment_mode`` values: KServe's two modes (``Standard`` is KServe 0.15+'s name for RawDeployment).
DEPLOYMENT_MODES = (SERVERLESS, RAW, "Standard")
#: Autoscaling metrics per mode: Knative's KPA scales on concurrency or rps, the HPA of a
#: RawDeployment on cpu or memory (the CRD's enum holds all four; KServe's webhook rejects the rest).
SCALE_METRICS = {SERVERLESS: ("concurrency", "rps"), RAW: ("cpu", "memory")}
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
#: The predictor container's security context (``security_context=True``): the restricted Pod
#: Security Standard. The serving image runs as UID 1000 (docker/*.Dockerfile), so runAsNonRoot holds.
RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: Predictor fields a RawDeployment canary may not carry (KServe derives its replicas from the stable's).
AUTOSCALING_FIELDS = ("minReplicas", "maxReplicas", "scaleMetric", "scaleMetricType", "scaleTarget", "autoScaling")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}


def model_format_name(fmt: str) -> str:
    """The KServe modelFormat name for a Shipyard model format (``shipyard-onnx``...)."""
    return FORMATS[fmt].kserve_name


def _sanitize(obj: Any) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


def canonical_mode(mode: str) -> str:
    """``Serverless`` or ``RawDeployment`` for a ``deployment_mode`` value (``Standard`` is RawDeployment).

    Raises:
        ConfigError: Not one of :data:`DEPLOYMENT_MODES`.
    """
    if mode not in DEPLOYMENT_MODES:
        raise ConfigError(f"deploy: deployment_mode {mode!r} is not one of {DEPLOYMENT_MODES}")
    return SERVERLESS if mode == SERVERLESS else RAW


def is_raw(isvc: Mapping[str, Any]) -> bool:
    """Whether an InferenceService's deploymentMode annotation says RawDeployment (or ``Standard``)."""
    mode = (isvc.get("metadata", {}).get("annotations") or {}).get(DEPLOYMENT_MODE_ANNOTATION, "")
    return mode in (RAW, "Standard")


def _check_resources(resources: Mapping[str, Any], gpus: int) -> dict[str, dict[str, str]]:
    unknown = set(resources) - {"requests", "limits"}
    if unknown:
        raise ConfigError(f"deploy: resources has keys {sorted(unknown)}; expected 'requests' and/or 'limits'")
    out: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        values = resources.get(part) or {}
        if not isinstance(values, Mapping) or not all(isinstance(v, str | int) for v in values.values()):
            raise ConfigError(f"deploy: resources.{part} must map resource names to quantities, got {values!r}")
        out[part] = {str(k): str(v) for k, v in values.items()}
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        raise ConfigError(f"deploy: gpus must be a whole number >= 0, got {gpus!r}")
    if gpus:
        for part in ("requests", "limits"):  # an extended resource: requests must equal limits
            given = out[part].get(GPU_RESOURCE)
            if given is not None and given != str(gpus):
                raise ConfigError(f"deploy: resources.{part}[{GPU_RESOURCE!r}] = {given} contradicts gpus={gpus}")
            out[part][GPU_RESOURCE] = str(gpus)
    return {part: values for part, values in out.items() if values}


def _check_tolerations(tolerations: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, toleration in enumerate(tolerations):
        if not isinstance(toleration, Mapping) or not set(toleration) <= _TOLERATION_KEYS:
            raise ConfigError(
                f"deploy: tolerations[{i}] = {toleration!r}; expected a mapping of {sorted(_TOLERATION_KEYS)}"
            )
        if toleration.get("operator", "Equal") not in ("Equal", "Exists"):
            raise ConfigError(f"deploy: tolerations[{i}].operator must be 'Equal' or 'Exists'")
        if toleration.get("effect", "") not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ConfigError(f"deploy: tolerations[{i}].effect must be NoSchedule, PreferNoSchedule or NoExecute")
        out.append(dict(toleration))
    return out


def _check_scaling(mode: str, metric: str | None, target: int | None, min_replicas: int, max_replicas: int) -> None:
    if not 0 <= min_replicas <= max_replicas or max_replicas < 1:
        raise ConfigError(
            f"deploy: need 0 <= min_replicas <= max_replicas and max_replicas >= 1, got {min_replicas}, {max_replicas}"
        )
    if mode == RAW and min_replicas < 1:
        raise ConfigError("deploy: min_replicas must be >= 1 for RawDeployment (its HPA cannot scale to zero)")
    if metric is not None and metric not in SCALE_METRICS[mode]:
        raise ConfigError(f"deploy: scale_metric {metric!r} is not one of {SCALE_METRICS[mode]} for {mode}")
    if target is not None:
        if not isinstance(target, int) or isinstance(target, bool) or target < 1:
            raise ConfigError(f"deploy: scale_target must be a whole number >= 1, got {target!r}")
        if metric in ("cpu", "memory") and target > 100:
            raise ConfigError(f"deploy: scale_target is a utilization percentage for {metric}: 1..100, got {target}")


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
    *,
    deployment_mode: str | None = None,
    gpus: int = 0,
    image: str = "",
    scale_metric: str | None = None,
    scale_target: int | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    node_selector: Mapping[str, str] | None = None,
    security_context: bool | Mapping[str, Any] = True,
) -> dict[str, Any]:
    """Renders an InferenceService as a plain dict (ready for YAML or the Kubernetes API).

    Args:
        name: Service name; a DNS-1035 label (lowercase letters, digits, '-').
        storage_uri: Where the Model artifact lives (``gs://``, ``s3://``, ``pvc://``).
        model_format: The artifact's format from ``model.json``.
        namespace: Kubernetes namespace.
        canary_traffic_percent: Serverless: traffic share for the newest revision (0–100); None omits
            it. RawDeployment has no such field (its canaries are ``spec.canary`` entries): pass None.
        resources: ``{"requests": {...}, "limits": {...}}`` for the predictor container (default
            100m/512Mi requested, 1 CPU/1Gi limit).
        service_account: Service account whose secrets hold the storage credentials for ``storage_uri``.
        min_replicas: Minimum predictor replicas (0 scales to zero, Serverless only).
        max_replicas: Maximum predictor replicas.
        labels: Extra metadata labels.
        annotations: Extra metadata annotations.
        deployment_mode: ``Serverless`` | ``RawDeployment`` (or ``Standard``): written as the
            ``serving.kserve.io/deploymentMode`` annotation; None leaves it to the cluster's default
            (Serverless on a stock KServe) and to ``annotations``.
        gpus: ``nvidia.com/gpu`` in the container's requests and limits (0: none); the GPU serving
            image is used unless ``image`` says otherwise.
        image: Overrides the ServingRuntime's container image ("" keeps it).
        scale_metric: ``concurrency`` | ``rps`` (Serverless) or ``cpu`` | ``memory`` (RawDeployment).
        scale_target: The autoscaler's target per replica (a utilization percentage for cpu/memory).
        tolerations: Pod tolerations (``[{key, operator, value, effect}]``).
        node_selector: Pod node selector labels.
        security_context: True: the restricted container security context
            (:data:`RESTRICTED_SECURITY_CONTEXT`); False: none; a mapping: that context.

    Returns:
        The InferenceService as a dict that validates against the CRD schema.

    Raises:
        ConfigError: A bad name, format, percentage, mode, replica bounds, scale metric or target,
            resource, GPU count, toleration or node selector (the message names the field).
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
    if not storage_uri:
        raise ConfigError("deploy: storage_uri is empty; the model artifact must live where the cluster can read it")
    annotations = dict(annotations or {})
    mode = SERVERLESS
    if deployment_mode is not None:
        mode = canonical_mode(deployment_mode)
        given = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
        if given is not None and given != deployment_mode:
            raise ConfigError(
                f"deploy: deployment_mode {deployment_mode!r} contradicts annotation "
                f"{DEPLOYMENT_MODE_ANNOTATION}={given!r}"
            )
        annotations[DEPLOYMENT_MODE_ANNOTATION] = deployment_mode
    elif annotations.get(DEPLOYMENT_MODE_ANNOTATION) in (RAW, "Standard"):
        mode = RAW
    if canary_traffic_percent is not None:
        if not 0 <= canary_traffic_percent <= 100:
            raise ConfigError(f"deploy: canary_traffic_percent must be in 0..100, got {canary_traffic_percent}")
        if mode == RAW:
            raise ConfigError(
                "deploy: canary_traffic_percent is Serverless only; a RawDeployment canary is a spec.canary "
                "entry (render_raw_canary): pass canary_traffic_percent=None"
            )
    _check_scaling(mode, scale_metric, scale_target, min_replicas, max_replicas)
    requirements = _check_resources(DEFAULT_RESOURCES if resources is None else resources, gpus)
    tolerations = _check_tolerations(tolerations or ())
    node_selector = dict(node_selector or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in node_selector.items()):
        raise ConfigError(f"deploy: node_selector must map label names to string values, got {node_selector!r}")
    if service_account and not DNS_LABEL.match(service_account.replace(".", "-")):
        raise ConfigError(f"deploy: service_account {service_account!r} is not a valid service account name")
    if security_context is True:
        context: dict[str, Any] | None = copy.deepcopy(RESTRICTED_SECURITY_CONTEXT)
    elif security_context is False:
        context = None
    elif isinstance(security_context, Mapping):
        context = dict(security_context)
    else:
        raise ConfigError(f"deploy: security_context must be true, false or a mapping, got {security_context!r}")
    predictor = V1beta1PredictorSpec(
        model=V1beta1ModelSpec(
            model_format=V1beta1ModelFormat(name=model_format_name(model_format)),
            runtime=RUNTIME_NAME,
            storage_uri=storage_uri,
            protocol_version="v2",
            image=image or (images.GPU_IMAGE if gpus else None),
            resources=V1ResourceRequirements(requests=requirements.get("requests"), limits=requirements.get("limits")),
        ),
        canary_traffic_percent=canary_traffic_percent,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_metric=scale_metric,
        scale_target=scale_target,
        service_account_name=service_account or None,
        tolerations=tolerations or None,
        node_selector=node_selector or None,
    )
    isvc = _sanitize(
        V1beta1InferenceService(
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
    )
    model = isvc["spec"]["predictor"]["model"]
    if not model.get("name"):  # the SDK defaults it to ""; KServe's webhook rejects a named standard predictor model
        model.pop("name", None)
    if context is not None:  # a plain dict: the SDK's V1SecurityContext would be sanitized the same way
        model["securityContext"] = context
    return isvc


def predictor_deployment(isvc_name: str, predictor_name: str = "") -> str:
    """The Deployment (and Service) name KServe gives a RawDeployment predictor or canary.

    ``{isvc}-predictor`` for an unnamed predictor, ``{isvc}-{name}-predictor`` for a named one
    (every canary is named; a promoted canary keeps its name).
    """
    return f"{isvc_name}-{predictor_name}-predictor" if predictor_name else f"{isvc_name}-predictor"


def render_raw_canary(
    stable_isvc: Mapping[str, Any],
    canary_storage_uri: str,
    model_format: str,
    traffic_percent: int = 0,
    *,
    name: str = "",
    resources: dict[str, dict[str, str]] | None = None,
    gpus: int | None = None,
) -> dict[str, Any]:
    """Builds the ``spec.canary`` entry that runs a new model beside a RawDeployment's stable predictor.

    The canary's predictor is the stable one (runtime, protocol, resources, security context,
    service account, tolerations, node selector) with the new model, under its own name (KServe
    names its Deployment ``{isvc}-{name}-predictor``) and without autoscaling fields (KServe
    derives a canary's replicas from the stable's and the traffic share).

    Args:
        stable_isvc: The InferenceService as rendered or read from the cluster (RawDeployment).
        canary_storage_uri: Where the canary's Model artifact lives.
        model_format: The canary artifact's format.
        traffic_percent: The canary's traffic share (0..100).
        name: The canary predictor's name, a DNS-1035 label other than the stable predictor's
            (default ``canary``, or ``canary-2`` when the stable predictor is ``canary``: a promoted
            canary keeps its name, so successive rollouts alternate).
        resources: Container resources (default: the stable's).
        gpus: ``nvidia.com/gpu`` count (default: the stable's resources as they are).

    Returns:
        ``{"predictor": {...}, "trafficPercent": N}``; plain dicts (the CRD's ``spec.canary`` item).

    Raises:
        ConfigError: The service is not RawDeployment, or a bad name, format, URI or percentage.
    """
    meta = stable_isvc.get("metadata", {})
    where = f"InferenceService {meta.get('namespace', '')}/{meta.get('name', '')}"
    if not is_raw(stable_isvc):
        raise ConfigError(
            f"rollout: {where} is not RawDeployment ({DEPLOYMENT_MODE_ANNOTATION} is "
            f"{(meta.get('annotations') or {}).get(DEPLOYMENT_MODE_ANNOTATION)!r}); spec.canary needs it"
        )
    if model_format not in SERVED_FORMATS:
        raise ConfigError(f"rollout: model format {model_format!r} cannot be served; expected one of {SERVED_FORMATS}")
    if not canary_storage_uri:
        raise ConfigError("rollout: canary_storage_uri is empty")
    if isinstance(traffic_percent, bool) or not isinstance(traffic_percent, int) or not 0 <= traffic_percent <= 100:
        raise ConfigError(f"rollout: traffic_percent must be a whole number in 0..100, got {traffic_percent!r}")
    stable = stable_isvc["spec"]["predictor"]
    stable_name = stable.get("name", "")
    name = name or ("canary-2" if stable_name == "canary" else "canary")
    if not DNS_LABEL.match(name) or name == stable_name:
        raise ConfigError(
            f"rollout: canary name {name!r} must be a DNS-1035 label other than the stable predictor's "
            f"({stable_name!r})"
        )
    dropped = (*AUTOSCALING_FIELDS, "canaryTrafficPercent")
    predictor = {k: copy.deepcopy(v) for k, v in stable.items() if k not in dropped}
    model = dict(predictor.get("model") or {})
    model["modelFormat"] = {"name": model_format_name(model_format)}
    model["storageUri"] = canary_storage_uri
    model.setdefault("runtime", RUNTIME_NAME)
    # The CRD requires a (container) name in a canary's model, KServe's webhook rejects a non-empty
    # one in a standard predictor (which the canary becomes on promotion): "" satisfies both.
    model.setdefault("name", "")
    if resources is not None or gpus is not None:
        base = resources if resources is not None else model.get("resources") or {}
        model["resources"] = _check_resources(base, gpus or 0)
    predictor["model"] = model
    predictor["name"] = name
    return {"predictor": predictor, "trafficPercent": traffic_percent}


def with_raw_canary(isvc: Mapping[str, Any], canary: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``isvc`` with ``canary`` (from :func:`render_raw_canary`) as its only ``spec.canary`` entry."""
    out = copy.deepcopy(dict(isvc))
    out["spec"]["canary"] = [copy.deepcopy(dict(canary))]
    return out


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


def example_manifests() -> dict[str, dict[str, Any]]:
    """The generated examples (``shipyard manifests``), by file name: the ServingRuntime and InferenceServices.

    ``inferenceservice-serverless.yaml`` (Knative, an update becomes a 10% canary revision),
    ``inferenceservice-raw.yaml`` (plain Deployments, HPA on CPU), ``inferenceservice-raw-canary.yaml``
    (the same with a ``spec.canary`` entry at 10%, as ``KubernetesBackend`` writes it), and
    ``inferenceservice-gpu.yaml`` (one ``nvidia.com/gpu``, its toleration and node selector).
    """
    common = {"namespace": "models", "service_account": "model-reader", "labels": {"shipyard.io/model": "bc"}}
    raw = render_inference_service(
        "bc",
        "s3://models/bc/1",
        "onnx",
        canary_traffic_percent=None,
        deployment_mode=RAW,
        min_replicas=2,
        max_replicas=6,
        scale_metric="cpu",
        scale_target=70,
        **common,  # type: ignore[arg-type]
    )
    return {
        "cluster-serving-runtime.yaml": render_serving_runtime(),
        "inferenceservice-serverless.yaml": render_inference_service(
            "bc",
            "s3://models/bc/1",
            "onnx",
            deployment_mode=SERVERLESS,
            scale_metric="concurrency",
            scale_target=8,
            **common,  # type: ignore[arg-type]
        ),
        "inferenceservice-raw.yaml": raw,
        "inferenceservice-raw-canary.yaml": with_raw_canary(
            raw, render_raw_canary(raw, "s3://models/bc/2", "onnx", 10)
        ),
        "inferenceservice-gpu.yaml": render_inference_service(
            "bc-gpu",
            "s3://models/bc/1",
            "torchscript",
            canary_traffic_percent=None,
            deployment_mode=RAW,
            gpus=1,
            resources={"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}},
            tolerations=[{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
            node_selector={"nvidia.com/gpu.present": "true"},
            **common,  # type: ignore[arg-type]
        ),
    }
