"""What the server exposes about itself: Prometheus metrics (the HTTP guard is serving.guard).

Metrics (on KServe's ``/metrics``, Prometheus' default registry):

- ``shipyard_requests_total{route, status}`` and ``shipyard_request_duration_seconds{route}``:
  every HTTP request, by route template (never the raw path) and status code;
- ``shipyard_batch_rows{model}`` / ``shipyard_batch_requests{model}`` (histograms): rows and
  requests per model call (1 request per call without batching);
- ``shipyard_predictions_total{model, label}``: predicted classes;
- ``shipyard_unknown_categories_total{model, feature}``: values of a categorical feature outside
  its vocabulary (served through the unknown bucket, not refused);
- ``shipyard_payload_records_total{model, outcome}``: payload-log records written, dropped, failed;
- ``shipyard_feature_{count,sum,sum_squares}_total{model, feature}`` and
  ``shipyard_feature_{min,max}{model, feature}``: running summaries of every input feature, from
  which mean and standard deviation follow — what a drift check can read without payload logs.
  For a model with preprocessing they summarize the columns the model takes
  (``Preprocessing.output_names``: imputed and scaled numbers, missing indicators, category codes).

Every figure is kept in plain Python/numpy containers and turned into metric families only when
``/metrics`` is scraped: a request costs a dict update, a bisect and an append (the feature
summaries fold their pending batches every 256 requests), not prometheus_client's locked label
lookups. Updates happen on the event loop (and ModelStats under its lock).
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Buckets:
    """A histogram's counts in a plain list: observing is a bisect and two additions."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds, self.counts, self.sum = bounds, [0] * (len(bounds) + 1), 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Counts ``value`` (``times`` times) in the first bucket whose bound is >= it (+Inf last)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus exposes them."""
        out, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else str(float(bound)), float(running)))
        return out


class RequestStats:
    """``shipyard_requests_total`` and ``shipyard_request_duration_seconds``, kept in plain dicts.

    Counting a request is a dict update and a bisect (about 1 µs); prometheus_client's labelled
    Counter and Histogram took several µs per request behind their locks. Updates and scrapes
    both run on the event loop, so nothing is shared across threads.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Buckets] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Counts one request."""
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        buckets = self.latency.get(route)
        if buckets is None:
            buckets = self.latency[route] = Buckets(LATENCY_BUCKETS)
        buckets.observe(seconds)

    def families(self) -> Iterator[Metric]:
        """The two metric families for one scrape."""
        requests = CounterMetricFamily(
            "shipyard_requests", "HTTP requests by route and status.", labels=["route", "status"]
        )
        for (route, status), n in sorted(self.counts.items()):
            requests.add_metric([route, str(status)], float(n))
        yield requests
        latency = HistogramMetricFamily(
            "shipyard_request_duration_seconds", "HTTP request latency by route.", labels=["route"]
        )
        for route, buckets in sorted(self.latency.items()):
            latency.add_metric([route], buckets.cumulative(), buckets.sum)
        yield latency


REQUEST_STATS = RequestStats()


