"""What `shipyard run` rejects before any step runs, the model name a run gets, and local runs without retries."""

from __future__ import annotations

import pytest

import pipelines
from shipyard.errors import ConfigError


def _one_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_cuda_on_a_machine_without_cuda_is_refused_before_any_step(tmp_path, cli):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: a local run with device 'cuda' is valid here")
    out = tmp_path / "out"
    proc = cli("run", "train_and_deploy", "--local", "--output", str(out), "--set", 'train={"device": "cuda"}')
    assert proc.returncode == 2
    line = _one_line(proc)
    assert "device 'cuda'" in line and "no CUDA device" in line and "'auto' or 'cpu'" in line
    assert "running" not in proc.stdout and not (out / "artifacts").exists()


def test_cuda_for_a_cluster_run_compiled_without_a_gpu_is_refused_before_submitting(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("SHIPYARD_TRAIN_GPUS", "0")
    # Port 1 answers nothing: reaching the submission would fail differently (and not with exit 2).
    proc = cli("run", "train_and_deploy", "--host", "http://127.0.0.1:1", "--set", 'train={"device": "cuda"}')
    assert proc.returncode == 2
    assert "requests no GPU" in _one_line(proc) and "SHIPYARD_TRAIN_GPUS=0" in proc.stderr


def test_a_model_name_that_is_not_a_url_segment_is_refused_before_any_step(tmp_path, cli):
    out = tmp_path / "out"
    proc = cli("run", "train_and_deploy", "--local", "--output", str(out), "--set", "model_name=team/churn")
    assert proc.returncode == 2
    assert "model_name 'team/churn'" in _one_line(proc) and not (out / "artifacts").exists()


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("train_and_deploy", {}, "breast-cancer"),
        ("train_and_deploy", {"data": "sklearn:diabetes"}, "diabetes"),
        ("train_and_deploy", {"data": "gs://b/x/Churn Export.csv"}, "churn-export"),
        ("train_and_deploy", {"data": "sklearn:diabetes", "model_name": "glucose"}, "glucose"),
        ("drift_check", {"current_data": "/data/2025-06/orders.parquet", "reference_uri": "x"}, "orders"),
        ("drift_check", {"reference_uri": "x"}, None),  # current_data is required: nothing to derive yet
    ],
)
def test_the_model_name_of_a_run(name, arguments, expected):
    assert pipelines.model_name(name, arguments) == expected


def test_preflight_checks_the_options_too():
    with pytest.raises(ConfigError, match="n_trialz"):
        pipelines.preflight("train_and_deploy", {"tune": {"n_trialz": 3}}, local=True)
    assert pipelines.preflight("train_and_deploy", {"train": {"device": "cpu"}}, local=True) == "breast-cancer"


def test_a_local_run_drops_the_retry_policies_and_leaves_the_pipeline_as_compiled():
    from shipyard import localrun

    pipeline = pipelines.load("drift_check")  # the nested flagship holds the retried steps

    def retried(p) -> set[str]:
        spec = p.pipeline_spec
        dags = [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]
        return {name for dag in dags for name, task in dag.tasks.items() if task.HasField("retry_policy")}

    assert retried(pipeline) == {"tune-hyperparams", "train-model"}
    assert retried(localrun.without_retries(pipeline)) == set()
    assert retried(pipeline) == {"tune-hyperparams", "train-model"}


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("train_and_deploy", {"data": "s3://bucket/churn.csv"}),
        ("drift_check", {"current_data": "https://example.com/x.csv", "reference_uri": "r"}),
    ],
)
def test_preflight_refuses_a_data_uri_of_an_unsupported_scheme(name, arguments):
    scheme = next(iter(arguments.values())).split(":")[0]
    with pytest.raises(ConfigError, match=rf"{scheme}://.*sklearn:NAME"):
        pipelines.preflight(name, arguments, local=True)


def test_preflight_refuses_optuna_and_mlflow_in_one_database_schema():
    url = "postgresql://postgres@127.0.0.1:5432/test"  # judged from the URLs: nothing connects
    with pytest.raises(ConfigError, match="same schema"):
        pipelines.preflight("train_and_deploy", {"tune": {"storage": url}, "mlflow_tracking_uri": url}, local=True)


def test_cuda_for_the_tuning_trials_is_refused_where_the_tune_step_gets_no_gpu():
    """tune={"base": {"device": "cuda"}}: the tune step never requests a GPU on a cluster, and a local
    run needs CUDA on this machine."""
    arguments = {"tune": {"base": {"device": "cuda"}}}
    with pytest.raises(ConfigError, match=r"^tune\.base: device 'cuda' requested but the tuning step requests no GPU"):
        pipelines.preflight("train_and_deploy", arguments, local=False)
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"^tune\.base: device 'cuda' requested but no CUDA device"):
            pipelines.preflight("train_and_deploy", arguments, local=True)
