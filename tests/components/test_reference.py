"""Tests for components.reference: the one builder of the reference artifacts for tests and benchmarks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.reference import build_reference
from serving.formats import load_model
from shipyard.artifacts import read_dataset, read_model_manifest


def test_the_baseline_reference_has_the_splits_and_a_skops_baseline(baseline_artifacts):
    assert set(baseline_artifacts) == {"dataset", "train", "val", "test", "baseline"}
    rows = [len(read_dataset(baseline_artifacts[s])[0]) for s in ("dataset", "train", "val", "test")]
    assert rows[0] == 569 and sum(rows[1:]) == 569
    manifest = read_model_manifest(baseline_artifacts["baseline"], verify=True)
    assert (manifest.format, manifest.task, manifest.details["role"]) == ("sklearn-skops", "binary", "baseline")
    assert manifest.metrics["val_loss"] > 0


def test_quantize_without_the_mlp_is_refused_before_anything_is_built(tmp_path):
    from components.quantize_model.core import QuantizeConfig

    with pytest.raises(ValueError, match="quantize needs mlp"):
        build_reference(tmp_path / "ref", quantize=QuantizeConfig())
    assert not (tmp_path / "ref").exists()


def _manifest_without_volatile_fields(path) -> dict:
    manifest = json.loads((path / "model.json").read_text())
    return {k: v for k, v in manifest.items() if k not in ("created_at", "files")}  # skops zips carry a time


@pytest.mark.slow
def test_the_baseline_alone_is_the_baseline_train_writes_beside_the_mlp(baseline_artifacts, artifacts):
    """The fast builder fits the baseline as train_model's ``train`` does: same manifest, same scores."""
    assert set(artifacts) == {"dataset", "train", "val", "test", "baseline", "model", "quantized"}
    fast, full = baseline_artifacts["baseline"], artifacts["baseline"]
    assert _manifest_without_volatile_fields(fast) == _manifest_without_volatile_fields(full)
    df, _ = read_dataset(artifacts["test"])
    x = df.drop(columns=["target"]).to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(load_model(fast).scores(x), load_model(full).scores(x))
    assert read_model_manifest(artifacts["quantized"]).parent is not None
