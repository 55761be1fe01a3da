"""Tests for serving.observe: ModelStats' running summaries and batch histograms, folded at the scrape."""

from __future__ import annotations

import numpy as np

from serving.observe import ModelStats


def test_model_stats_accumulate_running_summaries():
    stats = ModelStats("m", ["a", "b"], ["no", "yes"])
    stats.observe(np.array([[1.0, -2.0], [3.0, 4.0]], dtype=np.float32), np.array([0, 1]))
    stats.observe(np.array([[5.0, 0.0]], dtype=np.float32), np.array([1]))
    families = list(stats.families())  # a scrape folds what is pending
    np.testing.assert_array_equal(stats.count, [3, 3])
    np.testing.assert_allclose(stats.sum, [9.0, 2.0])
    np.testing.assert_allclose(stats.sum_squares, [35.0, 20.0])
    np.testing.assert_array_equal(stats.min, [1.0, -2.0])
    np.testing.assert_array_equal(stats.max, [5.0, 4.0])
    np.testing.assert_array_equal(stats.classes, [1, 2])
    samples = {(m.name, s.labels.get("feature") or s.labels.get("label")): s.value for m in families for s in m.samples}
    assert samples[("shipyard_feature_count", "a")] == 3 and samples[("shipyard_predictions", "yes")] == 2


def test_requests_scored_alone_count_as_model_calls_at_the_scrape():
    stats = ModelStats("m", ["a"], [])
    stats.observe(np.zeros((3, 1), dtype=np.float32), None, scored_alone=True)
    stats.observe(np.zeros((1, 1), dtype=np.float32), None, scored_alone=True)
    stats.observe(np.zeros((2, 1), dtype=np.float32), None)  # part of a batch the batcher counted
    list(stats.families())
    assert stats.batch_requests.counts[0] == 2 and sum(stats.batch_requests.counts) == 2
    assert stats.batch_rows.sum == 4.0 and sum(stats.batch_rows.counts) == 2


def test_model_stats_fold_pending_batches_by_themselves():
    stats = ModelStats("m", ["a"], [])
    for i in range(ModelStats.PENDING):
        stats.observe(np.array([[float(i)]], dtype=np.float32), None)
    assert stats.count[0] == ModelStats.PENDING and stats.max[0] == ModelStats.PENDING - 1, "folded at PENDING"
