"""The registry behind a real ``mlflow server`` on PostgreSQL (the team-cluster set-up of DESIGN.md).

The test creates its own database on 127.0.0.1:5432, starts ``mlflow server`` on it (artifacts
proxied by the server into tmp_path) as a child process on 127.0.0.1, registers, promotes, rolls
back, fetches and loads through ``http://``, then stops the server by PID and drops the database.
Without PostgreSQL (or psycopg v3) it skips and says why.
"""

from __future__ import annotations

import numpy as np
import pytest
from mlflow_process import MLFLOW, child_server, free_port, mlflow_env

from components.register_model.core import register
from serving.formats import load_model
from shipyard import registry
from shipyard.artifacts import read_dataset
from shipyard.errors import RegistryError
from shipyard.registry import CHALLENGER, CHAMPION, PREVIOUS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAME = "bc-pg"


@pytest.fixture
def tracking_server(scratch_postgres, tmp_path, monkeypatch):
    """``mlflow server`` on a scratch PostgreSQL database; yields its http:// URI."""
    for name in ("MLFLOW_TRACKING_URI", "SHIPYARD_MLFLOW_ARTIFACT_ROOT", "SHIPYARD_HOME", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    with scratch_postgres("shipyard_registry") as db:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        args = [MLFLOW, "server", "--backend-store-uri", db, "--artifacts-destination", str(tmp_path / "artifacts")]
        args += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        env = mlflow_env(db)
        with child_server(args, f"{url}/health", tmp_path / "mlflow-server.log", env, ready_s=240):
            yield url


def test_register_promote_rollback_fetch_and_load_through_a_tracking_server(
    tracking_server, baseline_artifacts, tmp_path, monkeypatch
):
    import mlflow

    uri = tracking_server
    first = register(str(baseline_artifacts["baseline"]), NAME, None, True, uri)
    second = register(
        str(baseline_artifacts["baseline"]), NAME, None, True, uri, example_dir=str(baseline_artifacts["test"])
    )
    assert (first["version"], second["version"]) == (1, 2) and second["alias"] == CHALLENGER
    assert second["source"].startswith("mlflow-artifacts:/"), "the server holds the artifacts"
    client = registry.client_for(uri)
    assert registry.fetch_model(uri, NAME, "@champion", str(tmp_path / "none")) is None, "no champion yet"

    registry.promote(client, NAME, 1)
    move = registry.promote(client, NAME, 2)
    assert (move.champion, move.previous) == (2, 1)
    assert registry.list_models(client) == [
        {"name": NAME, "versions": 2, "latest": 2, "aliases": {CHALLENGER: 2, CHAMPION: 2, PREVIOUS: 1}}
    ]

    fetched = registry.fetch_model(uri, NAME, "@champion", str(tmp_path / "champion"))
    assert fetched is not None and fetched.version == 2 and fetched.tags["shipyard.blessed"] == "true"
    df, _ = read_dataset(baseline_artifacts["test"])
    shipyard_model = load_model(fetched.path)
    rows = df[shipyard_model.manifest.feature_names].head(16)
    expected = shipyard_model.score_frame(rows)

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        got = mlflow.pyfunc.load_model(f"models:/{NAME}@{CHAMPION}").predict(rows)
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=0, atol=1e-12)

    back = registry.rollback(client, NAME)
    assert back.champion == 1 and "version 2 is no longer champion" in back.message
    again = registry.fetch_model(uri, NAME, "@champion", str(tmp_path / "after"))
    assert again is not None and again.version == 1
    with pytest.raises(RegistryError, match="has no version 5; its versions: 1..2"):
        registry.describe(client, NAME, "5")
