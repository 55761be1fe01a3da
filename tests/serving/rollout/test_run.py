"""The rollout driver (serving.rollout.run) over a scripted backend and a fake clock.

The backend here answers the policy's real PromQL (rendered by the driver) from a script of
per-interval figures, so the driver's querying, waiting, webhooks, operator commands, failure
handling and report run for real without processes; tests/serving/rollout/test_local_rollout.py
runs the same driver against HAProxy and Prometheus.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from serving.rollout.backend import Sample
from serving.rollout.policy import RolloutPolicy
from serving.rollout.report import RolloutReport
from serving.rollout.run import run_rollout
from shipyard.errors import DeploymentError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


class ScriptedBackend:
    """Answers queries from ``script``: one dict per analysed interval (error rate, p99, classes, requests)."""

    description = "scripted"

    def __init__(self, clock: Clock, script: list[dict[str, Any]], interval_s: float, **faults: Any):
        self.clock, self.script, self.interval_s = clock, script, interval_s
        self.calls: list[Any] = []
        self.commands: dict[int, str] = faults.pop("commands", {})
        self.fail_on = faults.pop("fail_on", None)
        self.ready = faults.pop("ready", True)
        self.states: list[dict[str, Any]] = []

    def _interval(self) -> dict[str, Any]:
        index = max(int(self.clock.now // self.interval_s) - 1, 0)
        return self.script[min(index, len(self.script) - 1)]

    def start(self) -> None:
        self.calls.append("start")

    def canary_ready(self) -> bool:
        return self.ready

    def set_weight(self, weight: int) -> None:
        if self.fail_on == ("set_weight", weight):
            raise DeploymentError(f"weight {weight} refused")
        if self.fail_on == ("crash", weight):  # not a backend's typed failure: a dropped connection
            raise ConnectionResetError(f"connection reset at weight {weight}")
        self.calls.append(("weight", weight))

    def selector(self, side: str) -> str:
        return f'job="shipyard-{side}"'

    def query(self, promql: str) -> list[Sample]:
        side = "canary" if 'job="shipyard-canary"' in promql else "stable"
        figures = self._interval()
        if side == "stable":  # a healthy stable model, unless the script says otherwise
            figures = {
                "errors": 0.0,
                "p99": 0.05,
                "classes": {"0": 40, "1": 60},
                "requests": 100,
                **figures.get("stable", {}),
            }
        if 'status=~"5.."' in promql:
            return [Sample({}, figures["errors"])]
        if "histogram_quantile" in promql:
            return [Sample({}, figures["p99"])]
        if "shipyard_predictions_total" in promql:
            return [Sample({"label": k}, float(v)) for k, v in figures["classes"].items()]
        return [] if figures["requests"] is None else [Sample({}, float(figures["requests"]))]

    def promote(self) -> None:
        self.calls.append("promote")

    def rollback(self) -> None:
        self.calls.append("rollback")

    def publish(self, state: dict[str, Any]) -> None:
        self.states.append(state)

    def read_state(self) -> dict[str, Any] | None:
        return self.states[-1] if self.states else None

    def command(self) -> str | None:
        return self.commands.pop(int(self.clock.now), None)

    def send_command(self, command: str) -> None:
        self.commands[int(self.clock.now)] = command

    def close(self) -> None:
        self.calls.append("close")


GOOD = {"errors": 0.0, "p99": 0.06, "classes": {"0": 41, "1": 59}, "requests": 100}
BAD = {**GOOD, "errors": 0.2}
QUIET = {**GOOD, "requests": 2}


_last_backend: list[ScriptedBackend] = []


def rollout(script, policy=None, **faults):
    clock = Clock()
    policy = RolloutPolicy.from_dict({"interval_s": 10, **(policy or {})})
    backend = ScriptedBackend(clock, script, policy.interval_s, **faults)
    _last_backend[:] = [backend]
    posted: list[tuple[str, dict]] = []
    answers = faults.get("answers", {})

    def post(url: str, payload: dict, timeout_s: float) -> tuple[bool, str]:
        posted.append((url, payload))
        ok = answers.get(url, [True]).pop(0) if answers.get(url) else True
        return ok, "HTTP 200" if ok else "HTTP 403 Forbidden"

    report = run_rollout(policy, backend, "bc", "classification", clock=clock, sleep=clock.sleep, post=post)
    return report, backend, posted


def weights(backend: ScriptedBackend) -> list[int]:
    return [c[1] for c in backend.calls if isinstance(c, tuple) and c[0] == "weight"]


def test_a_good_canary_walks_every_step_and_is_promoted():
    report, backend, _ = rollout([GOOD])
    assert weights(backend) == [5, 10, 25, 50, 100]
    assert backend.calls[-1] == "promote" and "rollback" not in backend.calls
    assert report.phase == "Succeeded" and report.weight == 100
    assert report.duration_s == 50  # five intervals of 10 s on the fake clock
    analyses = [e for e in report.timeline if "analysis" in e]
    assert [a["analysis"]["outcome"] for a in analyses] == ["pass"] * 5
    assert {r["name"] for r in analyses[0]["analysis"]["results"]} == {
        "error-rate",
        "latency-p99",
        "latency-p99-vs-stable",
        "prediction-distance",
    }
    assert backend.states[-1]["phase"] == "Succeeded" and backend.states[-1]["model"] == "bc"
    assert report.rollback_figures() is None


def test_a_failing_canary_is_rolled_back_at_the_failure_threshold_and_the_report_times_it():
    report, backend, _ = rollout([GOOD, BAD, GOOD, BAD], {"failure_threshold": 2})
    assert report.phase == "RolledBack" and report.weight == 0
    assert "error-rate 0.2 > 0.01" in report.reason
    assert backend.calls[-1] == "rollback" and "promote" not in backend.calls
    assert weights(backend) == [5, 10, 25]  # pass at 5, fail at 10, pass at 10, fail at 25 → back
    figures = report.rollback_figures()
    assert figures == {"first_failed_interval_s": 20.0, "weight_zero_s": 40.0, "seconds_to_weight_zero": 20.0}


def test_too_little_traffic_waits_and_then_fails_the_rollout():
    report, backend, _ = rollout([QUIET], {"max_inconclusive": 3, "min_requests": 10})
    assert report.phase == "Failed" and "inconclusive" in report.reason
    assert weights(backend) == [5] and backend.calls[-1] == "rollback"
    outcomes = [e["analysis"]["outcome"] for e in report.timeline if "analysis" in e]
    assert outcomes == ["inconclusive"] * 3


def test_an_operator_abort_in_an_interval_rolls_back_at_once():
    report, backend, _ = rollout([GOOD], commands={25: "abort"})
    assert report.phase == "RolledBack" and report.reason == "aborted by the operator"
    assert report.duration_s == 25  # the command is read within the interval, not after it
    assert backend.calls[-1] == "rollback"


def test_an_operator_promote_skips_the_remaining_steps():
    report, backend, _ = rollout([GOOD], commands={12: "promote"})
    assert report.phase == "Succeeded" and weights(backend) == [5, 10]
    assert backend.calls[-1] == "promote"


def test_a_backend_failure_fails_the_rollout_and_rolls_back():
    report, backend, _ = rollout([GOOD], fail_on=("set_weight", 25))
    assert report.phase == "Failed" and "weight 25 refused" in report.reason
    assert backend.calls[-1] == "rollback"


def test_an_unexpected_error_still_takes_the_canarys_traffic_away_and_publishes_failed():
    with pytest.raises(ConnectionResetError):
        rollout([GOOD], fail_on=("crash", 25))
    # the rollout is gone with the exception; what it left on the backend is what counts
    backend = _last_backend[0]
    assert backend.calls[-1] == "rollback"
    assert backend.states[-1]["phase"] == "Failed" and "interrupted" in backend.states[-1]["reason"]


def test_an_infinite_bound_keeps_the_report_strict_json(tmp_path):
    checks = [{"name": "error-rate", "query": "sum(rate(x[1m]))", "max": float("inf")}]
    report, _, _ = rollout([GOOD], {"checks": checks})
    json_path, _ = report.write(tmp_path)

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the report's JSON")

    json.loads(json_path.read_text(), parse_constant=refuse)


def test_a_canary_that_is_never_ready_fails_before_any_traffic():
    report, backend, _ = rollout([GOOD], {"ready_timeout_s": 5}, ready=False)
    assert report.phase == "Failed" and "not ready" in report.reason
    assert weights(backend) == [] and backend.calls[-1] == "rollback"


def test_webhooks_are_posted_with_the_state_and_a_refused_pre_rollout_stops_it():
    hooks = {"pre_rollout": "http://127.0.0.1:9/pre", "rollback": "http://127.0.0.1:9/rb"}
    report, backend, posted = rollout([GOOD], {"webhooks": hooks}, answers={"http://127.0.0.1:9/pre": [False]})
    assert report.phase == "Failed" and "pre_rollout" in report.reason
    assert [u for u, _ in posted] == ["http://127.0.0.1:9/pre", "http://127.0.0.1:9/rb"]
    assert posted[0][1]["hook"] == "pre_rollout" and posted[0][1]["model"] == "bc"
    assert weights(backend) == []


def test_confirm_promotion_holds_the_canary_until_it_is_accepted():
    hooks = {"confirm_promotion": "http://127.0.0.1:9/ok"}
    report, backend, posted = rollout([GOOD], {"webhooks": hooks}, answers={"http://127.0.0.1:9/ok": [False, True]})
    assert report.phase == "Succeeded" and len(posted) == 2
    assert weights(backend) == [5, 10, 25, 50, 100]
    assert report.duration_s == 60  # one more interval at 100% while promotion was refused


def test_the_report_is_json_and_html_with_a_timeline(tmp_path):
    report, _, _ = rollout([GOOD, BAD, BAD])
    json_path, html_path = report.write(tmp_path)
    data = json.loads(json_path.read_text())
    assert data["phase"] == "RolledBack" and data["plan"] == [5, 10, 25, 50, 100]
    assert data["rollback"]["seconds_to_weight_zero"] == 10.0
    page = html_path.read_text()
    assert "<svg" in page and "RolledBack" in page and "error-rate" in page
    assert RolloutReport(**{k: v for k, v in data.items() if k != "rollback"}).phase == "RolledBack"


@pytest.mark.parametrize("answer", [{**GOOD, "p99": 0.9}, {**GOOD, "classes": {"0": 90, "1": 10}}])
def test_slow_or_shifted_canaries_fail_their_checks(answer):
    report, _, _ = rollout([answer], {"failure_threshold": 1})
    assert report.phase == "RolledBack"
