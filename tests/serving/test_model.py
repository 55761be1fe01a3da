"""Tests for serving.model: the model class of each format, and the direct V2 route against KServe's own path.

The scikit-learn cases run on the cheap baseline; the TorchScript ones need the trained MLP (slow).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.config import ServeConfig
from serving.model import MODEL_CLASSES, OnnxModel, SkopsModel, TorchScriptModel, model_for
from shipyard.errors import ArtifactError


def _run(coro):
    return asyncio.run(coro)


def _check_model_for(model_dir, cls) -> None:
    model = model_for("m", model_dir)
    assert type(model) is cls
    model.load()
    assert model.ready and (model.batcher is not None) == (cls is TorchScriptModel)
    model.stop()


def test_model_for_picks_the_skops_class_for_a_skops_artifact(baseline_artifacts):
    _check_model_for(baseline_artifacts["baseline"], SkopsModel)


@pytest.mark.slow
def test_model_for_picks_the_torchscript_class_for_a_torchscript_artifact(artifacts):
    _check_model_for(artifacts["model"], TorchScriptModel)


def test_a_model_class_refuses_an_artifact_of_another_format(baseline_artifacts):
    with pytest.raises(ArtifactError, match="OnnxModel serves onnx, the artifact is sklearn-skops"):
        OnnxModel("m", baseline_artifacts["baseline"]).load()


def test_every_manifest_format_has_a_model_class():
    from shipyard.artifacts import MODEL_FORMATS

    assert set(MODEL_CLASSES) == set(MODEL_FORMATS)


def _check_direct_v2_matches_kserve(model_dir, test_dir) -> None:
    """serving.fastpath's V2 route and KServe's (InferRequest → predict → to_rest) give the same JSON."""
    from kserve.protocol.infer_type import InferInput, InferRequest

    from serving.fastpath import v2_inputs
    from shipyard.artifacts import read_dataset

    df, _ = read_dataset(test_dir)
    x = df.drop(columns=["target"]).head(3).to_numpy(dtype=np.float32)
    body = {
        "id": "r1",
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
    }
    model = model_for("m", model_dir, ServeConfig(batching="off"))
    model.load()
    direct = _run(model.infer_v2(*v2_inputs(body)))
    request = InferRequest("m", [InferInput("input", list(x.shape), "FP32", x.ravel().tolist())], request_id="r1")
    via_kserve, _ = _run(model.predict(request)).to_rest()
    model.stop()
    assert direct == via_kserve


def test_direct_v2_answers_exactly_as_kserves_infer_request_path_for_skops(baseline_artifacts):
    _check_direct_v2_matches_kserve(baseline_artifacts["baseline"], baseline_artifacts["test"])


@pytest.mark.slow
def test_direct_v2_answers_exactly_as_kserves_infer_request_path_for_torchscript(artifacts):
    _check_direct_v2_matches_kserve(artifacts["model"], artifacts["test"])
