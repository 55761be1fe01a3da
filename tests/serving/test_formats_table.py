"""The one table of model formats (shipyard.formats.FORMATS): every place that names a format derives it."""

from __future__ import annotations

import functools

import pytest

from serving.config import ServeConfig
from serving.formats import LOADERS, TRUSTED_SKOPS_TYPES, WEIGHTS_FILE
from serving.model import MODEL_CLASSES
from serving.rollout import isvc
from shipyard.artifacts import MODEL_FORMATS
from shipyard.formats import FORMATS


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_in_the_table_has_a_loader_a_class_and_its_facts(name):
    fmt = FORMATS[name]
    assert name in LOADERS, f"no loader for {name}"
    assert MODEL_CLASSES[name].format == name, f"no model class for {name}"
    assert WEIGHTS_FILE[name] == fmt.weights_file
    assert ServeConfig().batching_for(name) == fmt.batched, "batching=auto follows the table"
    assert isvc.model_format_name(name) == fmt.kserve_name == f"shipyard-{name}"


def test_nothing_names_a_format_the_table_does_not_hold():
    assert MODEL_FORMATS == tuple(FORMATS)
    assert set(LOADERS) == set(MODEL_CLASSES) == set(WEIGHTS_FILE) == set(FORMATS)
    assert isvc.SERVED_FORMATS == tuple(n for n, f in FORMATS.items() if f.in_image)
    assert all(not f.in_image for f in FORMATS.values() if f.extra), "the image carries no extras"


def test_the_serving_runtime_advertises_the_image_formats_by_their_kserve_names():
    runtime = isvc.render_serving_runtime("img")
    names = [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert names == [FORMATS[n].kserve_name for n in isvc.SERVED_FORMATS]


def test_trusting_functools_partial_does_not_trust_what_it_wraps(tmp_path):
    """HistGradientBoosting needs functools.partial trusted; a partial over builtins.eval is still refused."""
    import skops.io as sio

    from serving.formats import _load_skops
    from shipyard.errors import UnsafeArtifactError

    assert "functools.partial" in TRUSTED_SKOPS_TYPES
    path = tmp_path / "model.skops"
    sio.dump(functools.partial(eval, "1"), path)
    with pytest.raises(UnsafeArtifactError, match="builtins.eval"):
        _load_skops(path, None)  # type: ignore[arg-type]
