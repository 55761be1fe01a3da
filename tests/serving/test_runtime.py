"""Tests for the runtime's parts in-process: adaptive batching, ServeConfig, routes, statistics, model classes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.batching import AdaptiveBatcher
from serving.config import ServeConfig
from serving.guard import route_of
from serving.model import MODEL_CLASSES, OnnxModel, SkopsModel, TorchScriptModel, model_for
from serving.observe import ModelStats
from shipyard.errors import ArtifactError, ConfigError


def _run(coro):
    return asyncio.run(coro)


def _recording(calls: list[int], factor: float = 1.0):
    """A model that records the rows of each call in ``calls`` and returns ``x * factor``."""

    def score(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x * factor

    return score


def test_concurrent_submits_share_calls_and_get_their_own_rows():
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(_recording(calls, 10), max_batch_size=64, max_wait_s=0.01)
        inputs = [np.full((1 + i % 3, 2), float(i), dtype=np.float32) for i in range(40)]
        outputs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        batcher.close()
        return inputs, outputs

    inputs, outputs = _run(main())
    for x, out in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(out, x * 10)
    assert sum(calls) == sum(len(x) for x in inputs) and len(calls) < len(inputs)
    assert max(calls) <= 64


def test_a_batch_with_company_takes_in_the_requests_of_the_next_loop_pass():
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(_recording(calls), max_batch_size=64, max_wait_s=0.0)
        one = np.ones((1, 2), dtype=np.float32)
        first = [asyncio.create_task(batcher.submit(one)) for _ in range(2)]
        await asyncio.sleep(0)  # two requests queued, the worker about to run
        late = [asyncio.create_task(batcher.submit(one)) for _ in range(3)]  # read by the loop meanwhile
        await asyncio.gather(*first, *late)
        batcher.close()

    _run(main())
    assert calls == [5], f"model calls {calls}: the late requests missed the batch"


def test_a_request_alone_is_not_held_back():
    async def main():
        batcher = AdaptiveBatcher(lambda x: x, max_batch_size=64, max_wait_s=5.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(np.ones((1, 2), dtype=np.float32))
        batcher.close()
        return loop.time() - start

    assert _run(main()) < 2.5, "a lone request waited for max_wait_s (5 s)"


def test_max_batch_size_caps_the_rows_per_call():
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(_recording(calls), max_batch_size=8, max_wait_s=0.01)
        await asyncio.gather(*(batcher.submit(np.ones((3, 1), dtype=np.float32)) for _ in range(20)))
        big = await batcher.submit(np.ones((20, 1), dtype=np.float32))  # larger than a batch: runs alone
        batcher.close()
        return big

    assert len(_run(main())) == 20
    assert max(calls[:-1]) <= 8 and calls[-1] == 20


def test_one_failing_request_does_not_fail_its_batch():
    def score(x: np.ndarray) -> np.ndarray:
        if (x < 0).any():
            raise ValueError("negative input")
        return x

    async def main():
        batcher = AdaptiveBatcher(score, max_batch_size=64, max_wait_s=0.01)
        inputs = [np.full((1, 1), -1.0 if i == 3 else float(i), dtype=np.float32) for i in range(10)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs), return_exceptions=True)
        batcher.close()
        return results

    results = _run(main())
    assert isinstance(results[3], ValueError)
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 3)


def test_serve_config_reads_the_environment_then_overrides():
    env = {"SHIPYARD_SERVE_BATCHING": "on", "SHIPYARD_SERVE_MAX_BATCH_SIZE": "16", "SHIPYARD_SERVE_PAYLOAD_LOG": "/x"}
    config = ServeConfig.from_env({"max_batch_size": 32, "payload_log": None}, environ=env)
    assert (config.batching, config.max_batch_size, config.payload_log) == ("on", 32, "/x")
    assert config.batching_for("sklearn-skops")
    assert ServeConfig().batching_for("torchscript") and not ServeConfig().batching_for("sklearn-skops")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHIPYARD_SERVE_BATCHING": "maybe"}, "batching must be auto, on or off"),
        ({"SHIPYARD_SERVE_MAX_BATCH_SIZE": "many"}, "max_batch_size"),
        ({"SHIPYARD_SERVE_MAX_BODY_BYTES": "10"}, "max_body_bytes must be >= 1024"),
    ],
)
def test_bad_serve_settings_are_config_errors_naming_the_setting(env, message):
    with pytest.raises(ConfigError, match=message):
        ServeConfig.from_env(environ=env)


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/models/bc:predict", "v1_predict"),
        ("/v2/models/bc/infer", "v2_infer"),
        ("/v2/models/bc/versions/3/infer", "v2_infer"),
        ("/v2/models/bc/ready", "v2_model_ready"),
        ("/v2/models/bc", "v2_model_metadata"),
        ("/v2/health/ready", "v2_health_ready"),
        ("/metrics", "metrics"),
        ("/v2/models/bc/infer/../../etc", "other"),
        ("/anything/else", "other"),
    ],
)
def test_routes_are_templates_not_raw_paths(path, route):
    assert route_of(path) == route


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


@pytest.mark.parametrize(("artifact", "cls"), [("baseline", SkopsModel), ("model", TorchScriptModel)])
def test_model_for_picks_the_class_of_the_artifacts_format(artifacts, artifact, cls):
    model = model_for("m", artifacts[artifact])
    assert type(model) is cls
    model.load()
    assert model.ready and (model.batcher is not None) == (cls is TorchScriptModel)
    model.stop()


def test_a_model_class_refuses_an_artifact_of_another_format(artifacts):
    with pytest.raises(ArtifactError, match="OnnxModel serves onnx, the artifact is sklearn-skops"):
        OnnxModel("m", artifacts["baseline"]).load()


def test_every_manifest_format_has_a_model_class():
    from shipyard.artifacts import MODEL_FORMATS

    assert set(MODEL_CLASSES) == set(MODEL_FORMATS)


def test_closing_after_the_loop_has_closed_is_quiet():
    async def main():
        batcher = AdaptiveBatcher(lambda x: x)
        await batcher.submit(np.ones((1, 1), dtype=np.float32))
        return batcher

    batcher = _run(main())  # asyncio.run closes its loop, as the server's shutdown does
    batcher.close()


def test_close_cancels_queued_requests():
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(lambda x: calls.append(len(x)) or x)
        tasks = [asyncio.ensure_future(batcher.submit(np.ones((1, 1), dtype=np.float32))) for _ in range(3)]
        await asyncio.sleep(0)  # the submits queue their rows; the worker has not run yet
        batcher.close()
        done, pending = await asyncio.wait(tasks, timeout=2)
        return done, pending

    done, pending = _run(main())
    assert not pending and all(t.cancelled() for t in done) and calls == [], "every queued request settles"


def test_an_error_outside_the_model_call_settles_the_batch():
    def broken_metrics(requests: int, rows: int) -> None:
        raise RuntimeError("metrics exploded")

    async def main():
        batcher = AdaptiveBatcher(lambda x: x, on_batch=broken_metrics)
        result = await asyncio.wait_for(
            asyncio.gather(batcher.submit(np.ones((1, 1), dtype=np.float32)), return_exceptions=True), 2
        )
        again = await asyncio.wait_for(
            asyncio.gather(batcher.submit(np.ones((1, 1), dtype=np.float32)), return_exceptions=True), 2
        )
        batcher.close()
        return result, again

    result, again = _run(main())
    assert isinstance(result[0], RuntimeError) and isinstance(again[0], RuntimeError), "the worker kept serving"


def test_unknown_serve_variables_are_errors():
    with pytest.raises(ConfigError, match="SHIPYARD_SERVE_SHUTDOWN_DELAY"):
        ServeConfig.from_env(environ={"SHIPYARD_SERVE_SHUTDOWN_DELAY": "5"})


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


@pytest.mark.parametrize("artifact", ["baseline", "model"])
def test_direct_v2_answers_exactly_as_kserves_infer_request_path(artifacts, artifact):
    """serving.fastpath's V2 route and KServe's (InferRequest → predict → to_rest) give the same JSON."""
    from kserve.protocol.infer_type import InferInput, InferRequest

    from serving.fastpath import v2_inputs
    from shipyard.artifacts import read_dataset

    df, _ = read_dataset(artifacts["test"])
    x = df.drop(columns=["target"]).head(3).to_numpy(dtype=np.float32)
    body = {
        "id": "r1",
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
    }
    model = model_for("m", artifacts[artifact], ServeConfig(batching="off"))
    model.load()
    direct = _run(model.infer_v2(*v2_inputs(body)))
    request = InferRequest("m", [InferInput("input", list(x.shape), "FP32", x.ravel().tolist())], request_id="r1")
    via_kserve, _ = _run(model.predict(request)).to_rest()
    model.stop()
    assert direct == via_kserve
