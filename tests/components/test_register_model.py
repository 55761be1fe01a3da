"""Tests for components.register_model.core against a real MLflow SQLite store in tmp_path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from components.register_model.core import CHALLENGER, register, resolve_tracking_uri
from shipyard.artifacts import read_model_manifest
from shipyard.errors import ConfigError, IntegrityError
from shipyard.registry import SHIPYARD_SUBDIR

NAME = "bc"


@pytest.fixture
def mlflow_env(monkeypatch):
    """No inherited tracking URI or telemetry; undoes the MLflow global URI (which register sets) afterwards."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield
    mlflow.set_tracking_uri(None)


@pytest.fixture
def store(tmp_path, mlflow_env) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def eval_json(tmp_path) -> str:
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"blessed": True, "metrics": {"roc_auc": 0.97, "accuracy": 0.93}}))
    return str(path)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri, registry_uri=uri)


def _local(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _runs(uri: str) -> list:
    client = _client(uri)
    experiment = client.get_experiment_by_name(f"shipyard/{NAME}")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_versions_count_up_and_challenger_moves_only_when_blessed(artifacts, store, eval_json, tmp_path):
    unblessed = tmp_path / "unblessed.json"
    unblessed.write_text(json.dumps({"blessed": False, "metrics": {"roc_auc": 0.6}}))
    first = register(str(artifacts["baseline"]), NAME, eval_json, True, store)
    second = register(str(artifacts["baseline"]), NAME, str(unblessed), False, store)

    assert (first["version"], first["alias"]) == (1, CHALLENGER)
    assert (second["version"], second["alias"]) == (2, None)
    assert first["run_id"] != second["run_id"] and first["tracking_uri"] == store
    client = _client(store)
    assert int(client.get_model_version_by_alias(NAME, CHALLENGER).version) == 1

    third = register(str(artifacts["quantized"]), NAME, eval_json, True, store)

    assert (third["version"], third["alias"]) == (3, CHALLENGER)
    assert int(client.get_model_version_by_alias(NAME, CHALLENGER).version) == 3
    assert client.get_model_version(NAME, "2").tags["shipyard.blessed"] == "false"
    assert len(_runs(store)) == 3


def test_tags_params_and_metrics_are_logged(baseline_artifacts, store, eval_json):
    result = register(
        str(baseline_artifacts["baseline"]),
        NAME,
        eval_json,
        True,
        store,
        params={"lr": 0.01, "width": 64},
        tags={"kfp.run_id": "run-123"},
    )

    run = _client(store).get_run(result["run_id"])
    manifest = read_model_manifest(baseline_artifacts["baseline"])
    assert run.data.tags["shipyard.format"] == "sklearn-skops"
    assert run.data.tags["shipyard.task"] == "binary"
    assert run.data.tags["shipyard.blessed"] == "true"
    assert run.data.tags["kfp.run_id"] == "run-123"
    assert run.data.params == {"lr": "0.01", "width": "64"}
    assert run.data.metrics["val_loss"] == pytest.approx(manifest.metrics["val_loss"])
    assert run.data.metrics["test_roc_auc"] == pytest.approx(0.97)
    assert run.data.metrics["test_accuracy"] == pytest.approx(0.93)
    version = _client(store).get_model_version(NAME, str(result["version"]))
    assert version.tags["kfp.run_id"] == "run-123" and version.run_id == result["run_id"]
    assert version.source == result["source"]


def test_the_artifact_is_copied_under_the_run_beside_the_database(baseline_artifacts, store, eval_json, tmp_path):
    result = register(
        str(baseline_artifacts["baseline"]),
        NAME,
        eval_json,
        True,
        store,
        extra_artifacts={"eval": eval_json, "absent": str(tmp_path / "nope.json")},
    )

    assert result["source"].startswith("file://") and result["source"].endswith("/model")
    logged = _local(result["source"])
    assert logged.is_relative_to(tmp_path / "mlartifacts")
    assert (logged / "MLmodel").is_file(), "the version's source is an MLflow Model"
    copied = logged / SHIPYARD_SUBDIR  # the Shipyard artifact, unchanged, inside it
    assert sorted(p.name for p in copied.iterdir()) == sorted(p.name for p in baseline_artifacts["baseline"].iterdir())
    assert read_model_manifest(copied).files == read_model_manifest(baseline_artifacts["baseline"]).files
    reports = logged.parent / "reports"
    assert (reports / "eval" / "eval.json").is_file()
    assert not (reports / "absent").exists()


def test_without_eval_json_only_the_manifest_metrics_are_logged(baseline_artifacts, store):
    result = register(str(baseline_artifacts["baseline"]), NAME, None, False, store)
    assert set(_client(store).get_run(result["run_id"]).data.metrics) == {"val_loss"}


@pytest.mark.parametrize("name", ["", "team/bc"])
def test_bad_model_name_is_a_config_error_before_anything_is_created(baseline_artifacts, store, tmp_path, name):
    with pytest.raises(ConfigError) as exc:
        register(str(baseline_artifacts["baseline"]), name, None, True, store)
    assert f"model_name {name!r}" in str(exc.value)
    assert ("no '/'" if name else "no data source") in str(exc.value)
    assert not (tmp_path / "mlflow.db").exists()


def test_tampered_model_fails_integrity_before_anything_is_logged(baseline_artifacts, store, eval_json, tmp_path):
    register(str(baseline_artifacts["baseline"]), NAME, eval_json, True, store)
    tampered = tmp_path / "tampered"
    shutil.copytree(baseline_artifacts["baseline"], tampered)
    with open(tampered / "model.skops", "ab") as f:
        f.write(b"\0")

    with pytest.raises(IntegrityError) as exc:
        register(str(tampered), NAME, eval_json, True, store)

    assert "sha256 mismatch" in str(exc.value) and "model.skops" in str(exc.value)
    assert len(_runs(store)) == 1
    assert [int(v.version) for v in _client(store).search_model_versions(f"name='{NAME}'")] == [1]
    assert int(_client(store).get_model_version_by_alias(NAME, CHALLENGER).version) == 1


def test_tampered_model_on_a_fresh_store_creates_no_database(baseline_artifacts, store, tmp_path):
    tampered = tmp_path / "tampered"
    shutil.copytree(baseline_artifacts["baseline"], tampered)
    (tampered / "extra.bin").write_bytes(b"x")
    with pytest.raises(IntegrityError, match="not listed"):
        register(str(tampered), NAME, None, True, store)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()


# --- a mixed-type candidate of another family ----------------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict[str, Path]:
    from mixed_artifacts import build_mixed

    return build_mixed(tmp_path_factory.mktemp("mixed"))


def test_a_hist_gradient_boosting_candidate_is_registered_with_its_family(mixed, store, eval_json):
    source = mixed["gbdt"]
    result = register(str(source), NAME, eval_json, True, store)

    client = _client(store)
    tags = client.get_run(result["run_id"]).data.tags
    assert tags["shipyard.format"] == "sklearn-skops"
    assert tags["shipyard.family"] == "gbdt" and tags["shipyard.estimator"] == "HistGradientBoostingClassifier"
    assert tags["shipyard.preprocessing"] == "raw rows: 2 numeric (scaling none), 3 categorical (codes) feature(s)"
    version = client.get_model_version(NAME, str(result["version"]))
    assert version.tags["shipyard.family"] == "gbdt" and result["alias"] == CHALLENGER
    copied = _local(result["source"]) / SHIPYARD_SUBDIR
    assert read_model_manifest(copied).files == read_model_manifest(source).files
    assert read_model_manifest(copied).preprocessing == read_model_manifest(source).preprocessing


def test_an_all_numeric_model_is_tagged_identity(baseline_artifacts, store):
    result = register(str(baseline_artifacts["baseline"]), NAME, None, False, store)
    tags = _client(store).get_run(result["run_id"]).data.tags
    assert tags["shipyard.preprocessing"] == "identity"


def test_a_malformed_preprocessing_fails_before_anything_is_logged(mixed, store, tmp_path):
    from shipyard.artifacts import read_json, write_json
    from shipyard.errors import DataValidationError

    broken = tmp_path / "broken"
    shutil.copytree(mixed["linear"], broken)
    manifest = read_json(broken / "model.json", "model.json")
    manifest["preprocessing"]["version"] = 99
    write_json(broken / "model.json", manifest)

    with pytest.raises(
        DataValidationError, match=r"broken/model.json: preprocessing: expected an object with version 1"
    ):
        register(str(broken), NAME, None, True, store)
    assert not (tmp_path / "mlflow.db").exists()


# --- resolve_tracking_uri ------------------------------------------------------------------------


def test_argument_wins_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    assert resolve_tracking_uri("sqlite:///from-arg.db") == "sqlite:///from-arg.db"


def test_environment_wins_over_shipyard_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    assert resolve_tracking_uri("") == "http://127.0.0.1:5000"
    assert not (tmp_path / "home").exists()


def test_shipyard_home_is_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    assert resolve_tracking_uri() == f"sqlite:///{(tmp_path / 'home').resolve()}/mlflow.db"
    assert (tmp_path / "home").is_dir()


def test_home_directory_is_the_last_resort(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SHIPYARD_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/.shipyard/mlflow.db"


def test_register_uses_the_resolved_default_store(baseline_artifacts, mlflow_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    result = register(str(baseline_artifacts["baseline"]), NAME, None, True)
    assert result["tracking_uri"] == f"sqlite:///{(tmp_path / 'home').resolve()}/mlflow.db"
    assert (tmp_path / "home" / "mlflow.db").is_file()
    assert _local(result["source"]).is_relative_to((tmp_path / "home" / "mlartifacts").resolve())


def test_no_embedded_store_inside_a_pod(monkeypatch):
    from components.register_model.core import resolve_tracking_uri
    from shipyard.errors import ConfigError

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SHIPYARD_HOME", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(ConfigError, match="mlflow: no tracking URI in a Kubernetes pod"):
        resolve_tracking_uri("")
    assert resolve_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"


# --- the story as version tags -------------------------------------------------------------------


@pytest.fixture
def story(baseline_artifacts, tmp_path) -> dict[str, str]:
    """The reports the pipeline hands register_model: validation, quantization and evaluation from
    their components' own code on the reference; tuning's and training's JSON in the shape they write."""
    from components.evaluate_model.core import EvalConfig, evaluate
    from components.quantize_model.core import QuantizeConfig, quantize
    from components.validate_data.core import ValidateConfig, validate

    ref = baseline_artifacts
    validate(
        str(ref["dataset"]),
        str(tmp_path / "schema"),
        str(tmp_path / "anomalies.json"),
        str(tmp_path / "v.md"),
        ValidateConfig(),
    )
    quantize(
        str(ref["baseline"]),
        str(ref["val"]),
        str(tmp_path / "quantized"),
        str(tmp_path / "table.json"),
        str(tmp_path / "q.md"),
        QuantizeConfig(),
    )
    evaluate(
        str(ref["baseline"]),
        str(ref["test"]),
        str(tmp_path / "evaluation.json"),
        str(tmp_path / "e.md"),
        EvalConfig.from_dict({"thresholds": {"roc_auc": {"min": 0.8}}}),
    )
    (tmp_path / "study").mkdir()
    trials = {
        "result": {
            "study_name": "bc-7",
            "storage": "sqlite (artifact)",
            "best_trial": 3,
            "best_value": 0.0912,
            "trials": 8,
        },
        "trials": [],
    }
    (tmp_path / "study" / "trials.json").write_text(json.dumps(trials))
    (tmp_path / "comparison.json").write_text(json.dumps({"candidate": "linear", "reason": "within one SE"}))
    return {
        "dataset": str(ref["dataset"]),
        "validation": str(tmp_path / "anomalies.json"),
        "tune": str(tmp_path / "study"),
        "comparison": str(tmp_path / "comparison.json"),
        "quantization": str(tmp_path / "table.json"),
        "evaluation": str(tmp_path / "evaluation.json"),
    }


def test_the_version_tags_tell_the_story(baseline_artifacts, store, story, monkeypatch):
    from shipyard import __version__, images
    from shipyard.artifacts import sha256_file

    monkeypatch.setenv("SHIPYARD_GIT_COMMIT", "0123abc")
    reports = {k: v for k, v in story.items() if k != "evaluation"}
    result = register(
        str(baseline_artifacts["baseline"]),
        NAME,
        story["evaluation"],
        True,
        store,
        tags={"kfp.run": "job-9"},
        source="sklearn:breast_cancer",
        reports=reports,
        example_dir=str(baseline_artifacts["test"]),
    )

    tags = _client(store).get_model_version(NAME, str(result["version"])).tags
    evaluation = json.loads(Path(story["evaluation"]).read_text())
    assert tags["shipyard.data.uri"] == "sklearn:breast_cancer"
    assert tags["shipyard.data.sha256"] == sha256_file(baseline_artifacts["dataset"] / "data.parquet")
    assert tags["shipyard.validation"] == "passed" and tags["shipyard.data.rows"] == "569"
    assert tags["shipyard.validation.anomalies"].endswith("warning(s)")
    assert (tags["shipyard.tune.study"], tags["shipyard.tune.best_trial"]) == ("bc-7", "3")
    assert tags["shipyard.tune.best_value"] == "0.0912" and tags["shipyard.tune.trials"] == "8"
    assert (tags["shipyard.candidate"], tags["shipyard.candidate.reason"]) == ("linear", "within one SE")
    assert tags["shipyard.quantize.variant"] == "sklearn-skops" and tags["shipyard.quantize.size_ratio"] == "1"
    assert tags["shipyard.eval.blessed"] == str(evaluation["blessed"]).lower()
    assert tags["shipyard.eval.primary_metric"] == evaluation["primary_metric"]
    n = len(evaluation["checks"])
    assert tags["shipyard.eval.checks"].endswith(f"/{n} passed")
    assert (tags["kfp.run"], tags["shipyard.git_commit"]) == ("job-9", "0123abc")
    assert tags["shipyard.image"] == images.CPU_IMAGE and tags["shipyard.version"] == __version__
    assert result["tags"] == tags
    run_tags = _client(store).get_run(result["run_id"]).data.tags
    assert run_tags["shipyard.data.sha256"] == tags["shipyard.data.sha256"]


def test_the_gate_of_the_richer_evaluation_is_tagged():
    from components.register_model.core import story_tags

    evaluation = {
        "blessed": True,
        "primary_metric": "roc_auc",
        "metrics": {"roc_auc": 0.9712345},
        "forced": {"reason": "hotfix approved by on-call (INC-42)"},
        "checks": [
            {"check": "value", "metric": "roc_auc", "value": 0.97, "threshold": 0.9, "passed": True, "kind": "value"},
            {
                "check": "roc_auc vs champion",
                "metric": "roc_auc",
                "value": -0.01,
                "threshold": 0.0,
                "passed": False,
                "kind": "change",
            },
            {"check": "log_loss vs champion", "metric": "log_loss", "passed": False, "kind": "change"},
        ],
        "champion": {"version": 4, "metrics": {"roc_auc": 0.98}},
        "warnings": ["small test set (86 rows)"],
    }
    tags = story_tags(None, evaluation, "")
    assert tags == {
        "shipyard.eval.blessed": "true",
        "shipyard.eval.primary_metric": "roc_auc",
        "shipyard.eval.primary_value": "0.971235",
        "shipyard.eval.forced": "hotfix approved by on-call (INC-42)",
        "shipyard.eval.checks": "1/3 passed",
        "shipyard.eval.failed_checks": "roc_auc vs champion, log_loss vs champion",
        "shipyard.eval.champion_version": "4",
        "shipyard.eval.warnings": "small test set (86 rows)",
    }
    no_champion = story_tags(None, {"blessed": False, "champion": None, "forced": None, "checks": []}, "")
    assert no_champion == {"shipyard.eval.blessed": "false", "shipyard.eval.champion_version": "none"}
    assert story_tags(None, None, "") == {}


def test_a_long_tag_is_cut_to_mlflows_limit():
    from components.register_model.core import TAG_LIMIT, story_tags

    tags = story_tags(None, {"warnings": ["x" * 9000]}, "")
    assert len(tags["shipyard.eval.warnings"]) == TAG_LIMIT and tags["shipyard.eval.warnings"].endswith("…")


@pytest.mark.parametrize("broken", ["validation", "tune", "dataset", "unknown"])
def test_a_missing_report_registers_nothing(baseline_artifacts, store, story, tmp_path, broken):
    from shipyard.errors import ArtifactError

    reports = {k: v for k, v in story.items() if k != "evaluation"}
    reports[broken] = str(tmp_path / "nowhere")
    error = ConfigError if broken == "unknown" else ArtifactError
    with pytest.raises(error) as exc:
        register(str(baseline_artifacts["baseline"]), NAME, None, True, store, reports=reports)
    assert ("unknown report(s) ['unknown']" if broken == "unknown" else "nowhere") in str(exc.value)
    assert not (tmp_path / "mlflow.db").exists()


def test_an_example_split_without_the_features_registers_nothing(mixed, baseline_artifacts, store, tmp_path):
    from shipyard.errors import ArtifactError

    with pytest.raises(ArtifactError, match=r"the input example split lacks the model's feature\(s\) \['age'"):
        register(str(mixed["gbdt"]), NAME, None, True, store, example_dir=str(baseline_artifacts["test"]))
    assert not (tmp_path / "mlflow.db").exists()


def test_git_commit_from_the_environment_or_the_checkout(monkeypatch):
    from components.register_model.core import git_commit

    monkeypatch.setenv("SHIPYARD_GIT_COMMIT", "feedbeef")
    assert git_commit() == "feedbeef"
    monkeypatch.delenv("SHIPYARD_GIT_COMMIT")
    commit = git_commit()
    assert commit == "" or (len(commit) == 40 and all(c in "0123456789abcdef" for c in commit))


# --- the model card and the champion the next evaluation compares with ------------------------------


def test_the_model_card_is_logged_with_the_version_and_names_its_parent(baseline_artifacts, store, story, tmp_path):
    from components.evaluate_model.core import fetch_champion
    from shipyard import registry
    from shipyard.modelcard import CardConfig

    reports = {k: v for k, v in story.items() if k != "evaluation"}
    first = register(str(baseline_artifacts["baseline"]), NAME, story["evaluation"], True, store, reports=reports)
    assert fetch_champion(store, NAME, "", "champion", str(tmp_path / "none"))[:2] == (None, None)  # none yet
    registry.promote(_client(store), NAME, first["version"])
    second = register(
        str(baseline_artifacts["baseline"]),
        NAME,
        story["evaluation"],
        True,
        store,
        reports=reports,
        example_dir=str(baseline_artifacts["test"]),
        card=CardConfig(intended_use="Triage of biopsy reports", owners=("ml-team",)),
        card_md=str(tmp_path / "card.md"),
        card_html=str(tmp_path / "card.html"),
    )
    version = _client(store).get_model_version(NAME, str(second["version"]))
    assert version.tags["shipyard.model_card"] == second["model_card"]
    logged = _local(second["model_card"])
    assert logged.is_file() and logged.with_suffix(".html").is_file()
    text = logged.read_text()
    assert text == (tmp_path / "card.md").read_text()  # the KFP output is the logged card
    assert text.startswith(f"# Model card: {NAME} version {second['version']}\n")
    assert "Triage of biopsy reports" in text and "ml-team" in text
    assert f"| parent_version | {first['version']} |" in text and f"| mlflow_run | {second['run_id']} |" in text
    assert "<h1>Model card" in (tmp_path / "card.html").read_text()

    path, champion, where = fetch_champion(store, NAME, "", "champion", str(tmp_path / "champion"))
    assert where == f"@champion of {NAME!r} in {store}"
    assert champion == str(first["version"])
    assert read_model_manifest(path).files == read_model_manifest(baseline_artifacts["baseline"]).files
    assert fetch_champion(store, NAME, "", "", str(tmp_path / "off")) == (None, None, "")  # champion_alias ""


def test_a_process_wide_registry_uri_does_not_divert_the_registration(baseline_artifacts, store, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{elsewhere}")
    result = register(str(baseline_artifacts["baseline"]), NAME, None, True, store)
    client = MlflowClient(store, registry_uri=store)
    assert client.get_model_version(NAME, str(result["version"])).run_id == result["run_id"]
    assert not elsewhere.exists()  # the version is in the store register was given, nowhere else


@pytest.mark.parametrize(
    ("evaluation", "blessed", "fragment"),
    [
        ({"blessed": False, "metrics": {}}, True, "the evaluation says blessed=False, the step was given blessed=True"),
        ({"blessed": True, "metrics": {}, "model_sha256": "0" * 64}, True, "the evaluation is of another model"),
    ],
)
def test_a_verdict_or_model_other_than_the_evaluations_registers_nothing(
    baseline_artifacts, store, tmp_path, evaluation, blessed, fragment
):
    from shipyard.errors import ArtifactError

    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(evaluation))
    with pytest.raises(ArtifactError, match=fragment):
        register(str(baseline_artifacts["baseline"]), NAME, str(path), blessed, store)
    assert not (tmp_path / "mlflow.db").exists()  # no store was even created
