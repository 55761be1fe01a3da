"""Where tuning and training run on a cluster (shipyard.placement): the compiled YAML, structurally.

The settings are read from environment variables when the pipeline module is imported, so every
compile runs ``shipyard compile`` in a fresh interpreter with the variables (or flags) it tests,
from an environment without any of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from shipyard import placement
from shipyard.errors import ConfigError
from shipyard.placement import Placement, Retry, Toleration

SETTINGS = (
    placement.CPU_REQUEST,
    placement.CPU_LIMIT,
    placement.MEMORY_REQUEST,
    placement.MEMORY_LIMIT,
    placement.NODE_SELECTOR,
    placement.TOLERATIONS,
    placement.CHECKPOINT_PVC,
    placement.CHECKPOINT_MOUNT,
    placement.RETRY_BACKOFF,
    placement.RETRY_BACKOFF_FACTOR,
    placement.RETRY_MAX_DURATION,
    "SHIPYARD_TRAIN_GPUS",
    "SHIPYARD_ACCELERATOR_TYPE",
    "SHIPYARD_STEP_RETRIES",
)
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _environment(env: dict[str, str] | None = None) -> dict[str, str]:
    clean = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    return {**clean, **(env or {})}


def _shipyard_compile(
    tmp: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "shipyard.cli", "compile", "--output", str(tmp), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_environment(env))


class Compiled:
    """A compiled pipeline: its pipeline spec and its Kubernetes platform spec (empty when it has none)."""

    def __init__(self, path: Path):
        docs = list(yaml.safe_load_all(path.read_text()))
        assert len(docs) in (1, 2), f"{path}: {len(docs)} YAML documents"
        self.spec: dict[str, Any] = docs[0]
        self.platform: dict[str, Any] = docs[1] if len(docs) == 2 else {}

    def container(self, executor: str) -> dict[str, Any]:
        return self.spec["deploymentSpec"]["executors"][executor]["container"]

    def kubernetes(self, executor: str) -> dict[str, Any]:
        """The executor's Kubernetes settings ({} when the platform spec has none for it)."""
        executors = self.platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})
        return executors.get("executors", {}).get(executor, {})

    def task(self, name: str) -> dict[str, Any]:
        for component in [self.spec["root"], *self.spec["components"].values()]:
            tasks = component.get("dag", {}).get("tasks", {})
            if name in tasks:
                return tasks[name]
        raise AssertionError(f"no task {name}")


def _compiled(tmp: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> dict[str, Compiled]:
    proc = _shipyard_compile(tmp, env, args)
    assert proc.returncode == 0, proc.stderr
    return {path.stem: Compiled(path) for path in tmp.glob("*.yaml")}


def _resources(compiled: Compiled, executor: str) -> dict[str, Any]:
    resources = compiled.container(executor).get("resources", {})
    keys = ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit")
    return {key: resources[key] for key in keys if key in resources}


def _env(compiled: Compiled, executor: str) -> dict[str, str]:
    return {var["name"]: var["value"] for var in compiled.container(executor).get("env", [])}


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Compiled:
    return _compiled(tmp_path_factory.mktemp("default"), args=["--pipeline", "train_and_deploy"])["train_and_deploy"]


CONFIGURED = {
    placement.CPU_REQUEST: "1500m",
    placement.CPU_LIMIT: "4",
    placement.MEMORY_REQUEST: "12Gi",
    placement.MEMORY_LIMIT: "24Gi",
    placement.NODE_SELECTOR: '{"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "train"}',
    placement.TOLERATIONS: '[{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},'
    ' {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120}]',
    placement.CHECKPOINT_PVC: "train-checkpoints",
    placement.CHECKPOINT_MOUNT: "/ckpt",
    placement.RETRY_BACKOFF: "2m",
    placement.RETRY_BACKOFF_FACTOR: "3",
    placement.RETRY_MAX_DURATION: "2d",
    "SHIPYARD_TRAIN_GPUS": "2",
    "SHIPYARD_STEP_RETRIES": "4",
}


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Compiled]:
    return _compiled(tmp_path_factory.mktemp("configured"), CONFIGURED)


