"""Rolling a deployed, registered version out as a canary, and moving the registry's aliases by the result.

After ``deploy_model`` the new version runs beside the current ``champion``; this step walks the
policy's traffic steps (:mod:`serving.rollout`: a pure controller driven against a backend) and:

- **promotes**: all the traffic to the new version, and the MLflow alias ``champion`` moves to it
  (the champion before it becomes ``previous``; :func:`shipyard.registry.promote`);
- or **rolls back**: the canary's weight goes to 0, ``champion`` stays, and the step fails with
  :class:`~shipyard.errors.RolloutAbortedError`, so the run shows it.

Either way the RolloutReport (``rollout.json`` and ``rollout.html``) is an output and is logged with
the version (``reports/`` of its run; tags ``shipyard.rollout`` and ``shipyard.rollout_reason``).

Targets, as ``deploy_model``'s:

- ``local``: the champion (downloaded from the registry) and the new version as ``shipyard serve``
  processes on 127.0.0.1 behind HAProxy, scraped by Prometheus, with a bounded load of test rows sent
  through HAProxy for as long as the rollout runs (there are no users on a laptop);
- ``kubernetes``: the InferenceService ``deploy_model`` applied, Serverless or RawDeployment, and the
  cluster's Prometheus;
- ``render``: nothing runs, so nothing is rolled out and no alias moves (the report says so).

With no champion yet (the first registration) there is nothing to compare with: the version is
promoted without canary analysis, as Flagger does on a first deployment, and the report says so.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from serving.rollout.policy import RolloutPolicy
from serving.rollout.report import REPORT_HTML, REPORT_JSON, RolloutReport
from shipyard import attempts, names, registry
from shipyard.artifacts import read_dataset, read_json, read_model_manifest, write_json, write_text
from shipyard.config import Config, require
from shipyard.errors import ConfigError, RolloutAbortedError

LOAD_FILE = "load.json"
#: ``canary_faults`` keys → ``shipyard serve`` flags (the server checks the ranges).
FAULT_FLAGS = {"error_rate": "--fault-error-rate", "delay_ms": "--fault-delay-ms"}


@dataclasses.dataclass(frozen=True)
class RollOutConfig(Config):
    """How to roll out.

    Attributes:
        target: ``local``, ``kubernetes`` or ``render`` (as deploy's).
        policy: :class:`serving.rollout.policy.RolloutPolicy` options (steps, interval, checks...).
        champion_alias: The alias of the version serving today (the stable side).
        load_rate: ``local``: requests per second of test rows sent through HAProxy.
        load_rows: ``local``: test rows per request.
        load_threads: ``local``: concurrent connections of the load.
        canary_faults: ``local``, for rehearsing a rollback: ``{"error_rate": 0.3}`` and/or
            ``{"delay_ms": 700}`` make the canary server answer that share of requests 500, or late
            (``shipyard serve --fault-error-rate / --fault-delay-ms``).
        namespace: ``kubernetes``: the InferenceService's namespace.
        service_name: ``kubernetes``: its name; empty takes deploy's.
        mode: ``kubernetes``: ``serverless`` or ``raw`` (RawDeployment, KServe's ``spec.canary``).
        prometheus_url: ``kubernetes``: the cluster's Prometheus (``http://prometheus.monitoring:9090``).
    """

    section = "roll_out"
    target: str = "kubernetes"
    policy: dict = dataclasses.field(default_factory=dict)
    champion_alias: str = registry.CHAMPION
    load_rate: float = 40.0
    load_rows: int = 4
    load_threads: int = 8
    canary_faults: dict = dataclasses.field(default_factory=dict)
    namespace: str = "default"
    service_name: str = ""
    mode: str = "serverless"
    prometheus_url: str = ""

    def validate(self) -> None:
        s = self.section
        require(self.target in ("kubernetes", "local", "render"), s, "target must be kubernetes, local or render")
        require(self.mode in ("serverless", "raw"), s, f"mode must be serverless or raw, got {self.mode!r}")
        require(self.load_rate > 0, s, f"load_rate must be > 0 requests per second, got {self.load_rate!r}")
        require(self.load_rows >= 1 and self.load_threads >= 1, s, "load_rows and load_threads must be >= 1")
        require(bool(self.champion_alias), s, "champion_alias must not be empty")
        unknown = sorted(set(self.canary_faults) - set(FAULT_FLAGS))
        require(not unknown, s, f"canary_faults: unknown key(s) {unknown}; expected error_rate and/or delay_ms")
        for key, value in self.canary_faults.items():
            require(
                isinstance(value, int | float) and not isinstance(value, bool) and value >= 0,
                s,
                f"canary_faults.{key} must be a number >= 0, got {value!r}",
            )
        require(
            not self.prometheus_url or self.prometheus_url.startswith(("http://", "https://")),
            s,
            f"prometheus_url must be http://... or https://..., got {self.prometheus_url!r}",
        )
        RolloutPolicy.from_dict(self.policy)  # validated up front: a typo fails before anything starts

    def rollout_policy(self) -> RolloutPolicy:
        return RolloutPolicy.from_dict(self.policy)

    def canary_args(self) -> list[str]:
        """The canary server's fault-injection flags (empty unless ``canary_faults`` is set)."""
        return [arg for key, value in sorted(self.canary_faults.items()) for arg in (FAULT_FLAGS[key], f"{value:g}")]


def _body(model_dir: str, test_dir: str, rows: int) -> dict[str, Any]:
    """A V1 request of raw test rows (strings and nulls as they are), the load's body."""
    from components.deploy_model.core import raw_records

    manifest = read_model_manifest(model_dir)
    df, _ = read_dataset(test_dir)
    return {"instances": raw_records(df.head(rows).reset_index(drop=True), manifest.feature_names)}


def _first_rollout(model: str, backend: str, policy: RolloutPolicy, why: str) -> RolloutReport:
    report = RolloutReport.begin(model, backend, policy, ())
    report.phase, report.reason, report.weight = "Succeeded", why, 100
    report.finished_at = report.started_at
    return report


def _local(model_dir: str, stable_dir: str, test_dir: str, name: str, out: Path, config: RollOutConfig) -> Any:
    from serving.rollout.load import LoadGenerator
    from serving.rollout.local import LocalBackend
    from serving.rollout.run import run_rollout

    policy = config.rollout_policy()
    task = read_model_manifest(model_dir).task
    backend = LocalBackend(
        stable_dir,
        model_dir,
        name,
        out / "local",
        canary_args=config.canary_args(),
        ready_timeout_s=policy.ready_timeout_s,
    )
    try:
        backend.start()
        backend.wait_scraped()
        # Bounded: the longest rollout the policy allows, plus a margin; stopped as soon as it ends.
        bound_s = policy.interval_s * (len(policy.plan()) + 1) * (policy.iterations + policy.max_inconclusive + 2)
        load = LoadGenerator(
            backend.predict_url,
            _body(model_dir, test_dir, config.load_rows),
            out / "local",
            rate=config.load_rate,
            duration_s=bound_s + policy.ready_timeout_s,
            max_requests=int(config.load_rate * (bound_s + policy.ready_timeout_s)) + 1,
            threads=config.load_threads,
        )
        with load:
            report = run_rollout(policy, backend, name, task)
            counts = load.stop()
    finally:
        backend.close()
    write_json(out / LOAD_FILE, counts or {})
    return report, counts


def raw_canary(deployed: dict[str, Any]) -> dict[str, str]:
    """The RawDeployment canary of deploy_model's ``result.json``: the model it published.

    Raises:
        ConfigError: The deployment did not record where the model is (an older deploy_model, or
            not deployed to a cluster).
    """
    if not deployed.get("storage_uri") or not deployed.get("model_format"):
        raise ConfigError(
            "roll_out: mode 'raw' needs deploy_model's storage_uri and model_format in its result.json "
            f"(target kubernetes); it holds {sorted(deployed)}"
        )
    return {"storage_uri": str(deployed["storage_uri"]), "model_format": str(deployed["model_format"])}


def _kubernetes(
    model_dir: str, service: str, out: Path, config: RollOutConfig, deployed: dict[str, Any]
) -> Any:  # pragma: no cover - a cluster
    from serving.rollout.kubernetes import KubernetesBackend
    from serving.rollout.run import run_rollout

    if not config.prometheus_url:
        raise ConfigError("roll_out: target kubernetes needs prometheus_url, the cluster's Prometheus (http://...)")

    backend = KubernetesBackend(
        service,
        config.namespace,
        mode=config.mode,
        prometheus_url=config.prometheus_url,
        canary=raw_canary(deployed) if config.mode == "raw" else None,
    )  # serverless: deploy's patch made the canary revision; raw: the entry start() adds
    backend.start()
    return run_rollout(
        config.rollout_policy(), backend, service, read_model_manifest(model_dir).task, namespace=config.namespace
    ), None


def _record(client: Any, name: str, version: int, report: RolloutReport, out: Path) -> None:
    """Tags the version with the outcome and logs the report files with its run."""
    client.set_model_version_tag(name, str(version), "shipyard.rollout", report.phase)
    client.set_model_version_tag(name, str(version), "shipyard.rollout_reason", report.reason[:4900])
    run_id = client.get_model_version(name, str(version)).run_id
    if run_id:
        for file in (REPORT_JSON, REPORT_HTML):
            client.log_artifact(run_id, str(out / file), "reports")


@attempts.step
def roll_out(
    model_dir: str,
    test_dir: str,
    deployment_dir: str,
    model_name: str,
    version: int,
    tracking_uri: str,
    output_dir: str,
    report_html: str,
    config: RollOutConfig,
    source: str = "",
) -> dict[str, Any]:
    """Rolls ``version`` out against the champion and moves the aliases by the outcome.

    Args:
        model_dir: The deployed Model artifact (the canary).
        test_dir: Test Dataset: the local load's rows.
        deployment_dir: deploy_model's output (``result.json``: target, service).
        model_name: The registered model; empty derives it from ``source``.
        version: The registered version this model is.
        tracking_uri: The MLflow tracking URI (empty: as register_model resolves it).
        output_dir: Where ``rollout.json``, ``rollout.html`` (and, locally, the processes' logs) go.
        report_html: The HTML report's path (the KFP HTML artifact).
        config: Target, policy and backend options.
        source: The run's data source (the model name derives from it when empty).

    Returns:
        ``{"phase", "reason", "champion", "report"}``.

    Raises:
        RolloutAbortedError: The canary was rolled back (or the rollout failed); ``champion`` did not move.
        ConfigError: Bad options, or a version that is not registered under ``model_name``.
        DeploymentError: The backend could not start.
    """
    from components.register_model.core import resolve_tracking_uri

    name = names.resolve_model_name(model_name, source)
    uri = resolve_tracking_uri(tracking_uri)
    client = registry.client_for(uri)
    target = registry.resolve(client, name, str(version))  # RegistryError for an unknown version
    deployed = read_json(Path(deployment_dir) / "result.json", "deployment")
    if deployed.get("target") != config.target:
        raise ConfigError(
            f"roll_out: target {config.target!r}, but the model was deployed with target {deployed.get('target')!r}"
        )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = config.rollout_policy()
    counts = None
    with tempfile.TemporaryDirectory(prefix="shipyard-champion-") as tmp:
        champion = registry.fetch_model(uri, name, f"@{config.champion_alias}", os.path.join(tmp, "champion"))
        if config.target == "render":
            report = RolloutReport.begin(name, "render: nothing deployed", policy, ())
            report.phase, report.reason = "Skipped", "target render: nothing runs, so nothing was rolled out"
        elif champion is None or champion.version == int(target.version):
            why = (
                f"no @{config.champion_alias} yet: version {target.version} is the first and is promoted without "
                "canary analysis"
                if champion is None
                else f"version {target.version} is already @{config.champion_alias}"
            )
            report = _first_rollout(name, config.target, policy, why)
        elif config.target == "local":
            report, counts = _local(model_dir, champion.path, test_dir, name, out, config)
        else:
            service = config.service_name or deployed.get("service", "")
            report, counts = _kubernetes(model_dir, service, out, config, deployed)
    report.version = str(target.version)
    if counts:
        report.note(report.duration_s, f"load: {_load_text(counts)}")
    champion_now = champion.version if champion is not None else None
    if report.phase == "Succeeded":
        move = registry.promote(client, name, int(target.version))
        champion_now = move.champion
        report.note(report.duration_s, move.message)
    report.write(out)
    write_text(report_html, report.html())
    _record(client, name, int(target.version), report, out)
    result = {
        "phase": report.phase,
        "reason": report.reason,
        "champion": champion_now,
        "report": str(out / REPORT_JSON),
    }
    if report.phase in ("RolledBack", "Failed"):
        raise RolloutAbortedError(
            f"rollout of {name} version {target.version}: {report.phase}: {report.reason}; "
            f"@{config.champion_alias} stays version {champion_now}; report: {out / REPORT_HTML}"
        )
    return result


def _load_text(counts: dict[str, Any]) -> str:
    """``1200 requests: stable 2xx 900, canary 2xx 280, canary 5xx 20, 0 connection errors``."""
    parts = [f"{side} {cls} {n}" for side, by in counts.get("by_server", {}).items() for cls, n in sorted(by.items())]
    return (
        f"{counts.get('requests', 0)} requests: "
        + ", ".join(parts)
        + f", {counts.get('connection_errors', 0)} connection errors"
    )
