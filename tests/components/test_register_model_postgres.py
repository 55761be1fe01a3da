"""register_model against a real PostgreSQL backend store (the team-cluster set-up of DESIGN.md).

Each test run creates its own database on 127.0.0.1:5432 and drops it afterwards.
"""

from __future__ import annotations

import uuid

import pytest
from conftest import postgres_available

from components.register_model.core import CHALLENGER, register

pytestmark = [pytest.mark.integration]


@pytest.fixture
def postgres_uri():
    if not postgres_available():
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432")
    psycopg = pytest.importorskip("psycopg", reason="psycopg (v3) is not installed")
    name = f"shipyard_mlflow_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_versions_and_alias_in_a_postgres_registry(postgres_uri, artifacts, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # a non-SQLite store puts artifacts under ./mlartifacts by default
    first = register(str(artifacts["quantized"]), "bc-pg", None, blessed=False, tracking_uri=postgres_uri)
    second = register(str(artifacts["quantized"]), "bc-pg", None, blessed=True, tracking_uri=postgres_uri)
    assert (first["version"], second["version"]) == (1, 2)
    assert first["alias"] is None and second["alias"] == CHALLENGER
    client = MlflowClient(postgres_uri)
    assert int(client.get_model_version_by_alias("bc-pg", CHALLENGER).version) == 2
    assert client.get_model_version("bc-pg", "1").tags["shipyard.blessed"] == "false"