def test_default_resources_of_train_and_tune(default):
    expected = {
        "resourceCpuRequest": "2",
        "resourceCpuLimit": "8",
        "resourceMemoryRequest": "8Gi",
        "resourceMemoryLimit": "16Gi",
    }
    assert _resources(default, "exec-train-model") == expected
    assert _resources(default, "exec-tune-hyperparams") == expected
    accelerator = default.container("exec-train-model")["resources"]["accelerator"]
    assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", "1")
    assert "accelerator" not in default.container("exec-tune-hyperparams")["resources"]
    assert "resources" not in default.container("exec-ingest-data"), "only tune and train are sized"


def test_default_platform_spec_tolerates_the_gpu_taint_only(default):
    assert default.kubernetes("exec-train-model") == {"tolerations": [GPU_TOLERATION]}
    assert default.kubernetes("exec-tune-hyperparams") == {}, "tuning runs on the CPU image: not on GPU nodes"
    assert placement.CHECKPOINT_URI_ENV not in _env(default, "exec-train-model"), "no PVC, no checkpoint directory"


def test_default_retry_policy_has_backoff(default):
    for name in ("tune-hyperparams", "train-model"):
        assert default.task(name)["retryPolicy"] == {
            "maxRetryCount": 2,
            "backoffDuration": "30s",
            "backoffFactor": 2.0,
            "backoffMaxDuration": "86400s",
        }, name
    assert "retryPolicy" not in default.task("evaluate-model")


def test_configured_resources(configured):
    flagship = configured["train_and_deploy"]
    expected = {
        "resourceCpuRequest": "1500m",
        "resourceCpuLimit": "4",
        "resourceMemoryRequest": "12Gi",
        "resourceMemoryLimit": "24Gi",
    }
    assert _resources(flagship, "exec-train-model") == expected
    assert _resources(flagship, "exec-tune-hyperparams") == expected
    assert flagship.container("exec-train-model")["resources"]["accelerator"]["resourceCount"] == "2"


def test_configured_node_selector_tolerations_and_checkpoint_volume(configured):
    train = configured["train_and_deploy"].kubernetes("exec-train-model")
    assert train["nodeSelector"] == {"labels": {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "train"}}
    assert train["tolerations"] == [  # the given list replaces the GPU default
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": "120"},
    ]
    [mount] = train["pvcMount"]
    assert mount["mountPath"] == "/ckpt"
    assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "train-checkpoints"
    assert _env(configured["train_and_deploy"], "exec-train-model") == {placement.CHECKPOINT_URI_ENV: "/ckpt"}


def test_tuning_gets_no_gpu_placement_and_no_volume(configured):
    flagship = configured["train_and_deploy"]
    assert flagship.kubernetes("exec-tune-hyperparams") == {}
    assert placement.CHECKPOINT_URI_ENV not in _env(flagship, "exec-tune-hyperparams")


def test_configured_retry_policy(configured):
    for name in ("tune-hyperparams", "train-model"):
        assert configured["train_and_deploy"].task(name)["retryPolicy"] == {
            "maxRetryCount": 4,
            "backoffDuration": "120s",
            "backoffFactor": 3.0,
            "backoffMaxDuration": "172800s",
        }, name


def test_a_drift_retrain_is_placed_like_the_flagship(configured):
    drift = configured["drift_check"]
    train = drift.kubernetes("exec-train-model")
    assert train["pvcMount"][0]["mountPath"] == "/ckpt" and train["nodeSelector"]["labels"]["pool"] == "train"
    assert _resources(drift, "exec-train-model")["resourceMemoryLimit"] == "24Gi"


