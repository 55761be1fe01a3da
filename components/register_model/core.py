"""Registering a Model artifact in the MLflow Model Registry.

Each call logs one MLflow run (parameters, metrics, the model directory and reports as
artifacts, KFP run tags) and creates a registered model version whose source is the run's copy
of the artifact. The alias ``challenger`` is moved to the version only when it was blessed.

Tracking URI: the ``tracking_uri`` argument, else ``$MLFLOW_TRACKING_URI``, else the embedded
default ``sqlite:///$SHIPYARD_HOME/mlflow.db`` (``SHIPYARD_HOME`` defaults to ``~/.shipyard``).
Inside a Kubernetes pod the embedded default is refused unless ``SHIPYARD_HOME`` is set (a
persistent volume): the pod's own disk would take the registration with it.

Artifacts: a tracking server decides where they go. With a database as the store, a new
experiment's artifact location is chosen here, since MLflow's own default is ``./mlruns`` of
whatever the current directory is: beside the file for SQLite (``<dir>/mlartifacts``); for other
databases ``$SHIPYARD_MLFLOW_ARTIFACT_ROOT`` (a path or a URI such as ``gs://bucket/mlflow``;
``shipyard run --local`` sets it to ``<output>/mlartifacts``), else ``$SHIPYARD_HOME/mlartifacts``,
which a pod must set (a persistent volume). An existing experiment keeps its location.
Before MLflow opens a database, :func:`shipyard.rdb.prepare` creates the schema the URL's
``search_path`` names and refuses a schema that holds an Optuna storage (both use alembic's
``alembic_version`` table).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard import attempts, names, rdb
from shipyard.artifacts import ModelManifest, read_json, read_model_manifest
from shipyard.errors import ConfigError

CHALLENGER = "challenger"
CHAMPION = "champion"
#: The artifact location of new experiments in a database store other than SQLite.
ARTIFACT_ROOT_ENV = "SHIPYARD_MLFLOW_ARTIFACT_ROOT"


def resolve_tracking_uri(tracking_uri: str = "") -> str:
    """The tracking URI to use, following the order in the module docstring."""
    if tracking_uri:
        return tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("SHIPYARD_HOME"):
        # A pod's filesystem dies with it: a SQLite store there would lose the registration.
        raise ConfigError(
            "mlflow: no tracking URI in a Kubernetes pod; set the pipeline's mlflow_tracking_uri "
            "or MLFLOW_TRACKING_URI (or SHIPYARD_HOME to a persistent volume)"
        )
    home = Path(os.environ.get("SHIPYARD_HOME", "~/.shipyard")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home.resolve() / 'mlflow.db'}"


def artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment's artifacts go, following the module docstring.

    Returns:
        A URI, or None where the store decides (a tracking server).

    Raises:
        ConfigError: A database store other than SQLite inside a Kubernetes pod, with neither
            ``$SHIPYARD_MLFLOW_ARTIFACT_ROOT`` nor ``$SHIPYARD_HOME`` set.
    """
    backend = rdb.backend_of(tracking_uri)
    if backend is None:
        return None
    if backend == "sqlite":
        where = rdb.place(tracking_uri)
        return None if where is None else (Path(where.database).parent / "mlartifacts").as_uri()
    root = os.environ.get(ARTIFACT_ROOT_ENV, "")
    if root:
        return root if "://" in root else Path(root).expanduser().resolve().as_uri()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("SHIPYARD_HOME"):
        # MLflow would write them under ./mlruns, on the pod's disk, which dies with it.
        raise ConfigError(
            f"mlflow: the tracking URI {rdb.redact(tracking_uri)!r} is a database, so this step chooses where "
            f"artifacts go and a Kubernetes pod keeps none: set {ARTIFACT_ROOT_ENV} (e.g. gs://bucket/mlflow) or "
            "SHIPYARD_HOME (a persistent volume), or use an MLflow tracking server (http://...)"
        )
    home = Path(os.environ.get("SHIPYARD_HOME", "~/.shipyard")).expanduser()
    return (home / "mlartifacts").resolve().as_uri()


