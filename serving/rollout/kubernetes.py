"""The Kubernetes side of serving: applying an InferenceService, reading its state, rolling a canary out.

``apply_to_cluster`` is what ``deploy_model`` calls; :class:`KubernetesBackend` (the rollout's
backend on KServe, Serverless or RawDeployment) uses the same client, group and error rule.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from serving.rollout.backend import COMMANDS, SIDES, Sample
from serving.rollout.isvc import (
    AUTOSCALING_FIELDS,
    DEPLOYMENT_MODE_ANNOTATION,
    is_raw,
    predictor_deployment,
    render_raw_canary,
)
from shipyard.errors import ConfigError, DeploymentError

KSERVE_GROUP, KSERVE_VERSION, ISVC_PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


#: Transport errors of the kubernetes client (no HTTP answer at all).
_UNREACHABLE: tuple[type[BaseException], ...] = (OSError,)
try:  # urllib3 is the kubernetes client's transport; its errors are not OSErrors
    from urllib3.exceptions import HTTPError as _Urllib3Error

    _UNREACHABLE = (OSError, _Urllib3Error)
except ImportError:  # pragma: no cover - urllib3 comes with the kubernetes client
    pass


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


def apply_to_cluster(
    isvc: dict[str, Any], timeout_s: float, api: Any = None, poll_s: float = 5.0, keep_existing: bool = False
) -> dict[str, Any]:
    """Creates the InferenceService, or merge-patches an existing one, and waits until it is ready.

    Patching an existing Serverless service makes KServe start a new revision that receives
    ``canaryTrafficPercent`` of the traffic; a new service gets all of it. With ``keep_existing``
    an existing service is left as it is (a RawDeployment whose new model a rollout adds as a
    ``spec.canary`` entry: patching its predictor would give the new model all the traffic at once).

    Args:
        isvc: The rendered InferenceService.
        timeout_s: How long to wait for ``Ready``.
        api: A ``kubernetes.client.CustomObjectsApi`` (default: from the in-cluster or local kubeconfig).
        poll_s: Seconds between readiness polls.
        keep_existing: Leave an existing service unchanged (and still wait for it to be ready).

    Returns:
        ``{"action": "created"|"patched"|"kept", "url": ...}``.

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
        if exists and not keep_existing:
            api.patch_namespaced_custom_object(*args, name, isvc)
        elif not exists:
            api.create_namespaced_custom_object(*args, isvc)
        action = "created" if not exists else "kept" if keep_existing else "patched"
        deadline = time.monotonic() + timeout_s
        while True:
            current = api.get_namespaced_custom_object(*args, name)
            if is_ready(current):
                return {"action": action, "url": current["status"].get("url", "")}
            if time.monotonic() >= deadline:
                conditions = current.get("status", {}).get("conditions", [])
                raise DeploymentError(f"{where} not ready after {timeout_s:g}s; conditions: {conditions}")
            time.sleep(poll_s)
    except ApiException as exc:
        raise DeploymentError(f"{where}: Kubernetes API answered {exc.status} {exc.reason}: {exc.body}") from exc


STATE_ANNOTATION = "rollout.shipyard.io/state"
COMMAND_ANNOTATION = "rollout.shipyard.io/command"
MODES = ("serverless", "raw")
#: Keys of a RawDeployment backend's ``canary``: a whole predictor spec, or what to render one from.
CANARY_KEYS = ("predictor", "storage_uri", "model_format", "name", "resources", "gpus")
#: Attempts of a read-modify-write patch that the API answers 409 Conflict (the object changed between).
CONFLICT_ATTEMPTS = 3
_log = logging.getLogger(__name__)