def test_flags_set_the_same_settings(tmp_path):
    flags = [
        "--pipeline",
        "train_and_deploy",
        "--train-cpu",
        "500m",
        "--train-memory",
        "4Gi:",
        "--node-selector",
        "pool=train",
        "--node-selector",
        "zone=a,disk=ssd",
        "--toleration",
        "nvidia.com/gpu:NoSchedule",
        "--toleration",
        "dedicated=ml",
        "--checkpoint-pvc",
        "ckpt",
        "--checkpoint-mount",
        "/var/ckpt",
        "--retry-backoff",
        "1h",
        "--retry-backoff-factor",
        "1.5",
        "--retry-max-duration",
        "1w",
        "--accelerator-type",
        "amd.com/gpu",
    ]
    flagship = _compiled(tmp_path, {placement.CPU_LIMIT: "64"}, flags)["train_and_deploy"]
    # one value is the request and the limit (the flag wins over the variable); "4Gi:" sets no limit
    assert _resources(flagship, "exec-train-model") == {
        "resourceCpuRequest": "500m",
        "resourceCpuLimit": "500m",
        "resourceMemoryRequest": "4Gi",
    }
    assert flagship.container("exec-train-model")["resources"]["accelerator"]["resourceType"] == "amd.com/gpu"
    train = flagship.kubernetes("exec-train-model")
    assert train["nodeSelector"]["labels"] == {"pool": "train", "zone": "a", "disk": "ssd"}
    assert train["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "ml"},
    ]
    assert train["pvcMount"][0]["mountPath"] == "/var/ckpt"
    assert _env(flagship, "exec-train-model") == {placement.CHECKPOINT_URI_ENV: "/var/ckpt"}
    policy = flagship.task("train-model")["retryPolicy"]
    assert (policy["backoffDuration"], policy["backoffFactor"], policy["backoffMaxDuration"]) == (
        "3600s",
        1.5,
        "604800s",
    )


def test_cpu_only_and_empty_settings_compile_no_platform_spec(tmp_path):
    env = {"SHIPYARD_TRAIN_GPUS": "0", placement.CPU_LIMIT: "", placement.MEMORY_REQUEST: ""}
    flagship = _compiled(tmp_path, env, ["--pipeline", "train_and_deploy"])["train_and_deploy"]
    assert _resources(flagship, "exec-train-model") == {"resourceCpuRequest": "2", "resourceMemoryLimit": "16Gi"}
    assert "accelerator" not in flagship.container("exec-train-model")["resources"]
    assert flagship.platform == {}, "no GPU: no default toleration, so nothing for Kubernetes"