class ModelStats:
    """Running per-feature summaries, predicted-class counts and unseen categories of one served model.

    Args:
        model: The served model's name.
        features: The columns of the matrix the model takes (the raw features of an all-numeric
            model; ``Preprocessing.output_names`` of one with preprocessing).
        labels: The class labels (empty for regression).
        categorical: The categorical features, whose values outside the vocabulary are counted
            (each starts at 0, so the series exists before the first unseen value).
    """

    def __init__(self, model: str, features: list[str], labels: list[Any], categorical: list[str] | None = None):
        self.model, self.features, self.labels = model, features, [str(v) for v in labels]
        self.unknown: dict[str, int] = dict.fromkeys(categorical or (), 0)
        k = len(features)
        self.count = np.zeros(k, dtype=np.int64)
        self.sum = np.zeros(k)
        self.sum_squares = np.zeros(k)
        self.min = np.full(k, np.inf)
        self.max = np.full(k, -np.inf)
        self.classes = np.zeros(len(labels), dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray | list[int] | None, bool]] = []
        self._rows = array("f")  # observe_row: flat float32 rows ...
        self._row_classes: list[int | None] = []  # ... and their class indices
        self._lock = threading.Lock()
        self.batch_rows, self.batch_requests = Buckets(BATCH_ROW_BUCKETS), Buckets(BATCH_REQUEST_BUCKETS)

    def observe_unknown(self, counts: dict[str, int]) -> None:
        """Counts values outside a categorical feature's vocabulary: ``{feature: how many}``."""
        with self._lock:
            for feature, n in counts.items():
                self.unknown[feature] = self.unknown.get(feature, 0) + n

    def observe_batch(self, requests: int, rows: int) -> None:
        """Counts one model call: how many requests and rows it served."""
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)

    #: Scored batches kept before they are folded into the summaries (also folded at every scrape).
    PENDING = 256

    def observe(self, x: np.ndarray, class_index: np.ndarray | list[int] | None, scored_alone: bool = False) -> None:
        """Adds a scored request: ``x`` [rows, features] (finite), ``class_index`` [rows] or None.

        ``scored_alone``: the model was called for this request only (no batching), so it also
        counts as one model call of one request and ``len(x)`` rows. The request is only kept (the
        caller does not change ``x`` afterwards); every ``PENDING`` requests, or when read, they
        are stacked and folded in at once — a few vector operations per 256 requests instead of
        six per request.
        """
        with self._lock:
            self._pending.append((x, class_index, scored_alone))
            if len(self._pending) + len(self._row_classes) >= self.PENDING:
                self._fold()

    def observe_row(self, row: array, class_index: int | None) -> None:
        """Adds one row scored alone (float32 ``array``, finite) and its class index (None: regression).

        The row path of :class:`~serving.model.ShipyardModel` calls this; rows are appended to one
        flat float32 buffer and folded with the pending requests.
        """
        with self._lock:
            self._rows.extend(row)
            self._row_classes.append(class_index)
            if len(self._pending) + len(self._row_classes) >= self.PENDING:
                self._fold()

    def _fold(self) -> None:
        """Folds the pending requests into the summaries (the lock is held)."""
        if not self._pending and not self._row_classes:
            return
        for x, _, alone in self._pending:
            if alone:
                self.observe_batch(1, len(x))
        blocks = [x for x, _, _ in self._pending]
        classes = [c for _, c, _ in self._pending if c is not None]
        if self._row_classes:  # one model call, one request and one row each
            self.batch_rows.observe(1, len(self._row_classes))
            self.batch_requests.observe(1, len(self._row_classes))
            blocks.append(np.frombuffer(self._rows, dtype=np.float32).reshape(len(self._row_classes), -1))
            if self._row_classes[0] is not None:
                classes.append(np.array(self._row_classes, dtype=np.int64))
        wide = np.concatenate(blocks).astype(np.float64, copy=False)
        self._pending, self._rows, self._row_classes = [], array("f"), []
        self.count += len(wide)
        self.sum += wide.sum(axis=0)
        self.sum_squares += np.einsum("ij,ij->j", wide, wide)
        np.minimum(self.min, wide.min(axis=0), out=self.min)
        np.maximum(self.max, wide.max(axis=0), out=self.max)
        if classes and len(self.classes):
            self.classes += np.bincount(np.concatenate(classes), minlength=len(self.classes))[: len(self.classes)]

    def families(self) -> Iterator[Metric]:
        """The metric families for one scrape."""
        with self._lock:
            self._fold()
            count, total, squares = self.count.copy(), self.sum.copy(), self.sum_squares.copy()
            low, high, classes = self.min.copy(), self.max.copy(), self.classes.copy()
            unknown = dict(self.unknown)
        labels = ["model", "feature"]
        families: dict[str, Any] = {
            "count": CounterMetricFamily("shipyard_feature_count", "Rows seen per feature.", labels=labels),
            "sum": CounterMetricFamily("shipyard_feature_sum", "Sum of a feature's values.", labels=labels),
            "sum_squares": CounterMetricFamily(
                "shipyard_feature_sum_squares", "Sum of a feature's squared values.", labels=labels
            ),
            "min": GaugeMetricFamily("shipyard_feature_min", "Smallest value seen.", labels=labels),
            "max": GaugeMetricFamily("shipyard_feature_max", "Largest value seen.", labels=labels),
        }
        for i, feature in enumerate(self.features):
            key = [self.model, feature]
            families["count"].add_metric(key, float(count[i]))
            families["sum"].add_metric(key, float(total[i]))
            families["sum_squares"].add_metric(key, float(squares[i]))
            if count[i]:
                families["min"].add_metric(key, float(low[i]))
                families["max"].add_metric(key, float(high[i]))
        yield from families.values()
        for name, doc, buckets in (
            ("shipyard_batch_rows", "Rows per model call.", self.batch_rows),
            ("shipyard_batch_requests", "Requests per model call.", self.batch_requests),
        ):
            family = HistogramMetricFamily(name, doc, labels=["model"])
            family.add_metric([self.model], buckets.cumulative(), buckets.sum)
            yield family
        predicted = CounterMetricFamily("shipyard_predictions", "Predicted classes.", labels=["model", "label"])
        for label, n in zip(self.labels, classes, strict=True):
            predicted.add_metric([self.model, label], float(n))
        yield predicted
        if unknown:
            unseen = CounterMetricFamily(
                "shipyard_unknown_categories",
                "Values of a categorical feature outside its vocabulary (scored as the unknown category).",
                labels=["model", "feature"],
            )
            for feature, times in unknown.items():
                unseen.add_metric([self.model, feature], float(times))
            yield unseen


class _StatsCollector:
    """One registry collector for every served model's :class:`ModelStats`."""

    def __init__(self) -> None:
        self.models: dict[str, ModelStats] = {}
        self.payload_loggers: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        yield from REQUEST_STATS.families()
        merged: dict[str, Metric] = {}
        for stats in list(self.models.values()):
            for family in stats.families():
                if family.name in merged:
                    merged[family.name].samples.extend(family.samples)
                else:
                    merged[family.name] = family
        yield from merged.values()
        if self.payload_loggers:
            records = CounterMetricFamily(
                "shipyard_payload_records", "Payload-log records by outcome.", labels=["model", "outcome"]
            )
            for model, payload_logger in list(self.payload_loggers.items()):
                for outcome in ("written", "dropped", "failed"):
                    records.add_metric([model, outcome], float(getattr(payload_logger, outcome)))
            yield records


COLLECTOR = _StatsCollector()
REGISTRY.register(COLLECTOR)  # type: ignore[arg-type]  # prometheus_client's Collector protocol


def register_stats(stats: ModelStats) -> None:
    """Exposes a model's summaries on ``/metrics`` (replacing an earlier model of the same name)."""
    COLLECTOR.models[stats.model] = stats


def register_payload_logger(model: str, payload_logger: Any) -> None:
    """Exposes a payload logger's written / dropped / failed record counts on ``/metrics``."""
    COLLECTOR.payload_loggers[model] = payload_logger
