"""Where register_model puts a new experiment's artifacts, for each kind of tracking URI."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.register_model.core import ARTIFACT_ROOT_ENV, artifact_location
from shipyard.errors import ConfigError

PG = "postgresql://u:pw@db.internal/mlflow?options=-csearch_path%3Dmlflow"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in (ARTIFACT_ROOT_ENV, "SHIPYARD_HOME", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))


def test_sqlite_keeps_them_beside_the_database_whatever_the_root(monkeypatch, tmp_path):
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, str(tmp_path / "root"))
    expected = (tmp_path / "store" / "mlartifacts").resolve().as_uri()
    assert artifact_location(f"sqlite:///{tmp_path}/store/mlflow.db") == expected
    monkeypatch.chdir(tmp_path)
    assert artifact_location("sqlite:///store/mlflow.db") == expected


@pytest.mark.parametrize("uri", ["http://mlflow.mlflow:5000", "https://mlflow.example.com", "databricks", "sqlite://"])
def test_a_server_or_memory_store_decides_itself(uri, monkeypatch, tmp_path):
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, str(tmp_path / "root"))
    assert artifact_location(uri) is None


def test_a_database_store_uses_the_root_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, str(tmp_path / "out" / ".." / "root"))
    assert artifact_location(PG) == (tmp_path / "root").resolve().as_uri()
    assert artifact_location("mysql+pymysql://u@db/mlflow") == (tmp_path / "root").resolve().as_uri()
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, "gs://bucket/mlflow")
    assert artifact_location(PG) == "gs://bucket/mlflow"


def test_without_the_variable_a_database_store_uses_shipyard_home(monkeypatch, tmp_path):
    assert artifact_location(PG) == (tmp_path / "user" / ".shipyard" / "mlartifacts").resolve().as_uri()
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    assert artifact_location(PG) == (tmp_path / "home" / "mlartifacts").resolve().as_uri()


def test_a_pod_needs_a_root_or_a_persistent_home_for_a_database_store(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(ConfigError) as exc:
        artifact_location(PG)
    message = str(exc.value)
    assert message.startswith("mlflow: the tracking URI 'postgresql://u:***@db.internal/mlflow?")
    assert ARTIFACT_ROOT_ENV in message and "SHIPYARD_HOME" in message and "pw@" not in message
    assert artifact_location("http://mlflow.mlflow:5000") is None
    monkeypatch.setenv("SHIPYARD_HOME", "/mnt/shipyard")
    assert artifact_location(PG) == Path("/mnt/shipyard/mlartifacts").resolve().as_uri()
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, "gs://bucket/mlflow")
    assert artifact_location(PG) == "gs://bucket/mlflow"
