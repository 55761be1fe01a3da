"""Registering a Model artifact in the MLflow Model Registry.

Each call logs one MLflow run (parameters, metrics, the model directory and reports as
artifacts, KFP run tags) and creates a registered model version whose source is the run's copy
of the artifact. The alias ``challenger`` is moved to the version only when it was blessed.

Tracking URI: the ``tracking_uri`` argument, else ``$MLFLOW_TRACKING_URI``, else the embedded
default ``sqlite:///$SHIPYARD_HOME/mlflow.db`` (``SHIPYARD_HOME`` defaults to ``~/.shipyard``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shipyard.artifacts import read_json, read_model_manifest
from shipyard.errors import ConfigError

CHALLENGER = "challenger"
CHAMPION = "champion"


def resolve_tracking_uri(tracking_uri: str = "") -> str:
    """The tracking URI to use, following the order in the module docstring."""
    if tracking_uri:
        return tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    home = Path(os.environ.get("SHIPYARD_HOME", "~/.shipyard")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home.resolve() / 'mlflow.db'}"


def experiment_id(mlflow: Any, tracking_uri: str, name: str) -> str:
    """Gets or creates the experiment; SQLite stores keep artifacts beside the database file."""
    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        location = (Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


def register(
    model_dir: str,
    model_name: str,
    eval_json: str | None,
    blessed: bool,
    tracking_uri: str = "",
    params: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    extra_artifacts: dict[str, str] | None = None,
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

    Returns:
        ``{"name", "version", "run_id", "alias", "tracking_uri", "source"}``.
    """
    if not model_name or "/" in model_name:
        raise ConfigError(f"register: model_name {model_name!r} must be a non-empty name without '/'")
    manifest = read_model_manifest(model_dir)
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp_id = experiment_id(mlflow, uri, f"shipyard/{model_name}")
    metrics = dict(manifest.metrics)
    if eval_json:
        report = read_json(eval_json, "evaluation report")
        metrics.update({f"test_{k}": v for k, v in report.get("metrics", {}).items()})
    all_tags = {
        "shipyard.format": manifest.format,
        "shipyard.task": manifest.task,
        "shipyard.blessed": str(bool(blessed)).lower(),
        **(tags or {}),
    }
    with mlflow.start_run(experiment_id=exp_id, run_name=f"{model_name}-register") as run:
        mlflow.set_tags(all_tags)
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        mlflow.log_artifacts(model_dir, artifact_path="model")
        for name, path in (extra_artifacts or {}).items():
            if path and Path(path).is_file():
                mlflow.log_artifact(path, artifact_path=f"reports/{name}")
        source = f"{run.info.artifact_uri}/model"
    try:
        client.get_registered_model(model_name)
    except Exception:
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
