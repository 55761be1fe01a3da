"""roll_out against a real MLflow registry (SQLite): the first version, render, bad input, and a
rehearsed rollback with real HAProxy and Prometheus (the canary answers 500 for half its requests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.register_model.core import register
from components.roll_out.core import RollOutConfig, roll_out
from shipyard.errors import ConfigError, RegistryError, RolloutAbortedError

NAME = "bc"
FAST = {"interval_s": 3, "min_requests": 5, "step_weights": [20, 50, 100], "max_inconclusive": 6}


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(None)


def _register(model: Path, store: str, tmp_path: Path) -> int:
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"blessed": True, "metrics": {"roc_auc": 0.99}}))
    return int(register(str(model), NAME, str(evaluation), True, store)["version"])


def _deployment(tmp_path: Path, target: str) -> Path:
    d = tmp_path / f"deployment-{target}"
    d.mkdir(exist_ok=True)
    (d / "result.json").write_text(json.dumps({"target": target, "service": NAME}))
    return d


def _roll(tmp_path, baseline_artifacts, store, version, target="local", tag="r", **options):
    return roll_out(
        str(baseline_artifacts["baseline"]),
        str(baseline_artifacts["test"]),
        str(_deployment(tmp_path, target)),
        NAME,
        version,
        store,
        str(tmp_path / tag),
        str(tmp_path / f"{tag}.html"),
        RollOutConfig.from_dict({"target": target, **options}),
    )


def _client(store: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(store, registry_uri=store)


def test_the_first_version_is_promoted_without_a_canary_and_the_report_is_kept(tmp_path, baseline_artifacts, store):
    version = _register(baseline_artifacts["baseline"], store, tmp_path)
    result = _roll(tmp_path, baseline_artifacts, store, version)
    assert result["phase"] == "Succeeded" and result["champion"] == version
    assert "no @champion yet" in result["reason"]
    client = _client(store)
    assert int(client.get_model_version_by_alias(NAME, "champion").version) == version
    mv = client.get_model_version(NAME, str(version))
    assert mv.tags["shipyard.rollout"] == "Succeeded"
    assert {f.path for f in client.list_artifacts(mv.run_id, "reports")} >= {
        "reports/rollout.json",
        "reports/rollout.html",
    }
    report = json.loads((tmp_path / "r" / "rollout.json").read_text())
    assert report["version"] == str(version) and report["phase"] == "Succeeded"
    assert "Succeeded" in (tmp_path / "r.html").read_text()
    # a second roll-out of the champion itself changes nothing
    again = _roll(tmp_path, baseline_artifacts, store, version, tag="again")
    assert again["phase"] == "Succeeded" and "already @champion" in again["reason"]


def test_render_rolls_nothing_out_and_moves_no_alias(tmp_path, baseline_artifacts, store):
    version = _register(baseline_artifacts["baseline"], store, tmp_path)
    result = _roll(tmp_path, baseline_artifacts, store, version, target="render")
    assert result["phase"] == "Skipped"
    assert "champion" not in (_client(store).get_registered_model(NAME).aliases or {})


def test_bad_input_is_refused_before_anything_runs(tmp_path, baseline_artifacts, store):
    version = _register(baseline_artifacts["baseline"], store, tmp_path)
    with pytest.raises(RegistryError, match="version 9"):
        _roll(tmp_path, baseline_artifacts, store, 9)
    deployed_render = _deployment(tmp_path, "render")
    with pytest.raises(ConfigError, match="deployed with target 'render'"):
        roll_out(
            str(baseline_artifacts["baseline"]),
            str(baseline_artifacts["test"]),
            str(deployed_render),
            NAME,
            version,
            store,
            str(tmp_path / "x"),
            str(tmp_path / "x.html"),
            RollOutConfig.from_dict({"target": "local"}),
        )


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"policy": {"interval_s": 0}}, "interval_s"),
        ({"policy": {"nope": 1}}, "'nope'"),
        ({"canary_faults": {"rate": 1}}, "canary_faults: unknown key(s) ['rate']"),
        ({"canary_faults": {"error_rate": -1}}, "canary_faults.error_rate must be a number >= 0"),
        ({"mode": "knative"}, "mode must be serverless or raw"),
        ({"prometheus_url": "prometheus:9090"}, "prometheus_url must be http://"),
        ({"load_rate": 0}, "load_rate must be > 0"),
    ],
)
def test_options_are_checked_up_front(options, fragment):
    with pytest.raises(ConfigError) as exc:
        RollOutConfig.from_dict(options)
    assert fragment in str(exc.value)


@pytest.mark.serving
@pytest.mark.slow
def test_a_rehearsed_bad_canary_is_rolled_back_and_the_champion_stays(
    tmp_path, baseline_artifacts, store, rollout_tools
):
    first = _register(baseline_artifacts["baseline"], store, tmp_path)
    _roll(tmp_path, baseline_artifacts, store, first, tag="first")  # the champion
    second = _register(baseline_artifacts["baseline"], store, tmp_path)
    options = {
        "policy": {**FAST, "p99_max_s": 2.0, "p99_max_ratio": 20.0, "failure_threshold": 2},
        "canary_faults": {"error_rate": 0.5},
    }
    with pytest.raises(RolloutAbortedError) as exc:
        _roll(tmp_path, baseline_artifacts, store, second, tag="second", **options)
    assert f"version {second}: RolledBack" in str(exc.value) and f"stays version {first}" in str(exc.value)
    client = _client(store)
    assert int(client.get_model_version_by_alias(NAME, "champion").version) == first
    assert client.get_model_version(NAME, str(second)).tags["shipyard.rollout"] == "RolledBack"
    report = json.loads((tmp_path / "second" / "rollout.json").read_text())
    assert report["phase"] == "RolledBack" and "error-rate" in report["reason"]
    assert report["rollback"]["weight_zero_s"] >= report["rollback"]["first_failed_interval_s"]
    load = json.loads((tmp_path / "second" / "load.json").read_text())
    assert set(load["by_server"]["stable"]) == {"2xx"} and load["connection_errors"] == 0
    assert load["by_server"]["canary"].get("5xx", 0) > 0


def test_a_raw_canary_is_the_model_deploy_published():
    from components.roll_out.core import raw_canary

    deployed = {"target": "kubernetes", "service": "bc", "storage_uri": "gs://b/m", "model_format": "onnx"}
    assert raw_canary(deployed) == {"storage_uri": "gs://b/m", "model_format": "onnx"}
    with pytest.raises(ConfigError, match="mode 'raw' needs deploy_model's storage_uri and model_format"):
        raw_canary({"target": "local", "service": "bc"})
