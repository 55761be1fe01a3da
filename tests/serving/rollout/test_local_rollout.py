"""Whole rollouts on this machine: two ``shipyard serve`` processes behind HAProxy, scraped by Prometheus.

A bounded load from a separate process (serving.rollout.load) goes through HAProxy while the driver
walks the policy's steps with the same PromQL as on a cluster. A good canary is promoted; a canary
answering 5xx, or slow, is rolled back at the failure threshold; the stable model's answers never
fail in either (counted from the load generator's per-server counts).
"""

from __future__ import annotations

import os

import pytest

from serving.rollout.load import LoadGenerator
from serving.rollout.local import LocalBackend
from serving.rollout.policy import RolloutPolicy
from serving.rollout.run import run_rollout
from shipyard.artifacts import read_dataset

pytestmark = [pytest.mark.serving, pytest.mark.slow]

NAME = "bc"
#: Short intervals (Prometheus scrapes every second); bounds generous enough for a loaded 2-core machine.
FAST = {"interval_s": 3, "min_requests": 5, "step_weights": [20, 50, 100], "max_inconclusive": 6, "ready_timeout_s": 60}
TOLERANT = {"p99_max_s": 2.0, "p99_max_ratio": 20.0}


@pytest.fixture(scope="module")
def body(baseline_artifacts) -> dict:
    df, _ = read_dataset(baseline_artifacts["test"])
    return {"instances": df.drop(columns=["target"]).head(4).to_numpy().tolist()}


def roll(tmp_path, model_dir, body, policy, canary_args=()):
    """Runs one rollout under load; returns (report, load counts, pids started)."""
    backend = LocalBackend(model_dir, model_dir, NAME, tmp_path / "rollout", canary_args=list(canary_args))
    try:
        backend.start()
        backend.wait_scraped()
        pids = backend.pids()
        load = LoadGenerator(
            backend.predict_url, body, tmp_path / "load", rate=40, duration_s=120, max_requests=4800, threads=8
        )
        with load:
            report = run_rollout(RolloutPolicy.from_dict(policy), backend, NAME, "classification")
            counts = load.stop()
    finally:
        backend.close()
    return report, counts, pids


def assert_stable_never_failed(counts):
    assert counts is not None and counts["connection_errors"] == 0, counts
    stable = counts["by_server"].get("stable", {})
    assert stable.get("2xx", 0) > 0 and set(stable) == {"2xx"}, counts["by_server"]


def assert_all_stopped(pids):
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_good_canary_is_promoted_through_every_step(tmp_path, rollout_tools, baseline_artifacts, body):
    report, counts, pids = roll(tmp_path, baseline_artifacts["baseline"], body, {**FAST, **TOLERANT})
    assert report.phase == "Succeeded", (report.reason, report.timeline)
    set_weights = [e["weight"] for e in report.timeline if e.get("decision", "").startswith("weight")]
    assert set_weights == [20, 50, 100]
    assert_stable_never_failed(counts)
    assert counts["by_server"]["canary"].get("2xx", 0) > 0
    assert_all_stopped(pids)


@pytest.mark.parametrize(
    ("canary_args", "policy", "failed_check"),
    [
        (["--fault-error-rate", "0.3"], {**FAST, **TOLERANT, "failure_threshold": 2}, "error-rate"),
        (["--fault-delay-ms", "700"], {**FAST, "p99_max_s": 0.5, "failure_threshold": 1}, "latency-p99"),
    ],
    ids=["errors", "slow"],
)
def test_a_bad_canary_is_rolled_back_and_stable_never_fails(
    tmp_path, rollout_tools, baseline_artifacts, body, canary_args, policy, failed_check
):
    report, counts, pids = roll(tmp_path, baseline_artifacts["baseline"], body, policy, canary_args)
    assert report.phase == "RolledBack", (report.reason, report.timeline)
    assert failed_check in report.reason
    figures = report.rollback_figures()
    assert figures is not None
    # rolled back at the analysis that reached the threshold: within one interval of it
    fails = [e["t_s"] for e in report.timeline if e.get("analysis", {}).get("outcome") == "fail"]
    assert len(fails) == policy["failure_threshold"]
    assert figures["weight_zero_s"] == fails[-1]
    assert_stable_never_failed(counts)
    assert_all_stopped(pids)


def test_a_deep_work_directory_keeps_the_runtime_socket_short(tmp_path, rollout_tools):
    """A KFP task directory is deeper than a unix socket path may be (108 bytes)."""
    from serving.rollout.haproxy import HAProxy
    from serving.rollout.processes import free_port

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    router = HAProxy(free_port(), free_port(), deep)
    assert len(str(router.socket_path)) <= 100 and not str(router.socket_path).startswith(str(tmp_path))
    with router:
        router.set_weight(30)
        assert router.weights() == {"stable": 70, "canary": 30}
        socket_dir = router.socket_path.parent
    assert not socket_dir.exists()