def test_gpu_toleration_follows_the_accelerator_and_an_empty_list_drops_it(tmp_path):
    amd = _compiled(tmp_path / "amd", {"SHIPYARD_ACCELERATOR_TYPE": "amd.com/gpu"}, ["--pipeline", "train_and_deploy"])
    assert amd["train_and_deploy"].kubernetes("exec-train-model")["tolerations"] == [
        {**GPU_TOLERATION, "key": "amd.com/gpu"}
    ]
    none = _compiled(tmp_path / "none", args=["--pipeline", "train_and_deploy", "--toleration", "[]"])
    assert none["train_and_deploy"].platform == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {placement.MEMORY_LIMIT: "12X"},
            "SHIPYARD_TRAIN_MEMORY_LIMIT='12X': expected a Kubernetes quantity like 16Gi",
        ),
        (
            {placement.CPU_REQUEST: "16"},
            "SHIPYARD_TRAIN_CPU_REQUEST='16' exceeds SHIPYARD_TRAIN_CPU_LIMIT='8': a request must not exceed its limit",
        ),
        ({placement.TOLERATIONS: '[{"key": "a", "effect": "Sometimes"}]'}, "SHIPYARD_TRAIN_TOLERATIONS="),
        (
            {placement.CHECKPOINT_PVC: "My_PVC"},
            "SHIPYARD_CHECKPOINT_PVC='My_PVC': expected a PersistentVolumeClaim name",
        ),
        ({placement.RETRY_BACKOFF: "soon"}, "SHIPYARD_RETRY_BACKOFF='soon': expected a duration like 30s"),
    ],
)
def test_bad_variable_is_one_line_naming_it(tmp_path, env, message):
    proc = _shipyard_compile(tmp_path, env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert message in proc.stderr
    assert not list(tmp_path.glob("*.yaml")), "nothing is compiled with a bad setting"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-memory", "16Gi:8Gi"], "argument --train-memory: '16Gi:8Gi': the request 16Gi exceeds the limit 8Gi"),
        (["--train-cpu", "two"], "argument --train-cpu: 'two': expected a CPU quantity"),
        (["--toleration", "dedicated=ml:Never"], "argument --toleration: 'dedicated=ml:Never': toleration 0:"),
        (["--node-selector", "pool"], "argument --node-selector: 'pool'"),
        (["--checkpoint-mount", "ckpt"], "argument --checkpoint-mount: 'ckpt': expected an absolute path"),
        (["--retry-backoff-factor", "0.5"], "argument --retry-backoff-factor: expected a number >= 1"),
    ],
)
def test_bad_flag_is_a_usage_error(tmp_path, args, message):
    proc = _shipyard_compile(tmp_path, args=args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert message in proc.stderr


# The parsers and checks themselves, in this process.


def test_quantities_compare_across_units():
    assert placement.cpu_quantity("500m") == Decimal("0.5") == placement.cpu_quantity("0.5")
    assert placement.memory_quantity("1Gi") == 1024**3 and placement.memory_quantity("2G") == 2 * 10**9
    Placement(memory_request="1Gi", memory_limit="1100M").validate()  # 1073741824 <= 1100000000
    with pytest.raises(ConfigError, match="SHIPYARD_TRAIN_MEMORY_REQUEST='2G' exceeds"):
        Placement(memory_request="2G", memory_limit="1Gi").validate()
    with pytest.raises(ConfigError, match="SHIPYARD_TRAIN_CPU_REQUEST='1500m' exceeds SHIPYARD_TRAIN_CPU_LIMIT='1'"):
        Placement(cpu_request="1500m", cpu_limit="1").validate()


@pytest.mark.parametrize("bad", ["0", "0m", "1.5m", "-1", "2 cpu", ""])
def test_bad_cpu_quantities(bad):
    with pytest.raises(ConfigError, match="expected a CPU quantity"):
        placement.cpu_quantity(bad)


@pytest.mark.parametrize("bad", ["0Gi", "1.5Gi", "16K", "16k", "16gb", "Gi"])
def test_bad_memory_quantities(bad):
    with pytest.raises(ConfigError, match="expected a Kubernetes quantity like 16Gi"):
        placement.memory_quantity(bad)


def test_short_tolerations_read_like_kubectl_taint():
    assert placement.parse_tolerations("nvidia.com/gpu:NoSchedule, dedicated=ml, spot") == (
        Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
        Toleration(key="dedicated", operator="Equal", value="ml"),
        Toleration(key="spot", operator="Exists"),
    )
    assert placement.parse_tolerations('{"operator": "Exists"}') == (Toleration(operator="Exists"),)
    assert placement.parse_tolerations("[]") == () == placement.parse_tolerations("")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"key": "a", "operatr": "Exists"}]', "toleration 0: unknown toleration field(s) ['operatr']"),
        ('[{"operator": "Equal", "value": "x"}]', "without a key matches every taint and needs operator Exists"),
        ('[{"key": "a", "operator": "Exists", "value": "x"}]', "an Exists toleration matches every value"),
        ('[{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 5}]', "applies to the NoExecute effect only"),
        ('[{"key": "a", "tolerationSeconds": "5"}]', "tolerationSeconds must be a whole number"),
        ('[{"key": "a b"}]', "'a b' is not a Kubernetes label key"),
        ("a=b:", "expected key[=value][:Effect]"),
        ("ok, =x", "toleration 1:"),
        ("[{", "not valid JSON"),
    ],
)
def test_bad_tolerations(text, message):
    with pytest.raises(ConfigError) as raised:
        placement.parse_tolerations(text)
    assert message in str(raised.value)


