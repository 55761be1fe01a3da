"""Tests for the one-row path: one plain row to a folded linear model, scored in Python floats.

Each answer is compared with the numpy path's (the same model with the path turned off), and odd
or bad rows must get exactly the numpy path's answer or error.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.config import ServeConfig
from serving.model import model_for
from serving.observe import ModelStats


def _run(coro):
    return asyncio.run(coro)


def _linear_artifact(path, task):
    """A standardized linear scikit-learn artifact (the training step's baseline) on breast cancer
    (binary, integer labels), wine (multiclass, string labels) or diabetes (regression), and its rows."""
    from components.reference import sklearn_data
    from components.train_model.core import fit_baseline, save_sklearn_model

    data = sklearn_data(task, ["a", "b", "c"] if task == "multiclass" else None)
    save_sklearn_model(str(path), fit_baseline(data), data, {}, {})
    return path, data.x


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """task → (model directory, 100 of its rows), fitted in well under a second each."""
    root = tmp_path_factory.mktemp("linear")
    models = {}
    for task in ("binary", "multiclass", "regression"):
        model_dir, x = _linear_artifact(root / task, task)
        models[task] = model_dir, x[np.random.default_rng(1).permutation(len(x))[:100]]
    return models


def _row_body(row, shape=None, datatype="FP32", name="input"):
    return {"inputs": [{"name": name, "shape": shape or [1, len(row)], "datatype": datatype, "data": row}]}


def _lane_and_plain(model_dir):
    """The same artifact loaded twice: with the one-row path, and with it turned off (numpy only)."""
    lane, plain = (model_for("m", model_dir, ServeConfig(batching="off")) for _ in range(2))
    lane.load()
    plain.load()
    assert lane._score_row is not None, "a linear scikit-learn model offers the one-row path"
    plain._score_row = None
    return lane, plain


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_one_row_path_answers_as_the_numpy_path(linear, task):
    from serving.fastpath import v2_inputs

    model_dir, x = linear[task]
    lane, plain = _lane_and_plain(model_dir)
    exact = 0
    for i, row in enumerate(x.tolist()):
        shape = [len(row)] if i % 2 else None  # [features] and [1, features] both take the path
        got = _run(lane.infer_v2(*v2_inputs(_row_body(row, shape))))
        want = _run(plain.infer_v2(*v2_inputs(_row_body(row, shape))))
        got_out, want_out = got.pop("outputs"), want.pop("outputs")
        assert got.keys() == want.keys() and got["model_name"] == want["model_name"]
        assert [(o["name"], o["shape"], o["datatype"]) for o in got_out] == [
            (o["name"], o["shape"], o["datatype"]) for o in want_out
        ]
        if task != "regression":
            assert got_out[0]["data"] == want_out[0]["data"], f"row {i}: another label"
        np.testing.assert_allclose(got_out[-1]["data"], want_out[-1]["data"], rtol=1e-6, atol=1e-7)
        exact += got_out == want_out
    assert len(lane.stats._row_classes) == len(x), "every row took the one-row path"
    assert exact >= 0.9 * len(x), f"only {exact}/{len(x)} answers identical to the numpy path's"
    assert len(plain.stats._row_classes) == 0


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: (r[:3] + [1e39] + r[4:], None, "FP32"), id="past-float32"),
        pytest.param(lambda r: (r[:3] + ["1.5"] + r[4:], None, "FP32"), id="numeric-string"),
        pytest.param(lambda r: (r[:3] + [None] + r[4:], None, "FP32"), id="null"),
        pytest.param(lambda r: ([r], None, "FP32"), id="nested"),
        pytest.param(lambda r: (r, None, "FP64"), id="fp64"),
        pytest.param(lambda r: ([int(v) for v in r], None, "INT64"), id="int64"),
        pytest.param(lambda r: (r + r, [2, len(r)], "FP32"), id="two-rows"),
        pytest.param(lambda r: (r[:-1], [1, len(r) - 1], "FP32"), id="short"),
    ],
)
def test_one_row_path_leaves_other_and_bad_rows_to_the_numpy_path(linear, change):
    """Anything but one plain row of finite JSON numbers gets exactly the numpy path's answer or error."""
    from kserve.errors import InvalidInput

    from serving.fastpath import v2_inputs

    lane, plain = _lane_and_plain(linear["binary"][0])
    row = [float(v) for v in range(1, len(lane._features) + 1)]
    data, shape, datatype = change(row)
    body = _row_body(data, shape or [1, len(row)], datatype)

    def answer(model):
        try:
            return _run(model.infer_v2(*v2_inputs(body)))
        except InvalidInput as exc:
            return f"InvalidInput: {exc}"

    got, want = answer(lane), answer(plain)
    if isinstance(want, dict):
        want["id"] = got["id"]  # made-up ids differ by counter
    assert got == want
    assert len(lane.stats._row_classes) == 0, "the one-row path answered"


def test_one_row_path_is_off_with_batching_or_payload_logging(linear, tmp_path):
    from serving.payload_log import PayloadLogger

    baseline, _ = linear["binary"]
    batched = model_for("m", baseline, ServeConfig(batching="on"))
    batched.load()
    payload_logger = PayloadLogger(str(tmp_path / "log"), "m")
    logged = model_for("m", baseline, ServeConfig(batching="off"), payload_logger)
    logged.load()
    try:
        assert batched._score_row is None and logged._score_row is None
    finally:
        batched.stop()
        logged.stop()
        payload_logger.close()


def test_model_stats_fold_rows_scored_alone_with_the_other_requests():
    from array import array

    stats = ModelStats("m", ["a", "b"], ["no", "yes"])
    stats.observe(np.array([[1.0, -2.0], [3.0, 4.0]], dtype=np.float32), np.array([0, 1]))  # part of a batch
    stats.observe_row(array("f", [5.0, 0.0]), 1)
    stats.observe_row(array("f", [-1.0, 6.0]), 0)
    list(stats.families())
    np.testing.assert_array_equal(stats.count, [4, 4])
    np.testing.assert_allclose(stats.sum, [8.0, 8.0])
    np.testing.assert_allclose(stats.sum_squares, [36.0, 56.0])
    np.testing.assert_array_equal(stats.min, [-1.0, -2.0])
    np.testing.assert_array_equal(stats.max, [5.0, 6.0])
    np.testing.assert_array_equal(stats.classes, [2, 2])
    assert stats.batch_requests.counts[0] == 2 and stats.batch_rows.sum == 2.0, "two calls of one row"
    stats.observe_row(array("f", [7.0, 7.0]), 1)  # the buffer is fresh after a fold
    list(stats.families())
    np.testing.assert_array_equal(stats.count, [5, 5])
    assert stats.max[0] == 7.0


def test_outputs_past_float32_are_a_model_fault_naming_the_row_on_every_path(linear):
    """Finite inputs far outside the training range can push a prediction past float32: that is an
    error naming the row, never a 200 with null (JSON has no Inf): the model's fault (InferenceError,
    HTTP 500), not the client's — and in a batch only that request fails."""
    from kserve.errors import InferenceError

    from serving.fastpath import v2_inputs

    model_dir, x = linear["regression"]
    lane, plain = _lane_and_plain(model_dir)
    good, huge = x[0].tolist(), [3e38] * x.shape[1]
    for model in (lane, plain):
        for body, row in ((_row_body(huge), 0), (_row_body(good + huge, [2, x.shape[1]]), 1)):
            with pytest.raises(InferenceError, match=rf"output for row {row} is \[.*\], not finite in float32"):
                _run(model.infer_v2(*v2_inputs(body)))
        with pytest.raises(InferenceError, match="not finite in float32"):
            _run(model.predict({"instances": [huge]}))
    batched = model_for("m", model_dir, ServeConfig(batching="on"))
    batched.load()

    async def together():
        requests = [batched.infer_v2(*v2_inputs(_row_body(r))) for r in (good, huge, good)]
        return await asyncio.gather(*requests, return_exceptions=True)

    answers = _run(together())
    batched.stop()
    assert isinstance(answers[1], InferenceError)
    assert [a["outputs"][0]["data"] for a in (answers[0], answers[2])] == [
        _run(plain.infer_v2(*v2_inputs(_row_body(good))))["outputs"][0]["data"]
    ] * 2


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_one_row_path_answers_v1_as_the_numpy_path(linear, task):
    model_dir, x = linear[task]
    lane, plain = _lane_and_plain(model_dir)
    exact = 0
    for i, row in enumerate(x.tolist()):
        body = {"instances": row if i % 2 else [row]}  # one flat row is one instance too
        got, want = _run(lane.predict(body)), _run(plain.predict(body))
        assert got.keys() == want.keys()
        if task == "regression":
            np.testing.assert_allclose(got["predictions"], want["predictions"], rtol=1e-12)
        else:
            assert got["predictions"] == want["predictions"], f"row {i}: another label"
            np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1.1e-6)
        exact += got == want
    assert len(lane.stats._row_classes) == len(x), "every row took the one-row path"
    if task != "regression":  # V1 regression values are float64: the summation order shows in the last bits
        assert exact >= 0.9 * len(x), f"only {exact}/{len(x)} answers identical to the numpy path's"


