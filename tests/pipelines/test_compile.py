"""Structural tests of the compiled flagship pipeline (KFP IR YAML)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FLAGSHIP_STAGES

from shipyard import images


def _compile(tmp: Path, env: dict[str, str] | None = None) -> dict:
    """The compiled flagship's pipeline spec (the first YAML document; the Kubernetes platform spec
    of ``shipyard.placement`` follows it, tested in test_placement.py)."""
    cmd = [sys.executable, "-m", "shipyard.cli", "compile", "--output", str(tmp)]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **(env or {})})
    return next(yaml.safe_load_all((tmp / "train_and_deploy.yaml").read_text()))


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _compile(tmp_path_factory.mktemp("compiled"))


def _all_tasks(ir: dict) -> dict[str, dict]:
    """Every task in every DAG (root, exit handler, condition), keyed by task name."""
    tasks = dict(ir["root"]["dag"]["tasks"])
    for comp in ir["components"].values():
        tasks.update(comp.get("dag", {}).get("tasks", {}))
    return tasks


def _dag_of(ir: dict, task: str) -> str:
    if task in ir["root"]["dag"]["tasks"]:
        return "root"
    return next(name for name, c in ir["components"].items() if task in c.get("dag", {}).get("tasks", {}))


def test_every_stage_present(ir):
    tasks = _all_tasks(ir)
    for stage in FLAGSHIP_STAGES:
        assert stage in tasks, f"{stage} missing from the compiled pipeline"


def test_dependencies(ir):
    tasks = _all_tasks(ir)
    assert "validate-data" in tasks["split-data"]["dependentTasks"]
    assert "tune-hyperparams" in tasks["train-model"]["dependentTasks"]
    assert {"quantize-model", "train-model", "split-data"} <= set(tasks["evaluate-model"]["dependentTasks"])


def test_deploy_sits_under_blessed_condition(ir):
    dag = _dag_of(ir, "deploy-model")
    assert dag.startswith("comp-condition"), f"deploy-model is in {dag}, not in a condition"
    condition_task = next(t for t in _all_tasks(ir).values() if t["componentRef"]["name"] == dag)
    cond = condition_task["triggerPolicy"]["condition"]
    assert "evaluate-model-Output" in cond and "true" in cond


def test_exit_handler_records_outcome(ir):
    outcome = ir["root"]["dag"]["tasks"]["record-outcome"]
    assert outcome["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert any(v.get("taskFinalStatus") for v in outcome["inputs"]["parameters"].values())
    assert _dag_of(ir, "ingest-data").startswith("comp-exit-handler")


def test_images_come_from_the_image_module(ir):
    executors = ir["deploymentSpec"]["executors"]
    assert executors, "no executors"
    for name, spec in executors.items():
        assert spec["container"]["image"] in images.ALL_IMAGES, f"{name} uses {spec['container']['image']}"
    train = executors["exec-train-model"]["container"]
    assert train["image"] == images.GPU_IMAGE
    assert executors["exec-ingest-data"]["container"]["image"] == images.CPU_IMAGE


def test_train_requests_a_gpu(ir):
    resources = ir["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    accelerator = resources["accelerator"]
    assert accelerator.get("resourceType", accelerator.get("type")) == "nvidia.com/gpu"
    assert str(accelerator.get("resourceCount", accelerator.get("count"))) == "1"


def test_train_gpus_zero_compiles_cpu_only(tmp_path):
    ir = _compile(tmp_path, {"SHIPYARD_TRAIN_GPUS": "0"})
    container = ir["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert "accelerator" not in container.get("resources", {})


def test_image_tag_override(tmp_path):
    ir = _compile(tmp_path, {"SHIPYARD_IMAGE_REGISTRY": "registry.example/ml", "SHIPYARD_IMAGE_TAG": "abc"})
    image = ir["deploymentSpec"]["executors"]["exec-ingest-data"]["container"]["image"]
    assert image == "registry.example/ml/shipyard:abc"


def test_roll_out_follows_deploy_and_register_in_the_blessed_branch(ir):
    dag = _dag_of(ir, "roll-out")
    assert dag == _dag_of(ir, "deploy-model")
    task = _all_tasks(ir)["roll-out"]
    assert "deploy-model" in task["dependentTasks"]
    condition = next(t for t in _all_tasks(ir).values() if t["componentRef"]["name"] == dag)
    assert "register-model" in condition["dependentTasks"]  # the version comes into the branch from register
    params = task["inputs"]["parameters"]
    assert params["version"]["componentInputParameter"].endswith("register-model-version")
    assert params["target"]["componentInputParameter"].endswith("deploy_target")
    assert params["options"]["componentInputParameter"].endswith("rollout")
    assert task["inputs"]["artifacts"]["deployment"]["taskOutputArtifact"]["producerTask"] == "deploy-model"


def test_caching_off_for_side_effects(ir):
    tasks = _all_tasks(ir)
    # evaluate-model reads the registry's champion, which is no input of the cache key
    for side_effect in (
        "ingest-data",
        "evaluate-model",
        "register-model",
        "deploy-model",
        "roll-out",
        "record-outcome",
    ):
        assert tasks[side_effect]["cachingOptions"].get("enableCache") is not True, side_effect
    for pure in ("validate-data", "split-data", "train-model"):
        assert tasks[pure]["cachingOptions"]["enableCache"] is True, pure


def test_retries_on_tune_and_train(ir):
    tasks = _all_tasks(ir)
    for name in ("tune-hyperparams", "train-model"):
        policy = tasks[name]["retryPolicy"]
        assert policy["maxRetryCount"] == 2
        assert policy["backoffDuration"] == "30s"
    assert "retryPolicy" not in tasks["deploy-model"]


def test_step_retries_zero_compiles_no_retry_policy(tmp_path):
    tasks = _all_tasks(_compile(tmp_path, {"SHIPYARD_STEP_RETRIES": "0"}))
    assert not [name for name, task in tasks.items() if "retryPolicy" in task]


def test_bad_step_retries_variable_is_one_line(tmp_path):
    cmd = [sys.executable, "-m", "shipyard.cli", "compile", "--output", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SHIPYARD_STEP_RETRIES": "-1"})
    assert proc.returncode != 0 and "SHIPYARD_STEP_RETRIES='-1'" in proc.stderr and "Traceback" not in proc.stderr


def test_model_name_defaults_to_derived_and_the_data_reaches_every_step_that_names_the_model(ir):
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert params["model_name"]["defaultValue"] == ""
    tasks = _all_tasks(ir)
    for name in ("evaluate-model", "register-model", "deploy-model", "record-outcome"):
        inputs = tasks[name]["inputs"]["parameters"]
        assert inputs["model_name"]["componentInputParameter"].endswith("model_name"), name
        assert inputs["data"]["componentInputParameter"] in ("data", "pipelinechannel--data"), name


def test_evaluate_and_register_share_the_registry(ir):
    tasks = _all_tasks(ir)
    for name in ("evaluate-model", "register-model", "train-model", "tune-hyperparams"):
        uri = tasks[name]["inputs"]["parameters"]["tracking_uri"]["componentInputParameter"]
        assert uri.endswith("mlflow_tracking_uri"), name
    assert tasks["register-model"]["inputs"]["parameters"]["model_card"]["componentInputParameter"].endswith(
        "model_card"
    )


def test_train_shows_its_curves_in_the_ui(ir):
    outputs = ir["components"]["comp-train-model"]["outputDefinitions"]["artifacts"]
    assert outputs["curves"]["artifactType"]["schemaTitle"] == "system.HTML"


def test_pipeline_parameters_have_defaults(ir):
    params = ir["root"]["inputDefinitions"]["parameters"]
    assert params["data"]["defaultValue"] == "sklearn:breast_cancer"
    assert params["deploy_target"]["defaultValue"] == "kubernetes"
    assert all("defaultValue" in p or p.get("isOptional") for p in params.values())
