"""The rollout policy: validation, plans, default checks, templates, evaluate and analyse (pure)."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from serving.rollout.backend import Sample
from serving.rollout.policy import (
    ERROR_RATE_QUERY,
    LATENCY_P99_QUERY,
    PREDICTIONS_QUERY,
    REQUESTS_QUERY,
    CheckResult,
    MetricCheck,
    RolloutPolicy,
    analyse,
    evaluate,
    measure,
    prometheus_duration,
    render_query,
    total_variation,
)
from shipyard.errors import ConfigError

ERRORS = MetricCheck("error-rate", "q", "threshold", max=0.01)
LATENCY = MetricCheck("latency", "q", "threshold", min=0.5, max=2)
RATIO = MetricCheck("p99-ratio", "q", "ratio", max=1.5)
DISTANCE = MetricCheck("distance", "q", "distance", max=0.2)
CHECK = {"name": "c", "query": "up{ {{ target }} }", "max": 1}


def test_defaults_validate_and_plan():
    policy = RolloutPolicy.from_dict(None)
    assert policy == RolloutPolicy()
    assert policy.plan() == [5, 10, 25, 50, 100]
    assert policy.requests_query == REQUESTS_QUERY
    assert RolloutPolicy.from_dict(policy.to_dict()) == policy


@pytest.mark.parametrize(
    ("values", "plan"),
    [
        ({"step_weight": 10, "max_weight": 50}, [10, 20, 30, 40, 50]),
        ({"step_weight": 30}, [30, 60, 90, 100]),
        ({"step_weight": 25, "max_weight": 60}, [25, 50, 60]),
        ({"step_weight": 100}, [100]),
        ({"step_weights": [1, 2, 10, 80]}, [1, 2, 10, 80]),
        ({"step_weights": [5.0, 50.0, 100.0]}, [5, 50, 100]),  # KFP: numbers arrive as floats
    ],
)
def test_plans(values, plan):
    policy = RolloutPolicy.from_dict(values)
    assert policy.plan() == plan
    assert all(type(w) is int for w in policy.plan())


def test_checks_from_kfp_dicts():
    policy = RolloutPolicy.from_dict(
        {
            "checks": [
                {"name": "a", "query": "x{ {{target}} }", "min": 1.0, "max": 2.0},
                {"name": "b", "query": "sum by (cls) (y{ {{ target }} })", "kind": "distance", "max": 0.1, "by": "cls"},
            ],
            "iterations": 2.0,
        }
    )
    a, b = policy.metric_checks("regression")
    assert a == MetricCheck("a", "x{ {{target}} }", "threshold", min=1.0, max=2.0)
    assert b.kind == "distance" and b.by == "cls" and b.max == 0.1
    assert policy.iterations == 2
    assert MetricCheck.from_dict(a.to_dict()) == a


def test_default_checks_per_task():
    policy = RolloutPolicy(max_error_rate=0.05, p99_max_s=0.25, p99_max_ratio=2, max_prediction_distance=0.3)
    checks = {c.name: c for c in policy.metric_checks("binary")}
    assert list(checks) == ["error-rate", "latency-p99", "latency-p99-vs-stable", "prediction-distance"]
    assert checks["error-rate"] == MetricCheck("error-rate", ERROR_RATE_QUERY, "threshold", max=0.05)
    assert checks["latency-p99"] == MetricCheck("latency-p99", LATENCY_P99_QUERY, "threshold", max=0.25)
    assert checks["latency-p99-vs-stable"] == MetricCheck("latency-p99-vs-stable", LATENCY_P99_QUERY, "ratio", max=2)
    assert checks["prediction-distance"] == MetricCheck("prediction-distance", PREDICTIONS_QUERY, "distance", max=0.3)
    assert [c.name for c in policy.metric_checks("multiclass")] == list(checks)
    assert "prediction-distance" not in [c.name for c in policy.metric_checks("regression")]
    with pytest.raises(ConfigError, match="task 'ranking' is not one of"):
        policy.metric_checks("ranking")


def test_default_queries_render_over_the_served_metrics():
    target = 'job="shipyard-canary"'
    errors = render_query(ERROR_RATE_QUERY, target, 30)
    assert errors == (
        '(sum(increase(shipyard_requests_total{route=~"v1_predict|v2_infer", status=~"5..", job="shipyard-canary"}'
        "[30s])) or vector(0)) / "
        'sum(increase(shipyard_requests_total{route=~"v1_predict|v2_infer", job="shipyard-canary"}[30s]))'
    )
    assert render_query(LATENCY_P99_QUERY, target, 30) == (
        "histogram_quantile(0.99, sum by (le) (rate(shipyard_request_duration_seconds_bucket"
        '{route=~"v1_predict|v2_infer", job="shipyard-canary"}[30s])))'
    )
    assert render_query(PREDICTIONS_QUERY, target, 120) == (
        'sum by (label) (increase(shipyard_predictions_total{ job="shipyard-canary" }[2m]))'
    )
    assert render_query(REQUESTS_QUERY, target, 7.5) == (
        'sum(increase(shipyard_requests_total{route=~"v1_predict|v2_infer", job="shipyard-canary"}[7500ms]))'
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("a{{{target}}}[{{interval}}]", 'a{job="c"}[30s]'),
        ("a{ {{ target }} }[{{  interval  }}]", 'a{ job="c" }[30s]'),
        ('m{model="{{ model }}", namespace="{{namespace}}"}', 'm{model="iris", namespace="ml"}'),
        ("no placeholders", "no placeholders"),
    ],
)
def test_render_query(template, expected):
    assert render_query(template, 'job="c"', 30, model="iris", namespace="ml") == expected


def test_render_query_refuses_an_unknown_placeholder():
    with pytest.raises(ConfigError, match=r"unknown placeholder\(s\) job; expected some of target, interval"):
        render_query("up{ {{ job }} }", "x", 30)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (7.5, "7500ms"),
        (30, "30s"),
        (30.0, "30s"),
        (120, "2m"),
        (90, "90s"),
        (3600, "1h"),
        (5400, "90m"),
        (0.001, "1ms"),
        (0.25, "250ms"),
    ],
)
def test_prometheus_duration(seconds, text):
    assert prometheus_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -1, 0.0005, 1.0001, math.inf, math.nan])
def test_prometheus_duration_refuses(seconds):
    with pytest.raises(ConfigError, match="interval_s"):
        prometheus_duration(seconds)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"step_weights": []}, "step_weights must not be empty"),
        ({"step_weights": [5, 10.5, 100]}, "step_weights must be whole numbers"),
        ({"step_weights": [0, 50, 100]}, r"step_weights must be in 1\.\.100"),
        ({"step_weights": [50, 150]}, r"step_weights must be in 1\.\.100"),
        ({"step_weights": [10, 10, 100]}, "step_weights must be increasing"),
        ({"step_weights": [50, 20, 100]}, "step_weights must be increasing"),
        ({"step_weights": "5,10"}, "'step_weights' must be tuple"),
        ({"step_weight": -1}, r"step_weight must be in 0\.\.100"),
        ({"step_weight": 101}, r"step_weight must be in 0\.\.100"),
        ({"step_weight": 10, "max_weight": 0}, r"max_weight must be in 1\.\.100"),
        ({"step_weight": 10, "max_weight": 101}, r"max_weight must be in 1\.\.100"),
        ({"step_weight": 60, "max_weight": 50}, "step_weight 60 is above max_weight 50"),
        ({"step_weight": 10, "step_weights": [1, 100]}, "set step_weights or step_weight"),
        ({"max_weight": 50}, "max_weight 50 applies to a step_weight plan only"),
        ({"interval_s": 0}, "interval_s must be > 0"),
        ({"interval_s": -5}, "interval_s must be > 0"),
        ({"interval_s": 0.0001}, "interval_s 0.0001 is not a whole number of milliseconds"),
        ({"iterations": 0}, "iterations must be >= 1"),
        ({"consecutive_successes": 0}, "consecutive_successes must be >= 1"),
        ({"failure_threshold": 0}, "failure_threshold must be >= 1"),
        ({"min_requests": -1}, "min_requests must be >= 0"),
        ({"max_inconclusive": -1}, "max_inconclusive must be >= 0"),
        ({"iterations": 1.5}, "'iterations' must be int"),
        ({"p99_max_s": 0}, "p99_max_s must be > 0"),
        ({"p99_max_ratio": -1}, "p99_max_ratio must be > 0"),
        ({"ready_timeout_s": 0}, "ready_timeout_s must be > 0"),
        ({"webhook_timeout_s": 0}, "webhook_timeout_s must be > 0"),
        ({"max_error_rate": 1.5}, r"max_error_rate must be in \[0, 1\]"),
        ({"max_prediction_distance": -0.1}, r"max_prediction_distance must be in \[0, 1\]"),
        ({"requests_query": " "}, "requests_query must not be empty"),
        ({"requests_query": "x{ {{ side }} }"}, r"requests_query uses unknown placeholder\(s\) side"),
        ({"stepweight": 10}, r"unknown key\(s\) 'stepweight'"),
        ({"checks": [{"query": "x", "max": 1}]}, r"checks\[0\]: every check needs a 'name'"),
        ({"checks": [{"name": "c", "max": 1}]}, r"checks\[0\] \('c'\): every check needs a 'query'"),
        ({"checks": [{**CHECK, "kind": "delta"}]}, "kind 'delta' is not one of threshold, ratio, distance"),
        ({"checks": [{"name": "c", "query": "x"}]}, r"checks\[0\] \('c'\): needs 'min' and/or 'max'"),
        ({"checks": [{**CHECK, "min": 2}]}, "min 2 is above max 1: no value could pass"),
        ({"checks": [{**CHECK, "max": "1"}]}, "'max' must be a number"),
        ({"checks": [{**CHECK, "max": True}]}, "'max' must be a number"),
        ({"checks": [{**CHECK, "name": 3}]}, "'name' must be str"),
        ({"checks": [{**CHECK, "threshold": 1}]}, r"checks\[0\]: unknown key\(s\) 'threshold'"),
        ({"checks": [{**CHECK, "query": "x{ {{ job }} }"}]}, r"unknown placeholder\(s\) job"),
        ({"checks": [{**CHECK, "kind": "distance", "by": ""}]}, "a distance check needs 'by'"),
        ({"checks": [CHECK, {**CHECK, "max": 2}]}, "the name 'c' is used twice"),
        ({"checks": ["error-rate"]}, r"checks\[0\]: expected a mapping"),
        ({"webhooks": {"post_rollout": "http://h/x"}}, "webhooks: unknown webhook 'post_rollout'"),
        ({"webhooks": {"pre_rollout": "ftp://h/x"}}, "webhooks.pre_rollout: expected an http:// or https:// URL"),
        ({"webhooks": {"rollback": "http://"}}, "webhooks.rollback: expected an http:// or https:// URL"),
        ({"webhooks": {"confirm_promotion": 5}}, "webhooks.confirm_promotion: expected an http:// or https:// URL"),
    ],
)
def test_config_errors(values, message):
    with pytest.raises(ConfigError, match=message) as info:
        RolloutPolicy.from_dict(values)
    assert str(info.value).startswith("rollout: ")


def test_webhooks():
    policy = RolloutPolicy.from_dict(
        {"webhooks": {"pre_rollout": "http://127.0.0.1:9/pre", "confirm_promotion": "https://gate.example/ok"}}
    )
    assert policy.webhook("pre_rollout") == "http://127.0.0.1:9/pre"
    assert policy.webhook("rollback") == ""
    with pytest.raises(ConfigError, match="unknown webhook 'post'"):
        policy.webhook("post")


@pytest.mark.parametrize(
    ("check", "canary", "stable", "value", "outcome", "detail"),
    [
        (ERRORS, 0.0, None, 0.0, "pass", "0 <= 0.01"),
        (ERRORS, 0.01, None, 0.01, "pass", "0.01 <= 0.01"),
        (ERRORS, 0.2, 0.0, 0.2, "fail", "0.2 > 0.01"),
        (LATENCY, 0.4, None, 0.4, "fail", "0.4 < 0.5"),
        (LATENCY, 1.0, None, 1.0, "pass", "1 in [0.5, 2]"),
        (LATENCY, 2.5, None, 2.5, "fail", "2.5 > 2"),
        (ERRORS, None, 0.0, None, "no data", "no data (canary)"),
        (ERRORS, math.nan, None, None, "no data", "no data (canary)"),
        (RATIO, 0.75, 0.5, 1.5, "pass", "1.5 <= 1.5"),  # exact in binary
        (RATIO, 0.5, 0.25, 2.0, "fail", "2 > 1.5"),
        (RATIO, 0.0, 0.0, 1.0, "pass", "1 <= 1.5"),  # 0 / 0 = 1
        (RATIO, 0.1, 0.0, math.inf, "fail", "inf > 1.5"),  # x / 0 = inf
        (RATIO, 0.0, 0.2, 0.0, "pass", "0 <= 1.5"),
        (RATIO, math.nan, 0.2, None, "no data", "no data (canary)"),
        (RATIO, 0.2, math.nan, None, "no data", "no data (stable)"),
        (RATIO, 0.2, None, None, "no data", "no data (stable)"),
        (RATIO, None, None, None, "no data", "no data (canary, stable)"),
        (DISTANCE, {"a": 3, "b": 1}, {"a": 30, "b": 10}, 0.0, "pass", "0 <= 0.2"),
        (DISTANCE, {"a": 1}, {"b": 5}, 1.0, "fail", "1 > 0.2"),
        (DISTANCE, {}, {"a": 1}, None, "no data", "no data (canary)"),
        (DISTANCE, {"a": 0, "b": 0}, {"a": 1}, None, "no data", "no data (canary)"),
        (DISTANCE, {"a": 1}, None, None, "no data", "no data (stable)"),
        (DISTANCE, {"a": math.nan}, {"a": 1}, None, "no data", "no data (canary)"),
    ],
)
def test_evaluate(check, canary, stable, value, outcome, detail):
    result = evaluate(check, canary, stable)
    assert result == CheckResult(check.name, check.kind, value, canary, stable, check.bounds, outcome, detail)


def test_threshold_text():
    assert ERRORS.bounds == "<= 0.01"
    assert LATENCY.bounds == "in [0.5, 2]"
    assert MetricCheck("rps", "q", min=5).bounds == ">= 5"
    assert evaluate(LATENCY, 1.0).describe() == "latency 1 in [0.5, 2]"


def test_distance_on_a_hand_computed_example():
    # canary 60/30/10 % over a/b/c, stable 50/50 % over a/b (no c):
    # 0.5 * (|0.6 - 0.5| + |0.3 - 0.5| + |0.1 - 0|) = 0.5 * (0.1 + 0.2 + 0.1) = 0.2
    canary = {"a": 6.0, "b": 3.0, "c": 1.0}
    stable = {"a": 25.0, "b": 25.0}
    result = evaluate(DISTANCE, canary, stable)
    assert result.value == pytest.approx(0.2)
    assert total_variation({"a": 0.6, "b": 0.3, "c": 0.1}, {"a": 0.5, "b": 0.5}) == pytest.approx(0.2)
    assert evaluate(dataclasses.replace(DISTANCE, max=0.19), canary, stable).outcome == "fail"
    assert evaluate(dataclasses.replace(DISTANCE, max=0.21), canary, stable).outcome == "pass"


def test_measure():
    assert measure(ERRORS, []) is None
    assert measure(ERRORS, [Sample({}, 0.25)]) == 0.25
    assert math.isnan(measure(LATENCY, [Sample({}, math.nan)]))  # type: ignore[arg-type]
    vector = [Sample({"label": "0"}, 3.0), Sample({"label": "1"}, 1.0)]
    assert measure(DISTANCE, vector) == {"0": 3.0, "1": 1.0}
    with pytest.raises(ConfigError, match="returned 2 series; a threshold query must return one"):
        measure(ERRORS, vector)
    with pytest.raises(ConfigError, match="lacks the label 'label'"):
        measure(DISTANCE, [Sample({"class": "0"}, 1.0)])


POLICY = RolloutPolicy(min_requests=10)
PASS = evaluate(ERRORS, 0.0)
FAIL = evaluate(ERRORS, 0.2)
SLOW = evaluate(LATENCY, 3.0)
NO_DATA = evaluate(DISTANCE, {}, {"a": 1})


@pytest.mark.parametrize(
    ("requests", "results", "outcome", "reason"),
    [
        (None, [PASS], "inconclusive", r"no canary request count \(the requests query returned no data\)"),
        (math.nan, [PASS], "inconclusive", "no canary request count"),
        (3.0, [FAIL], "inconclusive", "3 canary requests, fewer than min_requests 10"),
        (9.5, [PASS], "inconclusive", "9.5 canary requests, fewer than min_requests 10"),
        (10.0, [PASS, NO_DATA], "inconclusive", r"no data for distance \(canary\)"),
        (10.0, [FAIL, SLOW], "fail", r"error-rate 0\.2 > 0\.01, latency 3 > 2"),
        (10.0, [FAIL, NO_DATA], "fail", r"error-rate 0\.2 > 0\.01"),  # a real failure is not masked
        (10.0, [PASS, evaluate(LATENCY, 1.0)], "pass", "2 check"),
        (0.0, [], "inconclusive", "0 canary requests"),
    ],
)
def test_analyse(requests, results, outcome, reason):
    analysis = analyse(POLICY, requests, results)
    assert analysis.outcome == outcome
    assert analysis.results == tuple(results)
    assert analysis.failed == tuple(r for r in results if r.outcome == "fail")
    assert analysis.requests == (None if requests is None or math.isnan(requests) else requests)
    assert re.search(reason, analysis.reason), analysis.reason


def test_min_requests_zero_judges_an_idle_interval():
    assert analyse(RolloutPolicy(min_requests=0), 0.0, [PASS]).outcome == "pass"
    assert analyse(RolloutPolicy(min_requests=0), None, [PASS]).outcome == "inconclusive"
