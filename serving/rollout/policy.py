"""The canary rollout policy: step weights, metric checks and how one interval's measurements are judged.

Everything here is data and pure functions (Flagger's ``CanaryAnalysis``, Argo Rollouts' ``AnalysisTemplate``):
:class:`RolloutPolicy` is validated up front, :func:`evaluate` judges one :class:`MetricCheck` against the
canary's (and stable's) measurement, :func:`analyse` turns one interval's :class:`CheckResult` s into a
pass, a fail or an inconclusive :class:`Analysis`. Querying Prometheus, sleeping and moving traffic are the
driver's (``serving.rollout.run``) and the backends' business.

Query templates use Flagger's placeholders: ``{{ target }}`` (the label matchers of the side being measured,
``Backend.selector(side)``), ``{{ interval }}`` (the policy interval as a Prometheus duration),
``{{ model }}`` and ``{{ namespace }}``; :func:`render_query` fills them in.
"""

from __future__ import annotations

import dataclasses
import math
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shipyard.config import Config, require
from shipyard.errors import ConfigError

#: What a check compares: the canary's value, canary ÷ stable, or the distance of two distributions.
KINDS = ("threshold", "ratio", "distance")
#: The webhooks a policy may name (plain HTTP POSTs, Flagger's pre-rollout / confirm-promotion / rollback).
WEBHOOKS = ("pre_rollout", "confirm_promotion", "rollback")
#: The placeholders a query template may use.
PLACEHOLDERS = ("target", "interval", "model", "namespace")
#: Tasks whose served model counts its predicted classes (``shipyard_predictions_total``).
CLASSIFICATION_TASKS = ("binary", "multiclass", "classification")
TASKS = (*CLASSIFICATION_TASKS, "regression")
#: The inference routes of ``shipyard serve`` (``shipyard_requests_total{route}``); health and metrics excluded.
INFERENCE_ROUTES = "v1_predict|v2_infer"

_ROUTES = f'route=~"{INFERENCE_ROUTES}"'
#: Canary requests in one interval: what the driver counts against ``min_requests``.
REQUESTS_QUERY = f"sum(increase(shipyard_requests_total{{{_ROUTES}, {{{{ target }}}}}}[{{{{ interval }}}}]))"
#: Share of inference requests answered 5xx; ``or vector(0)``: no 5xx series at all is 0, not "no data".
ERROR_RATE_QUERY = (
    f'(sum(increase(shipyard_requests_total{{{_ROUTES}, status=~"5..", {{{{ target }}}}}}[{{{{ interval }}}}]))'
    " or vector(0))"
    f" / sum(increase(shipyard_requests_total{{{_ROUTES}, {{{{ target }}}}}}[{{{{ interval }}}}]))"
)
#: 99th percentile of inference latency in seconds (NaN, i.e. no data, in an interval without requests).
LATENCY_P99_QUERY = (
    "histogram_quantile(0.99, sum by (le) "
    f"(rate(shipyard_request_duration_seconds_bucket{{{_ROUTES}, {{{{ target }}}}}}[{{{{ interval }}}}])))"
)
#: Predicted classes in one interval, a vector by ``label``.
PREDICTIONS_QUERY = "sum by (label) (increase(shipyard_predictions_total{ {{ target }} }[{{ interval }}]))"

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_CHECK_KEYS = ("name", "query", "kind", "min", "max", "by")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value: float) -> str:
    """A number as a person would write it: ``0.01``, ``2``, ``1.5``, ``inf``."""
    return f"{value:.6g}"


