"""Registering a Model artifact in the MLflow Model Registry as an MLflow Model.

Each call logs one MLflow run (parameters, metrics, the MLflow Model and reports as artifacts,
tags) and creates a registered model version whose source is the run's ``model`` directory: an
MLflow Model (``MLmodel``, ``python_function`` flavor over Shipyard's safe loader, a signature and
an input example; :mod:`serving.mlflow_pyfunc`) that carries the Shipyard artifact unchanged under
``artifacts/shipyard``. The version's tags tell its story (:func:`story_tags`: data, validation,
tuning, candidate, quantization, the evaluation's gate, lineage). The alias ``challenger`` is moved
to the version only when it was blessed; ``champion`` and ``previous`` move in
:mod:`shipyard.registry` (``promote``, ``rollback``).

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
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard import attempts, modelcard, names, rdb
from shipyard.artifacts import ModelManifest, read_json, read_model_manifest, sha256_file
from shipyard.errors import ArtifactError, ConfigError
from shipyard.formats import FORMATS
from shipyard.modelcard import CardConfig
from shipyard.registry import CHALLENGER, CHAMPION

__all__ = ["CHALLENGER", "CHAMPION", "register", "resolve_tracking_uri", "story_tags"]
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

    Yields ``(client, run)``; the run ends FINISHED, or FAILED when the block raises. Inside a
    pipeline run it is nested under it (:func:`components.tracking.parent_tags`).
    """
    from mlflow.tracking import MlflowClient

    from components.tracking import parent_tags

    rdb.prepare(tracking_uri, "mlflow", "mlflow")  # a database's schema exists, and holds no Optuna storage
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)  # never a process-global registry URI
    exp = experiment_id(client, tracking_uri, experiment)
    run = client.create_run(exp, run_name=run_name, tags={**parent_tags(client, exp), **tags})
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


#: MLflow's longest model-version tag value; longer values are cut with an ellipsis.
TAG_LIMIT = 5000
#: The reports :func:`story_tags` reads, by the name :func:`register` takes them under.
STORY_INPUTS = ("dataset", "validation", "tune", "comparison", "quantization")
#: Rows of the input example saved with the MLflow Model.
EXAMPLE_ROWS = 5