def merge_patch_between(old: Any, new: Any) -> Any:
    """The RFC 7386 JSON merge patch that turns ``old`` into ``new`` (None where a key goes away).

    Lists and scalars are replaced whole (merge patch has no list edits); equal values are left out.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return copy.deepcopy(new)
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        elif old[key] != value:
            patch[key] = merge_patch_between(old[key], value)
    return patch


class KubernetesBackend:
    """A rollout on an InferenceService through ``CustomObjectsApi``: a :class:`~serving.rollout.backend.Backend`.

    **Serverless** (Knative): ``deploy_model`` has already patched the service, so its newest
    revision (``status.components.predictor.latestCreatedRevision``) is the canary and the last
    revision that had all the traffic (``latestRolledoutRevision``) is stable. Weights are
    ``spec.predictor.canaryTrafficPercent``; promotion removes the field (KServe then sends all the
    traffic to the newest revision, which becomes the rolled-out one); rollback sets it to 0.

    **RawDeployment** (KServe 0.20+ ``spec.canary``): ``start`` adds a named canary entry at
    ``trafficPercent`` 0 beside the stable predictor; readiness is its ``status.canaryStatuses``
    entry; promotion retargets ``spec.predictor`` to the canary's predictor (keeping the stable's
    autoscaling fields) and removes the entry, so KServe keeps the canary's pods; rollback removes
    the entry.

    Every write is a JSON merge patch (RFC 7386), the only patch type the client's
    ``patch_namespaced_custom_object`` sends (``application/merge-patch+json``). Merge patch
    replaces a list whole, so an edit of ``spec.canary`` reads the object, sends the whole new list
    with the ``metadata.resourceVersion`` it read (the API server then refuses with 409 Conflict if
    the object changed in between) and retries on conflict.

    Args:
        name: The InferenceService.
        namespace: Its namespace.
        mode: ``serverless`` or ``raw``.
        api: A ``kubernetes.client.CustomObjectsApi``; default one from the in-cluster or local
            kubeconfig, made on first use.
        prometheus_url: The Prometheus HTTP API's base URL ("" when only state and commands are needed).
        canary: RawDeployment only: ``{"predictor": {...}}`` (a whole predictor spec with a ``name``),
            or ``{"storage_uri", "model_format", "name"?, "resources"?, "gpus"?}`` rendered by
            :func:`serving.rollout.isvc.render_raw_canary` from the stable predictor.
        selectors: PromQL label matchers per side, overriding the defaults: Serverless
            ``namespace="NS",serving_knative_dev_revision="REV"`` (the Knative revision pod label as
            Prometheus' ``labelmap`` writes it); RawDeployment
            ``namespace="NS",pod=~"DEPLOYMENT-[a-z0-9]+-[a-z0-9]+"`` with KServe's Deployment names
            (``{isvc}-predictor``, ``{isvc}-{name}-predictor`` for a named predictor or canary).
        poll_s: Seconds to wait before retrying a write refused with 409 Conflict.
        prometheus_timeout_s: Per-query timeout.

    Raises:
        ConfigError: An unknown mode, canary key or selector side, or a RawDeployment without a canary.
    """

    def __init__(
        self,
        name: str,
        namespace: str = "default",
        mode: str = "serverless",
        api: Any = None,
        prometheus_url: str = "",
        canary: Mapping[str, Any] | None = None,
        selectors: Mapping[str, str] | None = None,
        poll_s: float = 1.0,
        prometheus_timeout_s: float = 10.0,
    ):
        if mode not in MODES:
            raise ConfigError(f"rollout: kubernetes mode {mode!r} is not one of {MODES}")
        canary = dict(canary or {})
        unknown = set(canary) - set(CANARY_KEYS)
        if unknown:
            raise ConfigError(f"rollout: canary has unknown keys {sorted(unknown)}; expected some of {CANARY_KEYS}")
        if mode == "serverless" and canary:
            raise ConfigError(
                "rollout: a Serverless canary is the service's newest revision (deploy_model made it); "
                "canary is for mode='raw' only"
            )
        if mode == "raw":
            if "predictor" in canary:
                if not isinstance(canary["predictor"], Mapping) or not canary["predictor"].get("name"):
                    raise ConfigError("rollout: canary.predictor must be a predictor spec with a 'name'")
            elif not canary.get("storage_uri") or not canary.get("model_format"):
                raise ConfigError("rollout: mode='raw' needs canary.predictor, or canary.storage_uri and model_format")
        selectors = dict(selectors or {})
        if set(selectors) - set(SIDES):
            raise ConfigError(f"rollout: selectors has sides {sorted(set(selectors) - set(SIDES))}; expected {SIDES}")
        self.name, self.namespace, self.mode = name, namespace, mode
        self.canary, self.selectors = canary, selectors
        self.prometheus_url, self.prometheus_timeout_s = prometheus_url, prometheus_timeout_s
        self.poll_s = poll_s
        self.description = f"kubernetes {mode} {namespace}/{name}"
        self._api = api
        self._where = f"InferenceService {namespace}/{name}"
        self._revisions: dict[str, str] = {}  # serverless: side -> Knative revision, fixed by start()
        self._predictor_names: dict[str, str] = {}  # raw: side -> predictor name

    # -- the API ---------------------------------------------------------------------------

    @property
    def api(self) -> Any:
        """The ``CustomObjectsApi`` (made from the kubeconfig on first use when none was given).

        Raises:
            DeploymentError: No in-cluster credentials and no usable kubeconfig.
        """
        if self._api is None:
            from kubernetes.config import ConfigException

            try:
                self._api = custom_objects_api()
            except (ConfigException, OSError) as exc:
                raise DeploymentError(
                    f"{self._where}: no Kubernetes credentials (in-cluster or kubeconfig): {exc}"
                ) from exc
        return self._api

    def _args(self) -> tuple[str, str, str, str]:
        return (KSERVE_GROUP, KSERVE_VERSION, self.namespace, ISVC_PLURAL)

    def _error(self, verb: str, exc: Any) -> DeploymentError:
        if getattr(exc, "status", None) is None:  # no answer: the connection failed
            return DeploymentError(f"{self._where}: {verb}: the Kubernetes API cannot be reached: {exc}")
        return DeploymentError(f"{self._where}: {verb}: Kubernetes API answered {exc.status} {exc.reason}")

    def _get(self) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object(*self._args(), self.name)
        except (ApiException, *_UNREACHABLE) as exc:
            raise self._error("get", exc) from exc

    def _patch(self, body: dict[str, Any], verb: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.patch_namespaced_custom_object(*self._args(), self.name, body)
        except (ApiException, *_UNREACHABLE) as exc:
            raise self._error(verb, exc) from exc

    def _update(self, change: Callable[[dict[str, Any]], dict[str, Any] | None], verb: str) -> None:
        """Read, compute a merge patch (None: nothing to do), write it under the read's resourceVersion."""
        from kubernetes.client.exceptions import ApiException

        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            current = self._get()
            body = change(current)
            if body is None:
                return
            version = current.get("metadata", {}).get("resourceVersion")
            if version:
                body.setdefault("metadata", {})["resourceVersion"] = version
            try:
                self.api.patch_namespaced_custom_object(*self._args(), self.name, body)
                return
            except _UNREACHABLE as exc:
                raise self._error(verb, exc) from exc
            except ApiException as exc:
                if exc.status != 409 or attempt == CONFLICT_ATTEMPTS:
                    raise self._error(verb, exc) from exc
            time.sleep(self.poll_s)

    # -- Backend ---------------------------------------------------------------------------

    def start(self) -> None:
        """Serverless: checks that the newest revision is a canary and sets its weight to 0.
        RawDeployment: adds (or resets) the canary entry at weight 0.

        Raises:
            DeploymentError: No such service, a mode other than the backend's, no canary revision
                (Serverless), or the API refused a request.
        """
        if self.mode == "serverless":
            current = self._get()
            if is_raw(current):
                raise DeploymentError(f"{self._where} is RawDeployment; use mode='raw'")
            self._revisions = self._serverless_revisions(current)
            if current["spec"]["predictor"].get("canaryTrafficPercent") != 0:
                self._patch({"spec": {"predictor": {"canaryTrafficPercent": 0}}}, "set the canary's weight to 0")
            return
        self._update(self._add_canary, "add the canary")

    def _serverless_revisions(self, current: dict[str, Any]) -> dict[str, str]:
        component = current.get("status", {}).get("components", {}).get("predictor", {})
        created = component.get("latestCreatedRevision", "")
        rolled = component.get("latestRolledoutRevision", "")
        if not created or not rolled or created == rolled:
            raise DeploymentError(
                f"{self._where} has no canary revision: latestCreatedRevision {created!r}, latestRolledoutRevision "
                f"{rolled!r} (deploy_model patches an existing service with canaryTrafficPercent to make one)"
            )
        return {"canary": created, "stable": rolled}

    def _canary_entry(self, current: dict[str, Any]) -> dict[str, Any]:
        if "predictor" in self.canary:
            predictor = copy.deepcopy(dict(self.canary["predictor"]))
            if isinstance(predictor.get("model"), dict):
                predictor["model"].setdefault("name", "")  # the CRD requires it in a canary (see render_raw_canary)
            if predictor["name"] == current["spec"]["predictor"].get("name", ""):
                raise DeploymentError(f"{self._where}: canary name {predictor['name']!r} is the stable predictor's")
            return {"predictor": predictor, "trafficPercent": 0}
        try:
            return render_raw_canary(
                current,
                self.canary["storage_uri"],
                self.canary["model_format"],
                0,
                name=self.canary.get("name", ""),
                resources=self.canary.get("resources"),
                gpus=self.canary.get("gpus"),
            )
        except ConfigError as exc:
            raise DeploymentError(str(exc)) from exc

    def _canary_name(self, current: dict[str, Any]) -> str:
        if not self._predictor_names:
            self._predictor_names = {
                "canary": self._canary_entry(current)["predictor"]["name"],
                "stable": current["spec"]["predictor"].get("name", ""),
            }
        return self._predictor_names["canary"]

    def _add_canary(self, current: dict[str, Any]) -> dict[str, Any] | None:
        if not is_raw(current):
            raise DeploymentError(
                f"{self._where} is not RawDeployment ({DEPLOYMENT_MODE_ANNOTATION}); use mode='serverless'"
            )
        entry = self._canary_entry(current)
        name = entry["predictor"]["name"]
        self._predictor_names = {"canary": name, "stable": current["spec"]["predictor"].get("name", "")}
        entries = list(current["spec"].get("canary") or [])
        index = _entry_index(entries, name)
        if index is not None and entries[index] == entry:
            return None
        if index is None:
            entries.append(entry)
        else:
            entries[index] = entry
        return {"spec": {"canary": entries}}

    def _raw_entries(self, current: dict[str, Any]) -> tuple[list[dict[str, Any]], int, str]:
        name = self._canary_name(current)
        entries = list(current["spec"].get("canary") or [])
        index = _entry_index(entries, name)
        if index is None:
            raise DeploymentError(f"{self._where} has no spec.canary entry {name!r} (start() adds it)")
        return entries, index, name

    def canary_ready(self) -> bool:
        """Whether KServe reports the canary ready (for the current generation of the spec).

        Serverless: the newest revision is the latest ready one. RawDeployment: the canary's
        ``status.canaryStatuses`` entry says ``ready``.

        Raises:
            DeploymentError: The API refused the read, or a newer revision replaced the canary.
        """
        current = self._get()
        status = current.get("status", {})
        generation = current.get("metadata", {}).get("generation")
        observed = status.get("observedGeneration")
        if generation is not None and observed is not None and observed < generation:
            return False  # KServe has not reconciled the last change yet: its status is about the spec before
        if self.mode == "serverless":
            revisions = self._revisions or self._serverless_revisions(current)
            component = status.get("components", {}).get("predictor", {})
            if component.get("latestCreatedRevision") != revisions["canary"]:
                raise DeploymentError(
                    f"{self._where}: revision {component.get('latestCreatedRevision')!r} replaced the canary "
                    f"{revisions['canary']!r} during the rollout"
                )
            return bool(component.get("latestReadyRevision") == revisions["canary"])
        name = self._canary_name(current)
        for entry in status.get("canaryStatuses") or []:
            if entry.get("name") == name:
                return bool(entry.get("ready"))
        return False

    def set_weight(self, weight: int) -> None:
        """Sends ``weight`` percent of the traffic to the canary.

        Raises:
            ConfigError: ``weight`` is not a whole number in 0..100.
            DeploymentError: The API refused the patch, or (raw) there is no canary entry.
        """
        weight = _check_weight(weight)
        if self.mode == "serverless":
            body = {"spec": {"predictor": {"canaryTrafficPercent": weight}}}
            self._patch(body, f"set the canary's weight to {weight}")
            return

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            entries, index, _ = self._raw_entries(current)
            if entries[index].get("trafficPercent") == weight:
                return None
            entries[index] = {**entries[index], "trafficPercent": weight}
            return {"spec": {"canary": entries}}

        self._update(change, f"set the canary's weight to {weight}")

    def promote(self) -> None:
        """Makes the canary the stable model with all the traffic.

        Raises:
            DeploymentError: The API refused the patch, or (raw) there is no canary entry.
        """
        if self.mode == "serverless":
            self._patch({"spec": {"predictor": {"canaryTrafficPercent": None}}}, "promote the canary")
            return

        def change(current: dict[str, Any]) -> dict[str, Any]:
            entries, index, _ = self._raw_entries(current)
            stable = current["spec"]["predictor"]
            promoted = copy.deepcopy(entries[index]["predictor"])
            for key in AUTOSCALING_FIELDS:  # the canary carries none; the service keeps its scaling
                if key in stable:
                    promoted[key] = copy.deepcopy(stable[key])
            rest = entries[:index] + entries[index + 1 :]
            return {"spec": {"predictor": merge_patch_between(stable, promoted), "canary": rest or None}}

        self._update(change, "promote the canary")

    def rollback(self) -> None:
        """Sends all the traffic back to stable: Serverless weight 0, RawDeployment without the canary entry.

        Raises:
            DeploymentError: The API refused the patch.
        """
        if self.mode == "serverless":
            self._patch({"spec": {"predictor": {"canaryTrafficPercent": 0}}}, "roll the canary back")
            return

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            entries = list(current["spec"].get("canary") or [])
            index = _entry_index(entries, self._canary_name(current))
            if index is None:
                return None
            rest = entries[:index] + entries[index + 1 :]
            return {"spec": {"canary": rest or None}}

        self._update(change, "roll the canary back")

    def query(self, promql: str) -> list[Sample]:
        """One instant query of the Prometheus HTTP API at ``prometheus_url``.

        Raises:
            DeploymentError: No ``prometheus_url``, or Prometheus refused or could not be reached.
        """
        if not self.prometheus_url:
            raise DeploymentError(f"{self.description}: no prometheus_url to query {promql!r}")
        from serving.rollout.prometheus import PrometheusClient

        return PrometheusClient(self.prometheus_url, timeout_s=self.prometheus_timeout_s).query(promql)

    def selector(self, side: str) -> str:
        """PromQL label matchers of ``side`` (``selectors[side]`` if given, else the mode's default).

        Raises:
            ConfigError: ``side`` is not one of :data:`~serving.rollout.backend.SIDES`.
            DeploymentError: The default needs the service's status and the API refused the read.
        """
        if side not in SIDES:
            raise ConfigError(f"rollout: side {side!r} is not one of {SIDES}")
        if side in self.selectors:
            return self.selectors[side]
        if self.mode == "serverless":
            if not self._revisions:
                self._revisions = self._serverless_revisions(self._get())
            return f'namespace="{self.namespace}",serving_knative_dev_revision="{self._revisions[side]}"'
        if not self._predictor_names:
            self._canary_name(self._get())
        deployment = predictor_deployment(self.name, self._predictor_names[side])
        return f'namespace="{self.namespace}",pod=~"{re.escape(deployment)}-[a-z0-9]+-[a-z0-9]+"'

    def publish(self, state: dict[str, Any]) -> None:
        """Writes ``state`` as JSON into the ``rollout.shipyard.io/state`` annotation.

        Raises:
            DeploymentError: The API refused the patch.
        """
        text = json.dumps(state, sort_keys=True, separators=(",", ":"))
        self._patch({"metadata": {"annotations": {STATE_ANNOTATION: text}}}, "publish the rollout state")

    def read_state(self) -> dict[str, Any] | None:
        """The state in the ``rollout.shipyard.io/state`` annotation, or None.

        Raises:
            DeploymentError: The API refused the read, or the annotation is not a JSON object.
        """
        text = (self._get().get("metadata", {}).get("annotations") or {}).get(STATE_ANNOTATION)
        if text is None:
            return None
        try:
            state = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DeploymentError(f"{self._where}: annotation {STATE_ANNOTATION} is not JSON: {exc}") from exc
        if not isinstance(state, dict):
            raise DeploymentError(f"{self._where}: annotation {STATE_ANNOTATION} is not a JSON object")
        return state

    def send_command(self, command: str) -> None:
        """Writes ``command`` into the ``rollout.shipyard.io/command`` annotation.

        Raises:
            ConfigError: Not one of :data:`~serving.rollout.backend.COMMANDS`.
            DeploymentError: The API refused the patch.
        """
        if command not in COMMANDS:
            raise ConfigError(f"rollout: command {command!r} is not one of {COMMANDS}")
        self._patch({"metadata": {"annotations": {COMMAND_ANNOTATION: command}}}, f"send the command {command!r}")

    def command(self) -> str | None:
        """The pending command, cleared from the annotation under the read's resourceVersion (a
        command sent in between is not lost: the clear is refused and retried). An unknown value is
        cleared, logged and ignored.

        Raises:
            DeploymentError: The API refused the read or the patch.
        """
        found: list[str] = []

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            found.clear()
            value = (current.get("metadata", {}).get("annotations") or {}).get(COMMAND_ANNOTATION)
            if value is None:
                return None
            found.append(value)
            return {"metadata": {"annotations": {COMMAND_ANNOTATION: None}}}

        self._update(change, "clear the operator's command")
        if not found:
            return None
        if found[0] not in COMMANDS:
            _log.warning("%s: ignored %s=%r (not one of %s)", self._where, COMMAND_ANNOTATION, found[0], COMMANDS)
            return None
        return found[0]

    def close(self) -> None:
        """Nothing to stop: the cluster's objects stay."""


def _check_weight(weight: int) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ConfigError(f"rollout: weight must be a whole number in 0..100, got {weight!r}")
    return weight


def _entry_index(entries: list[dict[str, Any]], name: str) -> int | None:
    for i, entry in enumerate(entries):
        if (entry.get("predictor") or {}).get("name") == name:
            return i
    return None
