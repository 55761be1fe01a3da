"""Deploying a blessed model: render the InferenceService, then apply it or smoke-test it locally.

Targets:

- ``kubernetes``: apply the rendered InferenceService through the Kubernetes API (create, or
  patch an existing one so the new revision takes ``canaryTrafficPercent`` of the traffic) and
  wait for it to be ready.
- ``local``: start ``shipyard serve`` on 127.0.0.1, send one V1 and one V2 request built from
  raw test rows (strings, nulls and all), check the answers equal the artifact's own predictions
  on the same rows (its fitted preprocessing, as evaluation applies it), and stop the server.
- ``render``: only write the YAML.

Whatever the target, :func:`deploy` first checks the blessing itself (TFX's rule: a pusher reads
the blessing, it does not trust its wiring): the evaluation must say ``blessed`` and be of this
very model (its ``model_sha256`` is the artifact's weights digest), else :class:`NotBlessedError`
names the failed checks and nothing is written.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving.formats import WEIGHTS_FILE
from serving.rollout.isvc import render_inference_service
from serving.rollout.kubernetes import apply_to_cluster
from serving.rollout.processes import LocalServer, http_json
from shipyard import attempts, names
from shipyard.artifacts import ModelManifest, read_dataset, read_json, read_model_manifest, write_json, write_text
from shipyard.config import Config, require
from shipyard.errors import DeploymentError, NotBlessedError

ISVC_FILE = "inferenceservice.yaml"
RESULT_FILE = "result.json"


@dataclasses.dataclass(frozen=True)
class DeployConfig(Config):
    """Where and how to deploy.

    Attributes:
        target: ``kubernetes``, ``local`` or ``render``.
        service_name: InferenceService name; empty derives it from the model name.
        namespace: Kubernetes namespace.
        canary_traffic_percent: Share of traffic for the new revision when the service exists.
        service_account: Service account that can read the model's storage.
        min_replicas: Minimum predictor replicas.
        max_replicas: Maximum predictor replicas.
        ready_timeout_s: How long to wait for readiness.
        smoke_rows: Test rows sent in the smoke requests.
        deployment_mode: ``Serverless`` or ``RawDeployment`` (the annotation); empty leaves the
            cluster's default. RawDeployment canaries are ``spec.canary`` entries made by roll_out,
            so ``canary_traffic_percent`` is not rendered there.
        raw_canary: RawDeployment only: leave an existing service as it is, so that roll_out adds
            the new model as its ``spec.canary`` entry and moves traffic by the policy (false:
            patch the predictor in place, the new model taking all the traffic at once).
        resources: ``{"requests": {...}, "limits": {...}}`` of the predictor container.
        gpus: ``nvidia.com/gpu`` requested and limited (0: none).
        scale_metric: ``concurrency`` or ``rps`` (Serverless), ``cpu`` or ``memory`` (RawDeployment).
        scale_target: The autoscaler's target for that metric.
        tolerations: Pod tolerations (Kubernetes' form).
        node_selector: Pod node selector.
        security_context: The predictor's non-root security context (off: false).
    """

    section = "deploy"
    target: str = "kubernetes"
    service_name: str = ""
    namespace: str = "default"
    canary_traffic_percent: int = 10
    service_account: str = ""
    min_replicas: int = 1
    max_replicas: int = 3
    ready_timeout_s: float = 120.0
    smoke_rows: int = 5
    deployment_mode: str = ""
    raw_canary: bool = True
    resources: dict = dataclasses.field(default_factory=dict)
    gpus: int = 0
    scale_metric: str = ""
    scale_target: int = 0
    tolerations: list = dataclasses.field(default_factory=list)
    node_selector: dict = dataclasses.field(default_factory=dict)
    security_context: bool = True

    def validate(self) -> None:
        require(
            self.target in ("kubernetes", "local", "render"), self.section, "target must be kubernetes, local or render"
        )
        require(0 <= self.canary_traffic_percent <= 100, self.section, "canary_traffic_percent must be in 0..100")
        require(
            self.ready_timeout_s > 0 and self.smoke_rows >= 1,
            self.section,
            "ready_timeout_s and smoke_rows must be positive",
        )


def kserve_storage_uri(uri: str) -> str:
    """The artifact URI as KServe's storage initializer reads it.

    KFP's default artifact store is MinIO (``minio://bucket/key``), which KServe reads through its
    S3 support (``s3://bucket/key``, with the endpoint and credentials on the service account).
    ``gs://``, ``s3://``, ``pvc://``, ``hdfs://``, ``https://`` and local paths pass unchanged.
    """
    return "s3://" + uri[len("minio://") :] if uri.startswith("minio://") else uri


def service_name_for(model_name: str) -> str:
    """A DNS-1035 label derived from a model name (``Breast_Cancer`` → ``breast-cancer``); see :mod:`shipyard.names`."""
    return names.service_name(model_name)


def json_value(value: Any) -> Any:
    """One raw cell as JSON holds it: NaN, NaT and pandas' NA become None, numpy scalars Python values."""
    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def raw_records(df: Any, features: Sequence[str]) -> list[dict[str, Any]]:
    """V1 records of raw rows: ``{feature: value}`` in the model's feature order, strings as they
    are, nulls as None (``null``), numbers and booleans as Python values."""
    columns = {f: [json_value(v) for v in df[f].tolist()] for f in features}
    return [{f: columns[f][i] for f in features} for i in range(len(df))]


def v2_datatype(feature: Any) -> str:
    """The V2 datatype of a raw feature (a :class:`serving.preprocess.FeaturePrep`) where the server's
    metadata names none: categorical strings are BYTES, booleans BOOL, integer categories INT64,
    numbers FP64."""
    if feature.kind == "categorical":
        return "BOOL" if feature.is_bool else "INT64" if feature.is_integer else "BYTES"
    return "FP64"


def smoke_requests(
    model: Any, sample: Any, metadata: Any = None, where: str = "smoke rows"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The V1 and V2 bodies for raw rows ``sample`` (a DataFrame) of ``model`` (a LoadedModel).

    V1: ``instances`` as records of the raw values (:func:`raw_records`). V2: an all-numeric model
    without nulls (identity preprocessing) gets one ``FP32`` tensor ``[rows, features]``, as
    always; any other model one tensor per feature holding the same raw values as the records,
    typed as the server's V2 metadata (``metadata["inputs"]``) says, else by :func:`v2_datatype`.

    Raises:
        DataValidationError: A feature is missing from ``sample``, or of a type or with nulls the
            model does not take (checked by the model's own preprocessing).
    """
    features = model.manifest.feature_names
    x = model.encode_frame(sample, where).x  # checks the raw rows as the server will
    records = raw_records(sample, features)
    v1 = {"instances": records}
    if model.preprocessing.identity:
        inputs = [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    else:
        advertised = {}
        if isinstance(metadata, dict) and isinstance(metadata.get("inputs"), list):
            advertised = {i.get("name"): i.get("datatype") for i in metadata["inputs"] if isinstance(i, dict)}
        inputs = [
            {
                "name": f.name,
                "shape": [len(records)],
                "datatype": advertised.get(f.name) or v2_datatype(f),
                "data": [r[f.name] for r in records],
            }
            for f in model.preprocessing.features
        ]
    return v1, {"id": "shipyard-smoke", "inputs": inputs}


def smoke_test(url: str, name: str, model_dir: str, test_dir: str, rows: int) -> dict[str, Any]:
    """Sends one V1 and one V2 request of raw test rows and checks both against the artifact's own
    predictions on the same rows (:meth:`serving.formats.LoadedModel.score_frame`: the model's
    fitted preprocessing, as evaluation scores them).

    Raises:
        DataValidationError: The test rows lack a feature, or have values the model does not take.
        DeploymentError: A request fails or an answer differs from the local prediction.
    """
    from serving.formats import load_model

    model = load_model(model_dir)
    df, _ = read_dataset(test_dir)
    sample = df.head(rows).reset_index(drop=True)
    expected = model.score_frame(sample, str(test_dir))
    metadata = None
    if not model.preprocessing.identity:
        status, metadata = http_json("GET", f"{url}/v2/models/{name}")
        if status != 200:
            raise DeploymentError(f"V2 metadata request returned HTTP {status}: {metadata}")
    v1_body, v2_body = smoke_requests(model, sample, metadata, str(test_dir))

    t0 = time.perf_counter()
    status, v1 = http_json("POST", f"{url}/v1/models/{name}:predict", v1_body)
    v1_ms = (time.perf_counter() - t0) * 1e3
    if status != 200:
        raise DeploymentError(f"V1 smoke request returned HTTP {status}: {v1}")
    t0 = time.perf_counter()
    status, v2 = http_json("POST", f"{url}/v2/models/{name}/infer", v2_body)
    v2_ms = (time.perf_counter() - t0) * 1e3
    if status != 200:
        raise DeploymentError(f"V2 smoke request returned HTTP {status}: {v2}")
    outputs = {o["name"]: o for o in v2["outputs"]}
    if model.is_classifier:
        want: list[Any] = model.labels(expected)
        got_v1, got_v2 = v1["predictions"], outputs["label"]["data"]
        probs = np.asarray(outputs["probabilities"]["data"], dtype=np.float64).reshape(expected.shape)
        agree = got_v1 == want and got_v2 == want and np.allclose(probs, expected, atol=1e-4)
    else:
        want = expected.tolist()
        got_v1, got_v2 = v1["predictions"], outputs["prediction"]["data"]
        agree = all(np.allclose(got, want, rtol=1e-4, atol=1e-4) for got in (got_v1, got_v2))
    if not agree:
        raise DeploymentError(
            f"served predictions differ from the artifact's: expected {want}, V1 {got_v1}, V2 {got_v2}"
        )
    return {
        "rows": len(sample),
        "v1": "passed",
        "v2": "passed",
        "v2_inputs": "matrix" if model.preprocessing.identity else "per-feature",
        "v1_ms": round(v1_ms, 1),
        "v2_ms": round(v2_ms, 1),
    }


def check_blessing(evaluation: Any, manifest: ModelManifest, where: str) -> str:
    """The deploy-time blessing check (pure): the evaluation blesses this very model.

    Args:
        evaluation: evaluation.json's content (:func:`components.evaluate_model.core.evaluate`).
        manifest: The model to deploy.
        where: The evaluation's path, for messages.

    Returns:
        A sentence for the report: ``blessed`` or ``force-blessed: <reason>``.

    Raises:
        NotBlessedError: The evaluation is not one, did not bless the model (the message names its
            failed gating checks), or is of another model (another weights digest).
    """
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("blessed"), bool):
        raise NotBlessedError(
            f"{where}: not an evaluation (no boolean 'blessed'); a model is deployed only when blessed"
        )
    failed = [
        f"{c.get('check')} (value {c.get('value')}, threshold {c.get('threshold')})"
        for c in evaluation.get("checks", [])
        if isinstance(c, dict) and c.get("gating", True) and not c.get("passed")
    ]
    if not evaluation["blessed"]:
        raise NotBlessedError(
            f"{where}: the model is not blessed; failed check(s): {'; '.join(failed) or 'none recorded'}"
        )
    forced = evaluation.get("forced")
    reason = forced.get("reason") if isinstance(forced, dict) else None
    if failed and not reason:  # the verdict is recomputed, not taken on trust
        raise NotBlessedError(
            f"{where}: says blessed, yet gating check(s) failed and no force-bless reason is recorded: "
            f"{'; '.join(failed)}"
        )
    digest = manifest.files.get(WEIGHTS_FILE.get(manifest.format, ""))
    evaluated = evaluation.get("model_sha256")
    if not evaluated or evaluated != digest:
        raise NotBlessedError(
            f"{where}: the evaluation is of another model (model_sha256 {evaluated!r}); the model to deploy has "
            f"weights sha256 {digest!r}"
        )
    return f"force-blessed: {reason}" if reason else "blessed"


@attempts.step
def deploy(
    model_dir: str,
    storage_uri: str,
    test_dir: str,
    model_name: str,
    output_dir: str,
    report_md: str,
    config: DeployConfig,
    source: str = "",
    *,
    evaluation_json: str,
) -> dict[str, Any]:
    """Checks the blessing, renders the InferenceService and deploys to the configured target.

    Args:
        model_dir: The Model artifact (local path).
        storage_uri: Where the cluster reads the artifact (the KFP artifact URI).
        test_dir: Test Dataset artifact for the smoke requests.
        model_name: Registered model name (the service name derives from it); empty derives it
            from ``source`` (:func:`shipyard.names.resolve_model_name`).
        output_dir: The deployment artifact directory: ``inferenceservice.yaml`` (rendered),
            ``result.json`` and, for local targets, ``server.log``.
        report_md: Markdown report path.
        config: Target and service options.
        source: The run's data source, from which an empty ``model_name`` derives.
        evaluation_json: The model's evaluation.json (:func:`check_blessing`).

    Returns:
        ``{"target", "service", "endpoint", "smoke", "action", "blessing"}`` (also written to ``result.json``).

    Raises:
        NotBlessedError: The evaluation did not bless this model (:func:`check_blessing`).
        ConfigError: ``model_name`` is not a URL path segment, or empty without a ``source``.
        DeploymentError: The server did not start, was not ready or answered wrongly, or the
            Kubernetes API refused the InferenceService.
    """
    import yaml

    manifest = read_model_manifest(model_dir)
    blessing = check_blessing(read_json(evaluation_json, "evaluation"), manifest, str(evaluation_json))
    model_name = names.resolve_model_name(model_name, source)
    name = config.service_name or service_name_for(model_name)
    isvc = render_inference_service(
        name,
        kserve_storage_uri(storage_uri),
        manifest.format,
        namespace=config.namespace,
        canary_traffic_percent=None if config.deployment_mode == "RawDeployment" else config.canary_traffic_percent,
        resources=config.resources or None,
        service_account=config.service_account,
        min_replicas=config.min_replicas,
        max_replicas=config.max_replicas,
        labels={"shipyard.io/model": name},
        deployment_mode=config.deployment_mode or None,
        gpus=config.gpus,
        scale_metric=config.scale_metric or None,
        scale_target=config.scale_target or None,
        tolerations=config.tolerations or None,
        node_selector=config.node_selector or None,
        security_context=config.security_context,
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / ISVC_FILE, "# Rendered by shipyard deploy_model\n" + yaml.safe_dump(isvc, sort_keys=False))
    result: dict[str, Any] = {
        "target": config.target,
        "service": name,
        "endpoint": "",
        "smoke": None,
        "action": None,
        "blessing": blessing,
    }
    if config.target == "local":
        with LocalServer(model_dir, name, log_path=str(out / "server.log")) as server:
            ready_s = server.wait_ready(config.ready_timeout_s)
            result["smoke"] = {
                **smoke_test(server.url, name, model_dir, test_dir, config.smoke_rows),
                "ready_s": round(ready_s, 2),
            }
            result["endpoint"] = f"{server.url}/v2/models/{name}/infer"
        result["action"] = "smoke-tested locally"
    elif config.target == "kubernetes":
        raw = config.deployment_mode == "RawDeployment"
        applied = apply_to_cluster(isvc, config.ready_timeout_s, keep_existing=raw and config.raw_canary)
        result["endpoint"], result["action"] = applied["url"], applied["action"]
        # a kept RawDeployment: roll_out adds this model as its spec.canary entry
        result.update(storage_uri=kserve_storage_uri(storage_uri), model_format=manifest.format)
    write_json(out / RESULT_FILE, result)
    smoke = result["smoke"]
    write_text(
        report_md,
        (
            f"# Deployment: {name}\n\nEvaluation: {blessing}.\n\n"
            f"Target **{config.target}**, format {manifest.format}, canary traffic "
            f"{config.canary_traffic_percent}% (applies when the service already exists).\n\n"
            + (
                f"Local smoke test on {result['endpoint']}: V1 {smoke['v1']} ({smoke['v1_ms']} ms), V2 {smoke['v2']} "
                f"({smoke['v2_ms']} ms), {smoke['rows']} rows, ready after {smoke['ready_s']} s; server stopped.\n\n"
                if smoke
                else ""
            )
            + "```yaml\n"
            + yaml.safe_dump(isvc, sort_keys=False)
            + "```\n"
        ),
    )
    return result
