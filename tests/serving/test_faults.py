"""Fault injection for rollout drills (``shipyard serve --fault-error-rate R --fault-delay-ms D``).

The pure parts (which request fails, the validation) are fast; the server is started once, over real HTTP.
"""

from __future__ import annotations

import time

import httpx
import pytest
from mixed_model import metric_samples

from serving.guard import INJECTED_FAULT, Faults, ServerState, ServingGuard, fails
from shipyard.artifacts import read_dataset
from shipyard.errors import ConfigError

NAME = "bc"


@pytest.mark.parametrize(
    ("rate", "failing"),
    [
        (0.0, []),
        (0.25, [4, 8, 12, 16, 20]),
        (0.5, [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]),
        (0.1, [10, 20]),
        (1.0, list(range(1, 21))),
        (0.3, [4, 7, 10, 14, 17, 20]),
    ],
)
def test_the_nth_request_fails_when_floor_n_r_steps(rate, failing):
    assert [n for n in range(1, 21) if fails(n, rate)] == failing


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2, 0.5, 0.77])
def test_every_window_fails_at_the_rate_to_within_one_request(rate):
    for start in (1, 17, 333):
        for size in (10, 100):
            failed = sum(fails(n, rate) for n in range(start, start + size))
            assert abs(failed - rate * size) <= 1


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"error_rate": 1.5}, "--fault-error-rate"),
        ({"error_rate": -0.1}, "--fault-error-rate"),
        ({"delay_ms": -1}, "--fault-delay-ms"),
        ({"delay_ms": 1e9}, "--fault-delay-ms"),
    ],
)
def test_out_of_range_faults_are_config_errors_naming_the_flag(kwargs, flag):
    with pytest.raises(ConfigError, match=flag):
        Faults(**kwargs)


def test_no_faults_cost_nothing_per_request():
    guard = ServingGuard(object(), 1024, ServerState(), faults=Faults())
    assert guard.faults is None  # inactive faults are dropped: the request path checks one attribute
    assert ServingGuard(object(), 1024, ServerState()).faults is None
    assert ServingGuard(object(), 1024, ServerState(), faults=Faults(delay_ms=5)).faults is not None


def test_the_cli_refuses_a_rate_outside_0_1(cli, baseline_artifacts):
    proc = cli("serve", str(baseline_artifacts["baseline"]), "--name", NAME, "--fault-error-rate", "2")
    assert proc.returncode == 2 and "--fault-error-rate must be in [0, 1]" in proc.stderr, proc.stderr


def test_the_serve_help_says_the_fault_flags_are_for_drills(cli):
    out = " ".join(cli("serve", "--help").stdout.split())
    assert "--fault-error-rate R" in out and "--fault-delay-ms D" in out and out.count("rollout drills only") == 2


@pytest.fixture(scope="module")
def body(baseline_artifacts) -> dict:
    df, _ = read_dataset(baseline_artifacts["test"])
    return {"instances": df.drop(columns=["target"]).head(2).to_numpy().tolist()}


@pytest.mark.serving
@pytest.mark.slow
def test_injected_errors_and_delays_are_answered_and_counted(baseline_artifacts, model_server, body):
    args = ["--fault-error-rate", "0.25", "--fault-delay-ms", "150"]
    with model_server(baseline_artifacts["baseline"], NAME, args=args) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            before = metric_samples(client.get("/metrics").text)
            statuses = []
            for n in range(1, 9):  # v1 and v2 alternate: both count towards n
                if n % 2:
                    r = client.post(f"/v1/models/{NAME}:predict", json=body)
                else:
                    v2 = {"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP64",
                                      "data": sum(body["instances"], [])}]}  # fmt: skip
                    r = client.post(f"/v2/models/{NAME}/infer", json=v2)
                statuses.append(r.status_code)
                if r.status_code == 500:
                    assert r.json() == {"error": INJECTED_FAULT}
                else:
                    assert r.status_code == 200, r.text
                # not inference: never failed, never delayed, not counted as the n-th
                assert client.get("/v2/health/ready").status_code == 200
            started = time.perf_counter()
            assert client.post(f"/v1/models/{NAME}:predict", json=body).status_code == 200  # the 9th
            waited = time.perf_counter() - started
            after = metric_samples(client.get("/metrics").text)

    assert statuses == [200, 200, 200, 500, 200, 200, 200, 500]
    assert waited >= 0.15  # a lower bound only: the delay is awaited before the answer

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta('shipyard_requests_total{route="v1_predict",status="200"}') == 5
    assert delta('shipyard_requests_total{route="v2_infer",status="200"}') == 2
    assert delta('shipyard_requests_total{route="v2_infer",status="500"}') == 2
    assert delta('shipyard_request_duration_seconds_count{route="v1_predict"}') == 5
    assert delta('shipyard_request_duration_seconds_sum{route="v2_infer"}') >= 4 * 0.15  # the delay is timed
    assert delta('shipyard_requests_total{route="v2_health_ready",status="200"}') == 8