def _cut(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= TAG_LIMIT else text[: TAG_LIMIT - 1] + "…"


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _report(path: str | None, what: str, inner: str = "") -> dict[str, Any] | None:
    """The JSON report at ``path`` (or ``path/inner`` when ``path`` is a directory), None when not given."""
    if not path:
        return None
    target = Path(path)
    if target.is_dir() and inner:
        target = target / inner
    data = read_json(target, what)
    if not isinstance(data, dict):
        raise ArtifactError(f"{target}: {what}: expected a JSON object")
    return data


def git_commit() -> str:
    """``$SHIPYARD_GIT_COMMIT``, else ``git rev-parse HEAD`` of the checkout Shipyard runs from, else ``""``."""
    if os.environ.get("SHIPYARD_GIT_COMMIT"):
        return os.environ["SHIPYARD_GIT_COMMIT"]
    import shipyard

    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(shipyard.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def story_tags(
    reports: dict[str, str | None] | None = None,
    evaluation: dict[str, Any] | None = None,
    data: str = "",
) -> dict[str, str]:
    """The version tags that tie the pipeline's story to the version (the README's tags table).

    Every report is optional; a tag whose source is absent is left out. The evaluation's newer keys
    (``forced``, ``checks`` with ``passed``, ``champion``, ``warnings``) are read where present.

    Args:
        reports: ``{name: path}`` for the names in :data:`STORY_INPUTS`: the ingested Dataset
            directory, validate_data's anomaly JSON, tune_hyperparams' study directory (or its
            ``trials.json``), train_model's comparison JSON and quantize_model's table JSON.
        evaluation: The evaluation report (already read).
        data: The run's data source (URI, path or ``sklearn:NAME``).

    Returns:
        ``{tag: value}``, values at most :data:`TAG_LIMIT` characters.

    Raises:
        ArtifactError: A report given is missing or is not a JSON object.
    """
    reports = reports or {}
    unknown = sorted(set(reports) - set(STORY_INPUTS))
    if unknown:
        raise ConfigError(f"register: unknown report(s) {unknown}; expected some of {list(STORY_INPUTS)}")
    tags: dict[str, Any] = {}
    if data:
        tags["shipyard.data.uri"] = data
    dataset = reports.get("dataset")
    if dataset:
        parquet = Path(dataset) / "data.parquet"
        if not parquet.is_file():
            raise ArtifactError(f"{parquet}: missing dataset file (data.parquet)")
        tags["shipyard.data.sha256"] = sha256_file(parquet)
    validation = _report(reports.get("validation"), "validation report")
    if validation is not None:
        summary = validation.get("summary", {})
        errors, warnings = int(summary.get("errors", 0)), int(summary.get("warnings", 0))
        tags["shipyard.validation"] = "failed" if errors else "passed"
        tags["shipyard.validation.anomalies"] = f"{errors} error(s), {warnings} warning(s)"
        if "rows" in summary:
            tags["shipyard.data.rows"] = str(summary["rows"])
    tune = _report(reports.get("tune"), "tuning report", "trials.json")
    if tune is not None:
        result = tune.get("result", tune)
        for key, tag in (("study_name", "study"), ("storage", "storage"), ("best_trial", "best_trial")):
            if result.get(key) is not None:
                tags[f"shipyard.tune.{tag}"] = _number(result[key])
        if result.get("best_value") is not None:
            tags["shipyard.tune.best_value"] = _number(float(result["best_value"]))
        if result.get("trials") is not None:
            tags["shipyard.tune.trials"] = str(result["trials"])
    comparison = _report(reports.get("comparison"), "training comparison")
    if comparison is not None:
        if comparison.get("candidate"):
            tags["shipyard.candidate"] = comparison["candidate"]
        if comparison.get("reason"):
            tags["shipyard.candidate.reason"] = comparison["reason"]
    quantization = _report(reports.get("quantization"), "quantization report")
    if quantization is not None:
        variant = quantization.get("variant")
        if variant:
            tags["shipyard.quantize.variant"] = variant
        if quantization.get("size_ratio") is not None:
            tags["shipyard.quantize.size_ratio"] = _number(float(quantization["size_ratio"]))
        row = (quantization.get("table") or {}).get(variant) or {}
        if row.get("bytes") is not None:
            tags["shipyard.quantize.bytes"] = str(row["bytes"])
        if row.get("latency_us_1") is not None:
            tags["shipyard.quantize.latency_us_1"] = _number(float(row["latency_us_1"]))
    if evaluation is not None:
        tags.update(_gate_tags(evaluation))
    return {k: _cut(v) for k, v in tags.items()}


def _gate_tags(evaluation: dict[str, Any]) -> dict[str, str]:
    """The evaluation gate's outcome as tags (today's evaluation.json and the richer one alike)."""
    tags: dict[str, str] = {}
    if "blessed" in evaluation:
        tags["shipyard.eval.blessed"] = str(bool(evaluation["blessed"])).lower()
    primary = evaluation.get("primary_metric")
    metrics = evaluation.get("metrics") or {}
    if primary:
        tags["shipyard.eval.primary_metric"] = str(primary)
        if isinstance(metrics.get(primary), (int, float)):
            tags["shipyard.eval.primary_value"] = _number(float(metrics[primary]))
    forced = evaluation.get("forced")
    if isinstance(forced, dict) and forced.get("reason"):
        tags["shipyard.eval.forced"] = str(forced["reason"])
    # the checks that decide (a reported, non-gating row such as the in-run baseline does not)
    checks = [c for c in evaluation.get("checks") or [] if isinstance(c, dict) and c.get("gating", True)]
    if checks:
        failed = [str(c.get("check") or c.get("metric") or "?") for c in checks if not c.get("passed", True)]
        tags["shipyard.eval.checks"] = f"{len(checks) - len(failed)}/{len(checks)} passed"
        tags["shipyard.eval.failed_checks"] = ", ".join(failed) if failed else "none"
    champion = evaluation.get("champion")
    if isinstance(champion, dict) and champion.get("version") is not None:
        tags["shipyard.eval.champion_version"] = str(champion["version"])
    elif "champion" in evaluation:
        tags["shipyard.eval.champion_version"] = "none"
    warnings = evaluation.get("warnings")
    if isinstance(warnings, list) and warnings:
        tags["shipyard.eval.warnings"] = "; ".join(str(w) for w in warnings)
    return tags


def lineage_tags() -> dict[str, str]:
    """``shipyard.git_commit`` (when known), ``shipyard.image`` and ``shipyard.version``."""
    from shipyard import __version__, images

    tags = {"shipyard.image": images.CPU_IMAGE, "shipyard.version": __version__}
    commit = git_commit()
    if commit:
        tags["shipyard.git_commit"] = commit
    return tags


def _example(example_dir: str | None, manifest: ModelManifest) -> Any:
    """A few rows of the split at ``example_dir`` (its input features), or None."""
    if not example_dir:
        return None
    from serving.mlflow_pyfunc import example_rows
    from shipyard.artifacts import read_dataset

    df, _ = read_dataset(example_dir)
    missing = [f for f in manifest.feature_names if f not in df.columns]
    if missing:
        raise ArtifactError(f"{example_dir}: the input example split lacks the model's feature(s) {missing}")
    return example_rows([df], manifest.feature_names, EXAMPLE_ROWS)


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
    reports: dict[str, str | None] | None = None,
    example_dir: str | None = None,
    card: CardConfig | None = None,
    card_md: str | None = None,
    card_html: str | None = None,
) -> dict[str, Any]:
    """Logs the model as an MLflow Model and registers a new version.

    Everything that can fail on the inputs (the artifact's hashes, its preprocessing, the reports,
    the example split, building the MLflow Model) is done before the MLflow run is opened, so a bad
    input registers nothing.

    Args:
        model_dir: The Model artifact (verified before anything is logged).
        model_name: Registered model name (also the experiment name ``shipyard/<name>``).
        eval_json: The evaluation report; its metrics are logged and its gate outcome tagged.
        blessed: Whether evaluation blessed the model; only then does ``challenger`` move.
        tracking_uri: MLflow tracking URI (see the module docstring for the default).
        params: Hyperparameters to log.
        tags: Extra run and version tags (e.g. the KFP run id); they win over the computed ones.
        extra_artifacts: ``{name: local file or directory}`` logged under ``reports/<name>/``.
        source: The run's data source: an empty ``model_name`` derives from it
            (:func:`shipyard.names.resolve_model_name`) and it is tagged ``shipyard.data.uri``.
        reports: The pipeline's reports for :func:`story_tags` (names in :data:`STORY_INPUTS`).
        example_dir: A Dataset split (test or train) whose first rows are the input example.
        card: The model card's options (:class:`shipyard.modelcard.CardConfig`). The card is
            built from the model, the evaluation and ``reports`` (``example_dir`` as the test
            split), logged under the run's ``model_card/`` and named by the version's
            ``shipyard.model_card`` tag.
        card_md: Also write the card's Markdown here (the KFP UI).
        card_html: Also write the card's HTML here.

    Returns:
        ``{"name", "version", "run_id", "alias", "tracking_uri", "source", "tags", "model_card"}``.

    Raises:
        ConfigError: An unusable model name or tracking store (see the module docstring).
        ArtifactError / IntegrityError: The model artifact, a report or the example split is
            malformed, missing or altered.
        DataValidationError: Its ``model.json`` holds a malformed ``preprocessing``.
    """
    import tempfile

    from serving.mlflow_pyfunc import save_pyfunc

    model_name = names.resolve_model_name(model_name, source)
    manifest = read_model_manifest(model_dir)
    story = model_tags(manifest, model_dir)  # a malformed preprocessing fails before anything is logged
    report = read_json(eval_json, "evaluation report") if eval_json else None
    if report is not None and not isinstance(report, dict):
        raise ArtifactError(f"{eval_json}: evaluation report: expected a JSON object")
    if report is not None and isinstance(report.get("blessed"), bool) and report["blessed"] != bool(blessed):
        raise ArtifactError(
            f"{eval_json}: the evaluation says blessed={report['blessed']}, the step was given "
            f"blessed={bool(blessed)}; wire the evaluation's own verdict (nothing was registered)"
        )
    evaluated = report.get("model_sha256") if report is not None else None
    weights = manifest.files.get(FORMATS[manifest.format].weights_file) if manifest.format in FORMATS else None
    if evaluated and evaluated != weights:
        raise ArtifactError(
            f"{eval_json}: the evaluation is of another model (model_sha256 {evaluated!r}); {model_dir} has weights "
            f"sha256 {weights!r} (nothing was registered)"
        )
    story.update(story_tags(reports, report, source))
    example = _example(example_dir, manifest)
    found = reports or {}
    facts = modelcard.gather(
        model_dir,
        model_name,
        evaluation_json=eval_json,
        dataset_dir=found.get("dataset"),
        test_dir=example_dir,
        validation_json=found.get("validation"),
        comparison_json=found.get("comparison"),
        quantize_json=found.get("quantization"),
        config=card,
    )
    from mlflow.entities import Metric, Param

    uri = resolve_tracking_uri(tracking_uri)
    metrics = dict(manifest.metrics)
    if report is not None:
        metrics.update({f"test_{k}": v for k, v in (report.get("metrics") or {}).items()})
    all_tags = {
        "shipyard.format": manifest.format,
        "shipyard.task": manifest.task,
        "shipyard.blessed": str(bool(blessed)).lower(),
        **story,
        **lineage_tags(),
        **{k: _cut(str(v)) for k, v in (tags or {}).items()},
    }
    now = int(time.time() * 1000)
    with tempfile.TemporaryDirectory(prefix="shipyard-register-") as tmp:
        mlflow_model = Path(tmp) / "model"
        save_pyfunc(model_dir, mlflow_model, example)  # verifies the artifact again as it copies it
        with mlflow_run(uri, f"shipyard/{model_name}", f"{model_name}-register", all_tags) as (client, run):
            client.log_batch(
                run.info.run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if isinstance(v, (int, float))],
                params=[Param(k, str(v)[:500]) for k, v in (params or {}).items()],
            )
            client.log_artifacts(run.info.run_id, str(mlflow_model), artifact_path="model")
            for name, path in (extra_artifacts or {}).items():
                if path and Path(path).is_file():
                    client.log_artifact(run.info.run_id, path, artifact_path=f"reports/{name}")
                elif path and Path(path).is_dir():  # e.g. the evaluation's PNG pictures
                    client.log_artifacts(run.info.run_id, path, artifact_path=f"reports/{name}")
            version_source = f"{run.info.artifact_uri}/model"
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(model_name, description="Registered by Shipyard")
    parent = _alias_version(client, model_name, CHAMPION)
    version = client.create_model_version(model_name, source=version_source, run_id=run.info.run_id, tags=all_tags)
    alias = None
    if blessed:  # the alias first: the card below is a record of the version, not a condition of it
        client.set_registered_model_alias(model_name, CHALLENGER, version.version)
        alias = CHALLENGER
    facts["version"] = int(version.version)
    facts["lineage"] = {
        k: v
        for k, v in {
            "registered_version": int(version.version),
            "parent_version": parent,  # the champion when this version was registered
            "kfp_run": all_tags.get("kfp.run"),
            "mlflow_run": run.info.run_id,
            "data_uri": source,
            "git_commit": all_tags.get("shipyard.git_commit"),
            "image": all_tags.get("shipyard.image"),
        }.items()
        if v not in (None, "")
    }
    card_uri = _log_card(client, run.info.run_id, run.info.artifact_uri, facts, card_md, card_html)
    client.set_model_version_tag(model_name, version.version, "shipyard.model_card", card_uri)
    all_tags["shipyard.model_card"] = card_uri
    return {
        "name": model_name,
        "version": int(version.version),
        "run_id": run.info.run_id,
        "alias": alias,
        "tracking_uri": uri,
        "source": version_source,
        "tags": all_tags,
        "model_card": card_uri,
    }


def _alias_version(client: Any, name: str, alias: str) -> int | None:
    """The version ``alias`` points at, or None (no such alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _log_card(
    client: Any, run_id: str, artifact_uri: str, facts: dict[str, Any], card_md: str | None, card_html: str | None
) -> str:
    """Logs the model card (Markdown and HTML) under the run's ``model_card/``; returns the Markdown's URI."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="shipyard-card-") as tmp:
        modelcard.write_card(facts, str(Path(tmp) / "model_card.md"), str(Path(tmp) / "model_card.html"))
        client.log_artifacts(run_id, tmp, artifact_path="model_card")
    modelcard.write_card(facts, card_md, card_html)
    return f"{artifact_uri}/model_card/model_card.md"