@pytest.mark.parametrize(
    "instances",
    [
        pytest.param(lambda r: [r[:3] + [1e39] + r[4:]], id="past-float32"),
        pytest.param(lambda r: [r[:3] + [3.4028235e38] + r[4:]], id="float32-max"),
        pytest.param(lambda r: [r[:3] + [3.40282356e38] + r[4:]], id="just-past-float32-max"),
        pytest.param(lambda r: [r[:3] + ["1.5"] + r[4:]], id="numeric-string"),
        pytest.param(lambda r: [r[:3] + [None] + r[4:]], id="null"),
        pytest.param(lambda r: [r[:3] + [True] + r[4:]], id="bool"),
        pytest.param(lambda r: [r, r], id="two-rows"),
        pytest.param(lambda r: [r[:-1]], id="short"),
        pytest.param(lambda r: [[r]], id="nested"),
        pytest.param(lambda r: [dict(enumerate(r))], id="record"),
        pytest.param(lambda r: [], id="empty"),
        pytest.param(lambda r: "1,2,3", id="string"),
    ],
)
def test_one_row_path_leaves_other_and_bad_v1_rows_to_the_numpy_path(linear, instances):
    from kserve.errors import InvalidInput

    lane, plain = _lane_and_plain(linear["binary"][0])
    row = [float(v) for v in range(1, len(lane._features) + 1)]
    body = {"instances": instances(row)}

    def answer(model):
        try:
            return _run(model.predict(body))
        except InvalidInput as exc:
            return f"InvalidInput: {exc}"

    got = answer(lane)
    assert got == answer(plain)
    taken = len(lane.stats._row_classes)
    assert taken == (1 if "True" in repr(body) else 0), "only one plain row of numbers takes the one-row path"


