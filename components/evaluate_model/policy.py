"""The blessing policy: pure functions from metric values and thresholds to check rows and a verdict.

Every check is a row ``{"check", "kind", "metric", "value", "threshold", "passed", "gating"}``
(plus ``interval``, ``candidate``, ``reference``, ``note`` where they apply). ``kind`` is one of:

- ``value``: a bound on the candidate's metric (``{"min": x}`` → value ≥ x, ``{"max": y}`` → value ≤ y);
- ``change``: a change threshold against the champion with MLflow ``MetricThreshold`` semantics;
- ``champion``: the candidate is not worse than the champion on the primary metric;
- ``fairness``: the largest gap of a metric between slices of one column is at most ``max_gap``;
- ``baseline``: the comparison with the in-run linear baseline (gating only when configured).

Nothing here reads files or models: :mod:`components.evaluate_model.core` computes the numbers
and these functions judge them, so each rule is table-tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.metrics import greater_is_better

Check = dict[str, Any]
COMPARISONS = ("point", "bootstrap", "noninferiority")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def value_checks(values: Mapping[str, float], thresholds: Mapping[str, Mapping[str, float]]) -> list[Check]:
    """One ``value`` row per bound; a metric that was not computed fails its bound (with a note).

    Args:
        values: The candidate's metrics.
        thresholds: ``{metric: {"min": x, "max": y}}`` (one or both bounds).
    """
    rows = []
    for metric, bounds in thresholds.items():
        value = values.get(metric)
        for kind, bound in bounds.items():
            ok = _finite(value) and (at_least if kind == "min" else at_most)(float(value), bound)  # type: ignore[arg-type]
            row: Check = {
                "check": f"{metric} {'≥' if kind == 'min' else '≤'} {bound:g}",
                "kind": "value",
                "metric": metric,
                "value": value,
                "threshold": bound,
                "passed": bool(ok),
                "gating": True,
            }
            if value is None:
                row["note"] = f"{metric} was not computed on this test split"
            rows.append(row)
    return rows


#: Slack of every comparison with a bound, relative to the bound's size: metrics such as accuracy
#: are fractions k/n, so a value exactly at a bound is common and must not fail by float rounding
#: (0.85 − 0.86 is −0.010000000000000009).
BOUND_SLACK = 1e-9


def at_least(value: float, bound: float) -> bool:
    """``value ≥ bound``, up to :data:`BOUND_SLACK`."""
    return value >= bound - BOUND_SLACK * max(1.0, abs(bound))


def at_most(value: float, bound: float) -> bool:
    """``value ≤ bound``, up to :data:`BOUND_SLACK`."""
    return value <= bound + BOUND_SLACK * max(1.0, abs(bound))


def _relative(diff: float, reference: float) -> float:
    """``diff / |reference|``; ±inf (or 0) when the reference is 0."""
    if reference:
        return diff / abs(reference)
    return 0.0 if diff == 0 else math.copysign(math.inf, diff)


def change_checks(
    candidate: Mapping[str, float],
    reference: Mapping[str, float],
    change_thresholds: Mapping[str, Mapping[str, Any]],
    reference_name: str = "champion",
) -> list[Check]:
    """Change thresholds against the champion, as MLflow's ``MetricThreshold`` defines them.

    With ``c`` the candidate's value and ``b`` the reference's, for a metric where greater is better
    (``greater_is_better``, default from the metric's direction):

    - ``min_absolute_change: a`` passes when ``c ≥ b + a`` (lower is better: ``c ≤ b − a``);
    - ``min_relative_change: r`` passes when ``c ≥ b + r·|b|`` (lower is better: ``c ≤ b − r·|b|``).

    MLflow writes the relative rule as ``b·(1 ± r)``, the same for ``b > 0``; ``|b|`` keeps the
    rule's direction for a negative ``b`` (an R² below zero). ``value`` is the change the rule
    judges (``c − b`` or ``(c − b)/|b|``, sign-flipped when lower is better, so that positive is an
    improvement) and ``threshold`` the required minimum.
    """
    rows = []
    for metric, rule in change_thresholds.items():
        gib = bool(rule.get("greater_is_better", greater_is_better(metric)))
        sign = 1.0 if gib else -1.0
        c, b = candidate.get(metric), reference.get(metric)
        defined = _finite(c) and _finite(b)
        for kind in ("min_absolute_change", "min_relative_change"):
            if kind not in rule:
                continue
            need = float(rule[kind])
            change: float | None = None
            passed = False
            if defined:
                diff = sign * (float(c) - float(b))  # type: ignore[arg-type]
                change = diff if kind == "min_absolute_change" else _relative(diff, float(b))  # type: ignore[arg-type]
                # judged in MLflow's bound form (c ≥ b + r·|b|), which also holds for b = 0
                passed = at_least(diff, need if kind == "min_absolute_change" else need * abs(float(b)))  # type: ignore[arg-type]
            label = "+" if gib else "−"
            bound = f"{need:g}" if kind == "min_absolute_change" else f"{need:g}·|{reference_name}|"
            row: Check = {
                "check": f"{metric} {'≥' if gib else '≤'} {reference_name} {label} {bound}",
                "kind": "change",
                "metric": metric,
                "value": change,
                "threshold": need,
                "candidate": c,
                "reference": b,
                "passed": bool(passed),
                "gating": True,
            }
            if not defined:
                row["note"] = f"{metric} was not computed for the candidate or the {reference_name}"
            rows.append(row)
    return rows


def comparison_check(
    metric: str,
    candidate: float,
    reference: float,
    tolerance: float,
    comparison: str = "point",
    interval: Sequence[float] | None = None,
    confidence: float = 0.95,
    kind: str = "champion",
    reference_name: str = "champion",
    gating: bool = True,
) -> Check:
    """The candidate is not worse than a reference model on ``metric`` by more than ``tolerance``.

    ``value`` is the improvement (``candidate − reference``, sign-flipped when lower is better).
    ``point`` judges the observed improvement: a candidate worse than the reference fails, whatever
    an interval says. ``bootstrap`` judges the upper end of ``interval`` (the improvement's paired
    bootstrap interval: fails only when the data show the candidate is worse), ``noninferiority``
    its lower end (passes only when the data show it is no worse).

    Args:
        metric: The primary metric.
        candidate: The candidate's value.
        reference: The reference model's value.
        tolerance: How much worse the candidate may be (≥ 0).
        comparison: ``point``, ``bootstrap`` or ``noninferiority``.
        interval: The improvement's interval (needed by the bootstrap modes).
        confidence: The interval's confidence (for the row's text).
        kind: The row's kind (``champion`` or ``baseline``).
        reference_name: How the row names the reference (``champion v3``, ``baseline``).
        gating: Whether the row takes part in the verdict.
    """
    sign = 1.0 if greater_is_better(metric) else -1.0
    improvement = sign * (candidate - reference)
    if comparison == "point" or interval is None:
        judged, label = improvement, ""
    elif comparison == "bootstrap":
        judged, label = max(interval), f" (upper end of {confidence:.0%} CI)"
    else:
        judged, label = min(interval), f" (lower end of {confidence:.0%} CI)"
    row: Check = {
        "check": f"{metric} vs {reference_name} not worse by > {tolerance:g}{label}",
        "kind": kind,
        "metric": metric,
        "value": improvement,
        "threshold": -tolerance if tolerance else 0.0,
        "candidate": candidate,
        "reference": reference,
        "passed": bool(at_least(judged, -tolerance)),
        "gating": gating,
    }
    if interval is not None:
        row["interval"] = sorted(float(v) for v in interval)
    return row


def fairness_checks(gaps: Sequence[Mapping[str, Any]], fairness: Mapping[str, Mapping[str, float]]) -> list[Check]:
    """One ``fairness`` row per slice column and configured metric: the gap is at most ``max_gap``.

    Args:
        gaps: ``[{"column", "metric", "gap", "slices": n, ...}]`` (:func:`slices.fairness_gaps`);
            ``gap`` is None when fewer than two slices had the metric.
        fairness: ``{metric: {"max_gap": x}}``.
    """
    rows = []
    for gap in gaps:
        rule = fairness.get(gap["metric"])
        if rule is None:
            continue
        value = gap["gap"]
        row: Check = {
            "check": f"{gap['metric']} gap across {gap['column']} slices ≤ {rule['max_gap']:g}",
            "kind": "fairness",
            "metric": gap["metric"],
            "value": value,
            "threshold": rule["max_gap"],
            "passed": bool(value is not None and at_most(value, rule["max_gap"])),
            "gating": True,
        }
        if value is None:
            row["note"] = (
                f"fewer than two slices of {gap['column']} large enough to compare: the fairness rule cannot be "
                "shown to hold, so it fails (lower min_slice_rows or drop the rule)"
            )
        else:
            row["note"] = f"highest {gap['highest']}, lowest {gap['lowest']}"
        rows.append(row)
    return rows


def decide(
    checks: Sequence[Check], forced_reason: str = "", thresholds_configured: bool = True
) -> tuple[bool, list[str]]:
    """The verdict: blessed when every gating check passed, or when forced.

    Args:
        checks: All check rows.
        forced_reason: A force-bless's reason (``""``: not forced).
        thresholds_configured: Whether any value, change or fairness threshold was configured.

    Returns:
        ``(blessed, warnings)``.
    """
    warnings = []
    failed = [c["check"] for c in checks if c.get("gating") and not c["passed"]]
    if not thresholds_configured:
        warnings.append(
            "no thresholds configured (thresholds, change_thresholds, fairness): the candidate is blessed "
            "unless a default rule (not worse than the champion) fails"
        )
    if forced_reason:
        if failed:
            warnings.append(f"force-blessed despite failed check(s) {failed}: {forced_reason}")
        else:
            warnings.append(f"force-blessed (every check passed anyway): {forced_reason}")
        return True, warnings
    return not failed, warnings