def test_node_selector_forms():
    assert placement.parse_node_selector("pool=gpu, zone=a") == {"pool": "gpu", "zone": "a"}
    assert placement.parse_node_selector('{"example.com/tier": ""}') == {"example.com/tier": ""}
    for bad, message in (
        ("pool", "expected key=value"),
        ('{"pool": 1}', "string labels"),
        ("pool=-gpu", "not a Kubernetes label value"),
        ("Bad_Prefix/pool=x", "not a Kubernetes label key"),
    ):
        with pytest.raises(ConfigError, match=message):
            placement.parse_node_selector(bad)


def test_from_env_names_the_variable_and_defaults_follow_the_gpu_count():
    given = Placement.from_env({placement.NODE_SELECTOR: "pool=train", placement.CHECKPOINT_PVC: "ckpt"})
    assert given.node_selector == {"pool": "train"} and given.checkpoint_pvc == "ckpt"
    assert given.checkpoint_mount == "/mnt/checkpoints"
    from shipyard import images

    expected = (Toleration(key=images.ACCELERATOR_TYPE, operator="Exists", effect="NoSchedule"),)
    assert given.tolerations == (expected if images.TRAIN_GPUS else ())
    assert Placement.from_env({placement.TOLERATIONS: ""}).tolerations == ()
    for env, message in (
        ({placement.CHECKPOINT_MOUNT: "/mnt/../etc"}, "SHIPYARD_CHECKPOINT_MOUNT='/mnt/../etc': expected an absolute"),
        ({placement.NODE_SELECTOR: "{"}, "SHIPYARD_TRAIN_NODE_SELECTOR='{': not valid JSON"),
        ({placement.CPU_LIMIT: "8cpus"}, "SHIPYARD_TRAIN_CPU_LIMIT='8cpus': expected a CPU quantity"),
    ):
        with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("{", r"\{")):
            Placement.from_env(env)


def test_retry_from_env():
    assert Retry.from_env({}).kwargs()["backoff_max_duration"] == "24h"
    retry = Retry.from_env({placement.RETRY_BACKOFF: "0s", placement.RETRY_BACKOFF_FACTOR: "1"})
    assert (retry.backoff, retry.backoff_factor) == ("0s", 1.0)
    for env, message in (
        ({placement.RETRY_BACKOFF_FACTOR: "0.9"}, "SHIPYARD_RETRY_BACKOFF_FACTOR=0.9: expected a number >= 1"),
        ({placement.RETRY_BACKOFF_FACTOR: "nan"}, "SHIPYARD_RETRY_BACKOFF_FACTOR=nan"),
        ({placement.RETRY_MAX_DURATION: "0h"}, "SHIPYARD_RETRY_MAX_DURATION='0h': expected a duration above 0"),
        ({placement.RETRY_MAX_DURATION: "1 hour"}, "SHIPYARD_RETRY_MAX_DURATION='1 hour': expected a duration"),
    ):
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            Retry.from_env(env)


ROOT = Path(__file__).resolve().parents[2]
_LOCAL_ENV = """
import json
from shipyard import localrun
import pipelines
pipeline = pipelines.load("train_and_deploy")
from google.protobuf import json_format
def envs(p):
    executors = json_format.MessageToDict(p.pipeline_spec.deployment_spec)["executors"]
    return {k: [e["name"] for e in v["container"].get("env", [])] for k, v in executors.items()}
print(json.dumps([envs(pipeline), envs(localrun.without_checkpoint_volume(pipeline))]))
"""


def test_a_local_run_drops_the_checkpoint_mount_path_kfp_local_cannot_mount():
    """kfp.local passes a step's environment on but mounts no volume: the local copy of a pipeline
    compiled with a PVC has no $SHIPYARD_CHECKPOINT_URI, the compiled one keeps it."""
    import json

    env = _environment({placement.CHECKPOINT_PVC: "ckpt"})
    proc = subprocess.run([sys.executable, "-c", _LOCAL_ENV], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    compiled, local = json.loads(proc.stdout)
    assert placement.CHECKPOINT_URI_ENV in compiled["exec-train-model"]
    assert all(placement.CHECKPOINT_URI_ENV not in names for names in local.values())