def test_a_model_whose_fold_is_refused_is_served_by_scikit_learn(linear, monkeypatch):
    """A fold that fails its agreement check (here a zero tolerance, as a wrong bound would give) is
    not used: no one-row path, no folded scorer, and every answer is scikit-learn's own, V1 and V2."""
    import skops.io as sio

    from serving.fastpath import v2_inputs
    from serving.formats import LinearFold, LinearScorer

    model_dir, x = linear["multiclass"]
    monkeypatch.setattr(LinearFold, "tolerance", lambda self, rows: np.zeros((len(rows), 3)))
    model = model_for("m", model_dir, ServeConfig(batching="off"))
    model.load()
    assert model._score_row is None and not isinstance(model.loaded._scorer, LinearScorer), "the fold was used"
    weights = model_dir / "model.skops"
    sklearn = sio.load(weights, trusted=sio.get_untrusted_types(file=weights))
    names = np.array(["a", "b", "c"])
    for i, row in enumerate(x[:5].tolist()):
        (p,) = sklearn.predict_proba(x[i : i + 1])  # one row, as the server calls it (another batch shape
        # may take another BLAS kernel and round differently)
        v2 = _run(model.infer_v2(*v2_inputs(_row_body(row))))
        assert v2["outputs"][0]["data"] == [names[p.argmax()]]
        assert v2["outputs"][1]["data"] == p.astype(np.float32).tolist()
        v1 = _run(model.predict({"instances": [row]}))
        assert v1 == {"predictions": [names[p.argmax()]], "probabilities": [p.round(6).tolist()]}
    assert len(model.stats._row_classes) == 0, "the one-row path answered"
