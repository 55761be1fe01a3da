"""Shared fixtures: real artifacts built once per session from scikit-learn's breast cancer data."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Ingested, split, trained (MLP + baseline) and quantized artifacts, built with the real cores."""
    from components.ingest_data import core as ingest
    from components.quantize_model import core as quantize
    from components.split_data import core as split
    from components.train_model import core as train

    root = tmp_path_factory.mktemp("artifacts")
    paths = {name: root / name for name in ("dataset", "train", "val", "test", "model", "baseline", "quantized")}
    ingest.ingest("sklearn:breast_cancer", str(paths["dataset"]), ingest.IngestConfig())
    split.split(str(paths["dataset"]), str(paths["train"]), str(paths["val"]), str(paths["test"]), split.SplitConfig())
    train.train(
        str(paths["train"]),
        str(paths["val"]),
        str(paths["model"]),
        str(paths["baseline"]),
        train.TrainConfig(max_epochs=60, patience=10),
    )
    quantize.quantize(
        str(paths["model"]),
        str(paths["val"]),
        str(paths["quantized"]),
        str(root / "q.json"),
        str(root / "q.md"),
        quantize.QuantizeConfig(latency_repeats=20),
    )
    return paths


@pytest.fixture
def copy_artifact(tmp_path: Path):
    """Copies a session artifact into the test's tmp dir (for tests that modify it)."""

    def copy(src: Path) -> Path:
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        return dst

    return copy


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Runs ``shipyard ARGS...`` in a fresh interpreter and returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def cli():
    """The :func:`run_cli` helper, as a fixture."""
    return run_cli


def postgres_available() -> bool:
    """True when PostgreSQL answers on 127.0.0.1:5432."""
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


#: The flagship's executor tasks, in pipeline order (the exit handler's record-outcome last).
FLAGSHIP_STAGES = (
    "ingest-data",
    "validate-data",
    "split-data",
    "tune-hyperparams",
    "train-model",
    "quantize-model",
    "evaluate-model",
    "register-model",
    "deploy-model",
    "record-outcome",
)

CRD_PATH = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "kserve-inferenceservice-crd.json"


@pytest.fixture(scope="session")
def isvc_schema() -> dict:
    """The InferenceService openAPIV3Schema from ../shared/schemas (skips when absent)."""
    import json

    path = Path(os.environ.get("SHIPYARD_ISVC_CRD", CRD_PATH))
    if not path.is_file():
        pytest.skip(f"KServe InferenceService CRD not found at {path}")
    crd = json.loads(path.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