@dataclasses.dataclass(frozen=True)
class MetricCheck:
    """One metric gate of an interval (Flagger's ``metrics[]`` entry, Argo's ``AnalysisTemplate`` metric).

    Attributes:
        name: Unique within the policy; named in decisions and reports.
        query: PromQL template (see :func:`render_query`).
        kind: ``threshold`` (the canary's value within [min, max]), ``ratio`` (canary ÷ stable within
            [min, max]; 0 ÷ 0 = 1) or ``distance`` (the query returns a vector by label ``by``; the
            total-variation distance of the canary's and stable's normalized vectors within [min, max]).
        min: Lower bound (inclusive), or None.
        max: Upper bound (inclusive), or None; at least one of the two is set.
        by: The label a ``distance`` query's vector is keyed by.
    """

    name: str
    query: str
    kind: str = "threshold"
    min: float | None = None
    max: float | None = None
    by: str = "label"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "check") -> MetricCheck:
        """Builds a check from a plain mapping (as KFP passes it: every number may be a float).

        Args:
            values: Keys among ``name``, ``query``, ``kind``, ``min``, ``max``, ``by``.
            where: How messages name this check (``rollout: checks[2]``).

        Returns:
            The validated check.

        Raises:
            ConfigError: A key is unknown or missing, or a value is of the wrong kind or range.
        """
        if isinstance(values, MetricCheck):
            values.validate(where)
            return values
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping with keys {', '.join(_CHECK_KEYS)}, got {type(values).__name__}"
            )
        unknown = sorted(set(values) - set(_CHECK_KEYS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected one of: {', '.join(_CHECK_KEYS)}"
            )
        for key in ("name", "query", "kind", "by"):
            if key in values and not isinstance(values[key], str):
                raise ConfigError(f"{where}: {key!r} must be str, got {values[key]!r}")
        for key in ("min", "max"):
            value = values.get(key)
            if value is not None and not _number(value):
                raise ConfigError(f"{where}: {key!r} must be a number, got {value!r}")
        check = cls(
            name=values.get("name", ""),
            query=values.get("query", ""),
            kind=values.get("kind", "threshold"),
            min=None if values.get("min") is None else float(values["min"]),
            max=None if values.get("max") is None else float(values["max"]),
            by=values.get("by", "label"),
        )
        check.validate(where)
        return check

    def validate(self, where: str = "check") -> None:
        """Checks the check on its own (names' uniqueness is the policy's).

        Args:
            where: How messages name this check.

        Raises:
            ConfigError: The name or query is empty, the query uses an unknown placeholder, the kind is
                unknown, no bound is set, a bound is not a finite number, or min is above max.
        """
        label = f"{where} ({self.name!r})" if isinstance(self.name, str) and self.name else where
        require(isinstance(self.name, str) and bool(self.name.strip()), where, "every check needs a 'name'")
        require(isinstance(self.query, str) and bool(self.query.strip()), label, "every check needs a 'query'")
        unknown = _unknown_placeholders(self.query)
        require(
            not unknown,
            label,
            f"query uses unknown placeholder(s) {', '.join(unknown)}; expected some of {', '.join(PLACEHOLDERS)}",
        )
        require(self.kind in KINDS, label, f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        require(self.min is not None or self.max is not None, label, "needs 'min' and/or 'max'")
        for key in ("min", "max"):
            value = getattr(self, key)
            require(
                value is None or (_number(value) and not math.isnan(value)),
                label,
                f"{key!r} must be a number, got {value!r}",
            )
        if self.min is not None and self.max is not None:
            require(
                self.min <= self.max,
                label,
                f"min {_fmt(self.min)} is above max {_fmt(self.max)}: no value could pass",
            )
        require(
            self.kind != "distance" or (isinstance(self.by, str) and bool(self.by)),
            label,
            "a distance check needs 'by' (the label its vector is keyed by)",
        )

    @property
    def bounds(self) -> str:
        """The bounds as text: ``<= 0.01``, ``>= 0.5`` or ``in [0.5, 2]``."""
        if self.min is not None and self.max is not None:
            return f"in [{_fmt(self.min)}, {_fmt(self.max)}]"
        if self.max is not None:
            return f"<= {_fmt(self.max)}"
        return f">= {_fmt(self.min if self.min is not None else -math.inf)}"

    def to_dict(self) -> dict[str, Any]:
        """The check as plain JSON-able values (what :meth:`from_dict` reads)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check judged over one interval.

    Attributes:
        name: The check's name.
        kind: The check's kind.
        value: What was compared with the bounds (the canary's value, the ratio or the distance); None
            without data.
        canary: The canary's measurement (a number, a vector by label, or None).
        stable: The stable model's measurement (None where the check does not need it or has no data).
        threshold: The bounds as text (``<= 0.01``, ``in [0.5, 2]``).
        outcome: ``pass``, ``fail`` or ``no data``.
        detail: One line for decisions: ``0.2 > 0.01``, ``0.3 <= 0.5``, ``no data (stable)``.
    """

    name: str
    kind: str
    value: float | None
    canary: float | dict[str, float] | None
    stable: float | dict[str, float] | None
    threshold: str
    outcome: str
    detail: str = ""

    def describe(self) -> str:
        """``name detail``, e.g. ``error-rate 0.2 > 0.01``."""
        return f"{self.name} {self.detail}".rstrip()

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-able values (an infinite value as ``inf``, a float)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """One interval's verdict.

    Attributes:
        requests: Canary requests in the interval (from ``requests_query``), or None without data.
        results: Every check's result.
        outcome: ``pass``, ``fail`` or ``inconclusive``.
        reason: Why, in one line (the failed checks, the checks without data, the request count).
    """

    requests: float | None
    results: tuple[CheckResult, ...]
    outcome: str
    reason: str = ""

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        """The results that failed."""
        return tuple(r for r in self.results if r.outcome == "fail")

    def to_dict(self) -> dict[str, Any]:
        """The analysis as plain JSON-able values."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RolloutPolicy(Config):
    """How a canary is rolled out: steps, interval, gates, tolerances and webhooks (Flagger semantics).

    Attributes:
        step_weights: Canary weights in percent, increasing, in 1..100 (Flagger ``stepWeights``); used
            when ``step_weight`` is 0. Promotion follows the last step (100 or not).
        step_weight: Flagger ``stepWeight``: weights ``step_weight, 2*step_weight, ...`` up to
            ``max_weight``; 0: use ``step_weights``.
        max_weight: Flagger ``maxWeight``: the last weight of a ``step_weight`` plan (promotion follows it).
        interval_s: Seconds per analysis interval; a whole number of milliseconds.
        iterations: Passing intervals needed at each step.
        consecutive_successes: Passing intervals in a row needed to leave a step.
        failure_threshold: Failed intervals (over the whole rollout) at which it is rolled back
            (Flagger ``threshold``).
        min_requests: Canary requests an interval needs to be judged at all; fewer: inconclusive.
        max_inconclusive: Inconclusive intervals in a row at which the rollout fails (and rolls back);
            0: no limit.
        checks: Metric checks, a list of mappings (``name``, ``query``, ``kind``, ``min``, ``max``, ``by``)
            or :class:`MetricCheck` s; empty or None: the defaults for the task (:meth:`metric_checks`).
        p99_max_s: Bound of the default ``latency-p99`` check (seconds).
        p99_max_ratio: Bound of the default ``latency-p99-vs-stable`` check (canary p99 ÷ stable p99).
        max_error_rate: Bound of the default ``error-rate`` check (share of 5xx answers).
        max_prediction_distance: Bound of the default ``prediction-distance`` check (total-variation
            distance of the predicted-class distributions, 0..1; classification only).
        requests_query: Template counting the canary's inference requests in an interval.
        ready_timeout_s: Seconds the canary may take to become ready.
        webhooks: ``{pre_rollout, confirm_promotion, rollback: URL}`` (http or https), each optional.
        webhook_timeout_s: Seconds a webhook may take to answer.
    """

    section = "rollout"
    step_weights: tuple = (5, 10, 25, 50, 100)
    step_weight: int = 0
    max_weight: int = 100
    interval_s: float = 30.0
    iterations: int = 1
    consecutive_successes: int = 1
    failure_threshold: int = 2
    min_requests: int = 10
    max_inconclusive: int = 10
    checks: tuple | None = ()
    p99_max_s: float = 0.5
    p99_max_ratio: float = 1.5
    max_error_rate: float = 0.01
    max_prediction_distance: float = 0.2
    requests_query: str = REQUESTS_QUERY
    ready_timeout_s: float = 300.0
    webhooks: dict = dataclasses.field(default_factory=dict)
    webhook_timeout_s: float = 10.0

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> RolloutPolicy:
        """Builds the policy from a mapping; whole floats in ``step_weights`` (KFP's) become ints.

        Args:
            values: Keys are field names; ``None`` or ``{}`` gives the defaults.

        Returns:
            The validated policy.

        Raises:
            ConfigError: A key is unknown, or a value has the wrong kind or range (the message names it).
        """
        if isinstance(values, Mapping) and isinstance(values.get("step_weights"), list | tuple):
            values = dict(values)
            values["step_weights"] = [
                int(w) if isinstance(w, float) and w.is_integer() else w for w in values["step_weights"]
            ]
        return super().from_dict(values)

    def validate(self) -> None:
        s = self.section
        weights = self.step_weights
        require(isinstance(weights, tuple | list) and len(weights) > 0, s, "step_weights must not be empty")
        require(
            all(isinstance(w, int) and not isinstance(w, bool) for w in weights),
            s,
            f"step_weights must be whole numbers (percent), got {list(weights)}",
        )
        require(all(1 <= w <= 100 for w in weights), s, f"step_weights must be in 1..100, got {list(weights)}")
        require(
            all(a < b for a, b in zip(weights, weights[1:], strict=False)),
            s,
            f"step_weights must be increasing, got {list(weights)}",
        )
        require(
            0 <= self.step_weight <= 100,
            s,
            f"step_weight must be in 0..100 (0: use step_weights), got {self.step_weight}",
        )
        require(1 <= self.max_weight <= 100, s, f"max_weight must be in 1..100, got {self.max_weight}")
        if self.step_weight:
            require(
                self.step_weight <= self.max_weight,
                s,
                f"step_weight {self.step_weight} is above max_weight {self.max_weight}",
            )
            require(
                tuple(weights) == RolloutPolicy.step_weights,
                s,
                "set step_weights or step_weight (with max_weight), not both",
            )
        else:
            require(
                self.max_weight == 100,
                s,
                f"max_weight {self.max_weight} applies to a step_weight plan only; with step_weights the last "
                "weight is the largest (set step_weight too, or leave max_weight at 100)",
            )
        require(
            self.interval_s > 0 and math.isfinite(self.interval_s), s, f"interval_s must be > 0, got {self.interval_s}"
        )
        prometheus_duration(self.interval_s)
        for name in ("iterations", "consecutive_successes", "failure_threshold"):
            value = getattr(self, name)
            require(value >= 1, s, f"{name} must be >= 1, got {value}")
        require(self.min_requests >= 0, s, f"min_requests must be >= 0, got {self.min_requests}")
        require(
            self.max_inconclusive >= 0, s, f"max_inconclusive must be >= 0 (0: no limit), got {self.max_inconclusive}"
        )
        for name in ("p99_max_s", "p99_max_ratio", "ready_timeout_s", "webhook_timeout_s"):
            value = getattr(self, name)
            require(value > 0 and math.isfinite(value), s, f"{name} must be > 0, got {value}")
        for name in ("max_error_rate", "max_prediction_distance"):
            value = getattr(self, name)
            require(0 <= value <= 1, s, f"{name} must be in [0, 1], got {value}")
        require(bool(self.requests_query.strip()), s, "requests_query must not be empty")
        unknown = _unknown_placeholders(self.requests_query)
        require(
            not unknown,
            s,
            f"requests_query uses unknown placeholder(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(PLACEHOLDERS)}",
        )
        self._parsed_checks()
        for hook, url in self.webhooks.items():
            require(
                hook in WEBHOOKS,
                s,
                f"webhooks: unknown webhook {hook!r}; expected some of {', '.join(WEBHOOKS)}",
            )
            require(_http_url(url), s, f"webhooks.{hook}: expected an http:// or https:// URL, got {url!r}")

    def _parsed_checks(self) -> tuple[MetricCheck, ...]:
        s = self.section
        raw = self.checks or ()
        require(isinstance(raw, tuple | list), s, f"checks must be a list of mappings, got {type(raw).__name__}")
        checks = tuple(MetricCheck.from_dict(c, f"{s}: checks[{i}]") for i, c in enumerate(raw))
        seen: set[str] = set()
        for check in checks:
            require(check.name not in seen, s, f"checks: the name {check.name!r} is used twice; names must be unique")
            seen.add(check.name)
        return checks

    def plan(self) -> list[int]:
        """The canary weights, step by step (Flagger's ``nextStepWeight``).

        Returns:
            ``step_weights``, or ``step_weight, 2*step_weight, ...`` capped at ``max_weight``
            (10 up to 50: ``[10, 20, 30, 40, 50]``; 30 up to 100: ``[30, 60, 90, 100]``). Promotion (all
            the traffic to the canary) follows the last step, whether it is 100 or not.
        """
        if not self.step_weight:
            return [int(w) for w in self.step_weights]
        weights = list(range(self.step_weight, self.max_weight + 1, self.step_weight))
        if weights[-1] != self.max_weight:
            weights.append(self.max_weight)
        return weights

    def webhook(self, hook: str) -> str:
        """The URL of one webhook, or ``""`` when the policy has none.

        Args:
            hook: One of :data:`WEBHOOKS`.

        Raises:
            ConfigError: ``hook`` is not a known webhook.
        """
        if hook not in WEBHOOKS:
            raise ConfigError(f"{self.section}: unknown webhook {hook!r}; expected one of {', '.join(WEBHOOKS)}")
        return str(self.webhooks.get(hook, ""))

    def metric_checks(self, task: str) -> tuple[MetricCheck, ...]:
        """The checks of every interval: the policy's own, or the defaults for the task.

        The defaults: ``error-rate`` (threshold, max ``max_error_rate``), ``latency-p99`` (threshold, max
        ``p99_max_s``), ``latency-p99-vs-stable`` (ratio, max ``p99_max_ratio``) and, for classification,
        ``prediction-distance`` (distance by ``label``, max ``max_prediction_distance``).

        Args:
            task: ``binary``, ``multiclass`` (or ``classification``), or ``regression``.

        Returns:
            The checks, validated.

        Raises:
            ConfigError: ``task`` is unknown, or a configured check is invalid.
        """
        if task not in TASKS:
            raise ConfigError(f"{self.section}: task {task!r} is not one of {', '.join(TASKS)}")
        if self.checks:
            return self._parsed_checks()
        defaults = [
            MetricCheck("error-rate", ERROR_RATE_QUERY, "threshold", max=self.max_error_rate),
            MetricCheck("latency-p99", LATENCY_P99_QUERY, "threshold", max=self.p99_max_s),
            MetricCheck("latency-p99-vs-stable", LATENCY_P99_QUERY, "ratio", max=self.p99_max_ratio),
        ]
        if task in CLASSIFICATION_TASKS:
            defaults.append(
                MetricCheck("prediction-distance", PREDICTIONS_QUERY, "distance", max=self.max_prediction_distance)
            )
        return tuple(defaults)


def _http_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _unknown_placeholders(template: str) -> list[str]:
    return sorted({m.group(1) for m in _PLACEHOLDER.finditer(template)} - set(PLACEHOLDERS))


def prometheus_duration(seconds: float) -> str:
    """A number of seconds as an exact Prometheus duration, in the largest unit that divides it.

    Args:
        seconds: A positive whole number of milliseconds, in seconds.

    Returns:
        ``"7500ms"`` for 7.5, ``"30s"`` for 30, ``"2m"`` for 120, ``"1h"`` for 3600.

    Raises:
        ConfigError: ``seconds`` is not positive, or not a whole number of milliseconds.
    """
    if not _number(seconds) or not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"rollout: interval_s must be > 0, got {seconds!r}")
    ms = round(seconds * 1000)
    if ms < 1 or abs(ms - seconds * 1000) > 1e-6:
        raise ConfigError(
            f"rollout: interval_s {seconds!r} is not a whole number of milliseconds (a Prometheus duration)"
        )
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def render_query(template: str, target: str, interval_s: float, model: str = "", namespace: str = "") -> str:
    """Fills in a query template's ``{{ target }}``, ``{{ interval }}``, ``{{ model }}`` and ``{{ namespace }}``.

    Args:
        template: PromQL with placeholders (whitespace inside the braces optional: ``{{target}}``).
        target: Label matchers of the side measured (``Backend.selector(side)``, e.g. ``job="canary"``).
        interval_s: The interval, rendered by :func:`prometheus_duration`.
        model: The served model's name.
        namespace: The Kubernetes namespace.

    Returns:
        The query.

    Raises:
        ConfigError: The template uses an unknown placeholder, or the interval is not a valid duration.
    """
    unknown = _unknown_placeholders(template)
    if unknown:
        raise ConfigError(
            f"rollout: query {template!r} uses unknown placeholder(s) {', '.join(unknown)}; "
            f"expected some of {', '.join(PLACEHOLDERS)}"
        )
    values = {"target": target, "interval": prometheus_duration(interval_s), "model": model, "namespace": namespace}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def measure(check: MetricCheck, samples: Iterable[Any]) -> float | dict[str, float] | None:
    """One side's measurement from a query's instant vector (``Backend.query``'s ``Sample`` s).

    Args:
        check: The check the query belongs to.
        samples: Objects with ``labels`` (a mapping) and ``value`` (a float).

    Returns:
        A ``distance`` check: ``{label value: value}`` by ``check.by`` (None when empty); otherwise the one
        sample's value (None when empty; NaN is kept, :func:`evaluate` reads it as no data).

    Raises:
        ConfigError: A threshold or ratio query returned more than one series (wrap it in ``sum()``), or a
            distance query's series lack the ``by`` label.
    """
    samples = list(samples)
    if not samples:
        return None
    if check.kind == "distance":
        vector: dict[str, float] = {}
        for sample in samples:
            if check.by not in sample.labels:
                raise ConfigError(
                    f"rollout: check {check.name!r}: a series lacks the label {check.by!r} "
                    f"(its labels: {dict(sample.labels)}); aggregate with sum by ({check.by})"
                )
            key = str(sample.labels[check.by])
            vector[key] = vector.get(key, 0.0) + float(sample.value)
        return vector
    if len(samples) > 1:
        raise ConfigError(
            f"rollout: check {check.name!r}: the query returned {len(samples)} series; a {check.kind} query must "
            "return one (aggregate it, e.g. with sum())"
        )
    return float(samples[0].value)


def _scalar(value: float | dict[str, float] | None) -> float | None:
    if value is None or isinstance(value, dict) or math.isnan(value):
        return None
    return float(value)


def _distribution(value: float | dict[str, float] | None) -> dict[str, float] | None:
    if not isinstance(value, dict) or not value:
        return None
    if any(math.isnan(v) or math.isinf(v) or v < 0 for v in value.values()):
        return None
    total = sum(value.values())
    if total <= 0:
        return None
    return {k: v / total for k, v in value.items()}


def total_variation(canary: Mapping[str, float], stable: Mapping[str, float]) -> float:
    """``0.5 * sum |p_c - p_s|`` over the union of labels of two normalized distributions (0..1).

    Args:
        canary: Probabilities by label (summing to 1).
        stable: Probabilities by label (summing to 1).

    Returns:
        The total-variation distance: 0 for equal distributions, 1 for disjoint ones.
    """
    labels = set(canary) | set(stable)
    return 0.5 * sum(abs(canary.get(k, 0.0) - stable.get(k, 0.0)) for k in labels)


def evaluate(
    check: MetricCheck,
    canary: float | dict[str, float] | None,
    stable: float | dict[str, float] | None = None,
) -> CheckResult:
    """Judges one check over one interval.

    ``threshold`` compares the canary's value; ``ratio`` canary ÷ stable (0 ÷ 0 = 1, x ÷ 0 = inf);
    ``distance`` the total-variation distance of the two normalized vectors. A missing side, a NaN
    (Prometheus's ``histogram_quantile`` of no requests) or an empty or all-zero vector is "no data".

    Args:
        check: The check.
        canary: The canary's measurement (:func:`measure`): a number, a vector by label, or None.
        stable: The stable model's measurement; needed by ``ratio`` and ``distance`` only.

    Returns:
        The result; ``outcome`` is ``pass``, ``fail`` or ``no data``.
    """
    value: float | None = None
    missing: list[str] = []
    if check.kind == "distance":
        p_c, p_s = _distribution(canary), _distribution(stable)
        missing = [side for side, p in (("canary", p_c), ("stable", p_s)) if p is None]
        if p_c is not None and p_s is not None:
            value = total_variation(p_c, p_s)
    else:
        c = _scalar(canary)
        s = _scalar(stable) if check.kind == "ratio" else None
        missing = ["canary"] if c is None else []
        if check.kind == "ratio" and s is None:
            missing.append("stable")
        if c is not None and check.kind == "threshold":
            value = c
        elif c is not None and s is not None:
            value = (1.0 if c == 0 else math.inf) if s == 0 else c / s
    if value is None:
        outcome, detail = "no data", f"no data ({', '.join(missing)})"
    elif check.max is not None and not value <= check.max:
        outcome, detail = "fail", f"{_fmt(value)} > {_fmt(check.max)}"
    elif check.min is not None and not value >= check.min:
        outcome, detail = "fail", f"{_fmt(value)} < {_fmt(check.min)}"
    else:
        outcome, detail = "pass", f"{_fmt(value)} {check.bounds}"
    return CheckResult(
        name=check.name,
        kind=check.kind,
        value=value,
        canary=canary,
        stable=stable,
        threshold=check.bounds,
        outcome=outcome,
        detail=detail,
    )


def analyse(policy: RolloutPolicy, requests: float | None, results: Sequence[CheckResult]) -> Analysis:
    """One interval's verdict from the canary's request count and the checks' results.

    Too little traffic (``requests`` None or below ``min_requests``) is inconclusive whatever the checks
    say. Otherwise a failed check fails the interval, even when another check has no data (a canary
    answering only 5xx predicts nothing, and must not wait as "no data"); else a check without data
    makes it inconclusive; else it passes.

    Args:
        policy: The policy (its ``min_requests``).
        requests: Canary requests in the interval, or None when the requests query had no data.
        results: The checks' results (:func:`evaluate`).

    Returns:
        The analysis, with a one-line reason.
    """
    results = tuple(results)
    if requests is None or math.isnan(requests):
        return Analysis(None, results, "inconclusive", "no canary request count (the requests query returned no data)")
    if requests < policy.min_requests:
        return Analysis(
            requests,
            results,
            "inconclusive",
            f"{_fmt(requests)} canary requests, fewer than min_requests {policy.min_requests}",
        )
    failed = [r for r in results if r.outcome == "fail"]
    if failed:
        return Analysis(requests, results, "fail", ", ".join(r.describe() for r in failed))
    no_data = [r for r in results if r.outcome == "no data"]
    if no_data:
        return Analysis(
            requests,
            results,
            "inconclusive",
            "no data for " + ", ".join(f"{r.name} {r.detail.removeprefix('no data ')}" for r in no_data),
        )
    return Analysis(
        requests,
        results,
        "pass",
        f"{len(results)} check(s) passed over {_fmt(requests)} canary requests",
    )
