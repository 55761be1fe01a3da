"""register_model against a real PostgreSQL backend store (the team-cluster set-up of DESIGN.md).

Each test creates its own database on 127.0.0.1:5432 and drops it afterwards; without PostgreSQL
(or psycopg v3) the tests skip and say why.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from scratch_postgres import alembic_version, in_schema, tables

from components.register_model.core import ARTIFACT_ROOT_ENV, CHALLENGER, register
from shipyard.errors import ConfigError
from shipyard.registry import SHIPYARD_SUBDIR

pytestmark = [pytest.mark.integration]


@pytest.fixture
def postgres_uri(scratch_postgres):
    with scratch_postgres("shipyard_mlflow") as url:
        yield url


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No inherited tracking URI, artifact root or pod; the current directory is an empty one."""
    for name in ("MLFLOW_TRACKING_URI", ARTIFACT_ROOT_ENV, "SHIPYARD_HOME", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _local(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def test_versions_and_alias_in_a_postgres_registry(postgres_uri, baseline_artifacts, clean_env, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv(ARTIFACT_ROOT_ENV, str(tmp_path / "root"))
    first = register(str(baseline_artifacts["baseline"]), "bc-pg", None, blessed=False, tracking_uri=postgres_uri)
    second = register(str(baseline_artifacts["baseline"]), "bc-pg", None, blessed=True, tracking_uri=postgres_uri)
    assert (first["version"], second["version"]) == (1, 2)
    assert first["alias"] is None and second["alias"] == CHALLENGER
    client = MlflowClient(postgres_uri)
    assert int(client.get_model_version_by_alias("bc-pg", CHALLENGER).version) == 2
    assert client.get_model_version("bc-pg", "1").tags["shipyard.blessed"] == "false"
    # The artifacts land under the configured root, not in ./mlruns of the current directory.
    assert client.get_experiment_by_name("shipyard/bc-pg").artifact_location == (tmp_path / "root").resolve().as_uri()
    source = _local(second["source"])
    assert source.is_relative_to((tmp_path / "root").resolve()) and (source / SHIPYARD_SUBDIR / "model.json").is_file()
    assert list(clean_env.iterdir()) == []


def test_without_a_root_the_artifacts_go_under_shipyard_home(
    postgres_uri, baseline_artifacts, clean_env, tmp_path, monkeypatch
):
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    result = register(str(baseline_artifacts["baseline"]), "bc-pg", None, blessed=True, tracking_uri=postgres_uri)
    assert _local(result["source"]).is_relative_to((tmp_path / "home" / "mlartifacts").resolve())
    assert (_local(result["source"]) / SHIPYARD_SUBDIR / "model.json").is_file() and list(clean_env.iterdir()) == []


def test_registry_in_its_own_schema_creates_it_and_leaves_public_empty(
    postgres_uri, baseline_artifacts, clean_env, tmp_path
):
    uri = in_schema(postgres_uri, "mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ARTIFACT_ROOT_ENV, str(tmp_path / "root"))
        result = register(str(baseline_artifacts["baseline"]), "bc-pg", None, blessed=True, tracking_uri=uri)
    assert result["version"] == 1 and result["tracking_uri"] == uri
    found = tables(postgres_uri)
    assert set(found) == {"mlflow"} and {"experiments", "registered_models", "alembic_version"} <= found["mlflow"]


def test_a_schema_holding_an_optuna_storage_is_refused_before_mlflow_touches_it(
    postgres_uri, baseline_artifacts, clean_env
):
    import optuna

    optuna.create_study(storage=postgres_uri, study_name="existing")
    before = tables(postgres_uri)
    with pytest.raises(ConfigError) as exc:
        register(str(baseline_artifacts["baseline"]), "bc-pg", None, blessed=True, tracking_uri=postgres_uri)
    message = str(exc.value)
    assert message.startswith(f"mlflow: {postgres_uri!r} is the schema public of PostgreSQL database")
    assert "alembic_version holds Optuna's revision 'v3.2.0.a'" in message
    assert "?options=-csearch_path%3Dmlflow" in message and "\n" not in message
    assert tables(postgres_uri) == before, "MLflow created no table beside Optuna's"
    assert optuna.load_study(study_name="existing", storage=postgres_uri).study_name == "existing"


def test_tune_and_register_share_one_database_in_two_schemas(postgres_uri, baseline_artifacts, clean_env, tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient

    from components.tune_hyperparams.core import TuneConfig, check_storage_apart, tune

    storage, tracking = in_schema(postgres_uri, "optuna"), in_schema(postgres_uri, "mlflow")
    check_storage_apart(storage, tracking)
    config = TuneConfig.from_dict(
        {"n_trials": 2, "base": {"max_epochs": 3, "patience": 3}, "storage": storage, "study_name": "bc"}
    )
    train, val = str(baseline_artifacts["train"]), str(baseline_artifacts["val"])
    tuned = tune(train, val, str(tmp_path / "study"), str(tmp_path / "t.md"), config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ARTIFACT_ROOT_ENV, str(tmp_path / "root"))
        first = register(
            str(baseline_artifacts["baseline"]), "bc-pg", None, True, tracking, params=tuned["best_params"]
        )
    # Again: the named study resumes and a second version is registered, each library finding its
    # own revision; the experiment keeps the artifact location it was created with.
    tune(train, val, str(tmp_path / "study2"), str(tmp_path / "t2.md"), config)
    second = register(str(baseline_artifacts["baseline"]), "bc-pg", None, True, tracking)
    assert (first["version"], second["version"]) == (1, 2)
    assert _local(second["source"]).is_relative_to((tmp_path / "root").resolve())
    assert len(optuna.load_study(study_name="bc", storage=storage).trials) == 4
    assert MlflowClient(tracking).get_run(first["run_id"]).data.params["width"] == str(tuned["best_params"]["width"])
    found = tables(postgres_uri)
    assert set(found) == {"optuna", "mlflow"}
    assert "studies" in found["optuna"] and "studies" not in found["mlflow"]
    assert alembic_version(postgres_uri, "optuna") == ["v3.2.0.a"]
    assert alembic_version(postgres_uri, "mlflow") != ["v3.2.0.a"]
