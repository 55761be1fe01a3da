"""The flagship under kfp.local with Optuna and MLflow in one PostgreSQL database, each in its own schema.

Checks what issue 9 met: registration works beside the Optuna storage, each library keeps its
alembic_version in its own schema, and the MLflow artifacts land under --output, not in ./mlruns
of the current directory. Kept short: 2 trials of 5 epochs, two quantized variants, deploy rendered.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from scratch_postgres import alembic_version, in_schema, tables

from shipyard.registry import SHIPYARD_SUBDIR

pytestmark = [pytest.mark.local, pytest.mark.integration, pytest.mark.slow]


def test_optuna_and_mlflow_share_one_database_in_a_local_run(tmp_path, local_cli, scratch_postgres):
    import optuna
    from mlflow.tracking import MlflowClient

    with scratch_postgres("shipyard_flagship") as db:
        storage, tracking = in_schema(db, "optuna"), in_schema(db, "mlflow")
        out, cwd = tmp_path / "out", tmp_path / "cwd"
        cwd.mkdir()
        tune = {"storage": storage, "study_name": "bc", "n_trials": 2, "base": {"max_epochs": 5, "patience": 2}}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SHIPYARD_MLFLOW"))}
        proc = local_cli(
            *["run", "train_and_deploy", "--local", "--output", str(out)],
            *["--set", f"mlflow_tracking_uri={tracking}", "--set", f"tune={json.dumps(tune)}"],
            *["--set", 'quantize={"variants": ["fp32-onnx"], "latency_repeats": 5}', "--set", "deploy_target=render"],
            *["--set", "model_name=bc-pg"],
            cwd=cwd,
            env=env,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

        version = MlflowClient(tracking).get_model_version("bc-pg", "1")
        source = Path(unquote(urlparse(version.source).path))
        assert source.is_relative_to((out / "mlartifacts").resolve())
        assert (source / SHIPYARD_SUBDIR / "model.json").is_file()  # the Shipyard artifact inside the MLflow Model
        assert list(cwd.iterdir()) == [], "nothing written to the current directory (no ./mlruns)"
        assert len(optuna.load_study(study_name="bc", storage=storage).trials) == 2
        found = tables(db)
        assert set(found) == {"optuna", "mlflow"}, "nothing in public"
        assert alembic_version(db, "optuna") == ["v3.2.0.a"]
        assert alembic_version(db, "mlflow") and alembic_version(db, "mlflow") != ["v3.2.0.a"]
