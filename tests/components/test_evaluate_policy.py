"""Table tests of the pure blessing policy (components.evaluate_model.policy)."""

from __future__ import annotations

import math

import pytest

from components.evaluate_model import policy


@pytest.mark.parametrize(
    ("values", "thresholds", "passed"),
    [
        ({"roc_auc": 0.91}, {"roc_auc": {"min": 0.9}}, [True]),
        ({"roc_auc": 0.9}, {"roc_auc": {"min": 0.9}}, [True]),  # bounds are inclusive
        ({"roc_auc": 0.89}, {"roc_auc": {"min": 0.9}}, [False]),
        ({"log_loss": 0.3}, {"log_loss": {"max": 0.4, "min": 0.35}}, [True, False]),
        ({}, {"roc_auc": {"min": 0.5}}, [False]),  # not computed: fails
        ({"roc_auc": math.nan}, {"roc_auc": {"min": 0.5}}, [False]),
    ],
)
def test_value_checks(values, thresholds, passed):
    rows = policy.value_checks(values, thresholds)
    assert [r["passed"] for r in rows] == passed
    assert all(r["kind"] == "value" and r["gating"] for r in rows)


# MLflow MetricThreshold: greater is better → c >= b + a and c >= b·(1 + r); else c <= b − a, c <= b·(1 − r)
@pytest.mark.parametrize(
    ("metric", "c", "b", "rule", "passed", "value"),
    [
        ("roc_auc", 0.92, 0.90, {"min_absolute_change": 0.01}, True, 0.02),
        ("roc_auc", 0.905, 0.90, {"min_absolute_change": 0.01}, False, 0.005),
        ("roc_auc", 0.90, 0.90, {"min_absolute_change": 0.0}, True, 0.0),
        ("roc_auc", 0.995, 0.90, {"min_relative_change": 0.1}, True, 0.095 / 0.9),
        ("roc_auc", 0.98, 0.90, {"min_relative_change": 0.1}, False, 0.08 / 0.9),
        ("log_loss", 0.29, 0.35, {"min_absolute_change": 0.05}, True, 0.06),
        ("log_loss", 0.32, 0.35, {"min_absolute_change": 0.05}, False, 0.03),
        ("rmse", 44.0, 50.0, {"min_relative_change": 0.1}, True, 0.12),
        ("rmse", 46.0, 50.0, {"min_relative_change": 0.1}, False, 0.08),
        ("r2", -0.1, -0.2, {"min_relative_change": 0.5}, True, 0.5),  # |b| keeps the direction for b < 0
        ("roc_auc", 0.95, 0.90, {"min_absolute_change": 0.01, "greater_is_better": False}, False, -0.05),
        ("accuracy", 0.7, 0.6, {"min_absolute_change": 0.1}, True, 0.1),  # exactly at the bound (0.7 − 0.6 < 0.1)
        ("rmse", 0.0, 0.0, {"min_relative_change": 0.05}, True, 0.0),  # b = 0: c ≤ b − r·|b| = 0 holds
    ],
)
def test_change_checks_follow_mlflow_semantics(metric, c, b, rule, passed, value):
    (row,) = policy.change_checks({metric: c}, {metric: b}, {metric: rule})
    assert row["kind"] == "change" and row["passed"] is passed
    assert row["value"] == pytest.approx(value)
    assert row["candidate"] == c and row["reference"] == b


def test_change_checks_give_one_row_per_rule_and_fail_an_undefined_metric():
    rows = policy.change_checks({"roc_auc": 0.9}, {}, {"roc_auc": {"min_absolute_change": 0, "min_relative_change": 0}})
    assert len(rows) == 2 and not any(r["passed"] for r in rows) and "not computed" in rows[0]["note"]


@pytest.mark.parametrize(
    ("metric", "c", "b", "tolerance", "comparison", "interval", "passed"),
    [
        ("roc_auc", 0.90, 0.91, 0.0, "point", [-0.05, 0.03], False),  # worse: not blessed, whatever the interval
        ("roc_auc", 0.91, 0.91, 0.0, "point", None, True),
        ("roc_auc", 0.90, 0.91, 0.02, "point", None, True),
        ("roc_auc", 0.90, 0.91, 0.0, "bootstrap", [-0.05, 0.03], True),  # opt-in: the upper end decides
        ("roc_auc", 0.90, 0.91, 0.0, "bootstrap", [-0.05, -0.01], False),
        ("roc_auc", 0.92, 0.91, 0.0, "noninferiority", [-0.01, 0.03], False),  # the lower end decides
        ("roc_auc", 0.92, 0.91, 0.02, "noninferiority", [-0.01, 0.03], True),
        ("rmse", 10.0, 11.0, 0.0, "point", None, True),  # lower is better
        ("rmse", 11.0, 10.0, 0.5, "point", None, False),
        ("accuracy", 0.85, 0.86, 0.01, "point", None, True),  # exactly the tolerance worse (float: 0.01000…09)
    ],
)
def test_comparison_check(metric, c, b, tolerance, comparison, interval, passed):
    row = policy.comparison_check(metric, c, b, tolerance, comparison, interval)
    assert row["passed"] is passed and row["kind"] == "champion" and row["gating"] is True
    assert row["value"] == pytest.approx((c - b) if metric != "rmse" else (b - c))


def test_a_baseline_row_can_be_reported_without_gating():
    row = policy.comparison_check("roc_auc", 0.5, 0.9, 0.01, kind="baseline", reference_name="baseline", gating=False)
    assert row["passed"] is False and row["gating"] is False
    blessed, _ = policy.decide([row])
    assert blessed is True


@pytest.mark.parametrize(
    ("gap", "max_gap", "passed"), [(0.05, 0.1, True), (0.1, 0.1, True), (0.2, 0.1, False), (None, 0.1, False)]
)
def test_fairness_checks(gap, max_gap, passed):
    gaps = [{"column": "region", "metric": "accuracy", "gap": gap, "highest": "a (1)", "lowest": "b (0.9)"}]
    (row,) = policy.fairness_checks(gaps, {"accuracy": {"max_gap": max_gap}})
    assert row["passed"] is passed and row["kind"] == "fairness"
    assert policy.fairness_checks(gaps, {"f1_macro": {"max_gap": max_gap}}) == []


def _row(passed: bool, gating: bool = True, name: str = "x") -> dict:
    return {"check": name, "passed": passed, "gating": gating}


@pytest.mark.parametrize(
    ("checks", "reason", "configured", "blessed", "warning"),
    [
        ([_row(True)], "", True, True, None),
        ([_row(True), _row(False, name="auc ≥ 1")], "", True, False, None),
        ([_row(False, gating=False)], "", True, True, None),
        ([], "", False, True, "no thresholds configured"),
        (
            [_row(False, name="auc ≥ 1")],
            "INC-1",
            True,
            True,
            "force-blessed despite failed check(s) ['auc ≥ 1']: INC-1",
        ),
        ([_row(True)], "INC-2", True, True, "force-blessed (every check passed anyway): INC-2"),
    ],
)
def test_decide(checks, reason, configured, blessed, warning):
    got, warnings = policy.decide(checks, reason, configured)
    assert got is blessed
    assert (warning is None and not warnings) or any(warning in w for w in warnings)