def experiment_id(client: Any, tracking_uri: str, name: str) -> str:
    """Gets or creates the experiment; a new one gets :func:`artifact_location`."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location(tracking_uri)))


@contextlib.contextmanager
def mlflow_run(tracking_uri: str, experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[tuple[Any, Any]]:
    """Opens an MLflow run through an explicit client (no process-global tracking URI).

    Yields ``(client, run)``; the run ends FINISHED, or FAILED when the block raises.
    """
    from mlflow.tracking import MlflowClient

    rdb.prepare(tracking_uri, "mlflow", "mlflow")  # a database's schema exists, and holds no Optuna storage
    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment_id(client, tracking_uri, experiment), run_name=run_name, tags=tags)
    try:
        yield client, run
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    client.set_terminated(run.info.run_id, status="FINISHED")


def model_tags(manifest: ModelManifest, model_dir: str) -> dict[str, str]:
    """Tags that say what the model is, whatever its format: ``shipyard.family`` and
    ``shipyard.estimator`` (from ``details`` when present) and ``shipyard.preprocessing`` (what the
    model takes: ``identity`` for the plain numeric matrix, else its scaling, encoding and how many
    numeric and categorical raw features).

    Raises:
        DataValidationError: ``model.json`` holds a malformed ``preprocessing``.
    """
    from serving.preprocess import Preprocessing

    out: dict[str, str] = {}
    for key in ("family", "estimator"):
        value = manifest.details.get(key)
        if isinstance(value, str) and value:
            out[f"shipyard.{key}"] = value
    if manifest.preprocessing is None:
        out["shipyard.preprocessing"] = "identity"
        return out
    prep = Preprocessing.from_dict(manifest.preprocessing, f"{model_dir}/model.json")
    if prep.identity:
        out["shipyard.preprocessing"] = "identity"
        return out
    kinds = [f.kind for f in prep.features]
    out["shipyard.preprocessing"] = (
        f"raw rows: {kinds.count('numeric')} numeric (scaling {prep.numeric}), "
        f"{kinds.count('categorical')} categorical ({prep.categorical}) feature(s)"
    )
    return out


@attempts.step
def register(
    model_dir: str,
    model_name: str,
    eval_json: str | None,
    blessed: bool,
    tracking_uri: str = "",
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    extra_artifacts: dict[str, str] | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Logs the model and registers a new version.

    Args:
        model_dir: The Model artifact (verified before anything is logged).
        model_name: Registered model name (also the experiment name ``shipyard/<name>``).
        eval_json: The evaluation report; its metrics are logged.
        blessed: Whether evaluation blessed the model; only then does ``challenger`` move.
        tracking_uri: MLflow tracking URI (see the module docstring for the default).
        params: Hyperparameters to log.
        tags: Extra run and version tags (e.g. the KFP run id).
        extra_artifacts: ``{name: local file}`` logged under ``reports/``.
        source: The run's data source; an empty ``model_name`` derives from it
            (:func:`shipyard.names.resolve_model_name`).

    Returns:
        ``{"name", "version", "run_id", "alias", "tracking_uri", "source"}``.

    Raises:
        ConfigError: An unusable model name or tracking store (see the module docstring).
        ArtifactError / IntegrityError: The model artifact is malformed or altered.
        DataValidationError: Its ``model.json`` holds a malformed ``preprocessing``.
    """
    model_name = names.resolve_model_name(model_name, source)
    manifest = read_model_manifest(model_dir)
    story = model_tags(manifest, model_dir)  # a malformed preprocessing fails before anything is logged
    from mlflow.entities import Metric, Param

    uri = resolve_tracking_uri(tracking_uri)
    metrics = dict(manifest.metrics)
    if eval_json:
        report = read_json(eval_json, "evaluation report")
        metrics.update({f"test_{k}": v for k, v in report.get("metrics", {}).items()})
    all_tags = {
        "shipyard.format": manifest.format,
        "shipyard.task": manifest.task,
        "shipyard.blessed": str(bool(blessed)).lower(),
        **story,
        **(tags or {}),
    }
    now = int(time.time() * 1000)
    with mlflow_run(uri, f"shipyard/{model_name}", f"{model_name}-register", all_tags) as (client, run):
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if isinstance(v, (int, float))],
            params=[Param(k, str(v)[:500]) for k, v in (params or {}).items()],
        )
        client.log_artifacts(run.info.run_id, model_dir, artifact_path="model")
        for name, path in (extra_artifacts or {}).items():
            if path and Path(path).is_file():
                client.log_artifact(run.info.run_id, path, artifact_path=f"reports/{name}")
        source = f"{run.info.artifact_uri}/model"
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(model_name, description="Registered by Shipyard")
    version = client.create_model_version(model_name, source=source, run_id=run.info.run_id, tags=all_tags)
    alias = None
    if blessed:
        client.set_registered_model_alias(model_name, CHALLENGER, version.version)
        alias = CHALLENGER
    return {
        "name": model_name,
        "version": int(version.version),
        "run_id": run.info.run_id,
        "alias": alias,
        "tracking_uri": uri,
        "source": source,
    }
