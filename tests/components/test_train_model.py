"""Tests for components.train_model.core: config, artifacts, TorchScript parity, early stopping."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from components.train_model import core
from serving.formats import fold_linear, load_model
from shipyard.artifacts import infer_schema, read_model_manifest, write_dataset
from shipyard.errors import ConfigError, DataValidationError

SMALL = {"max_epochs": 4, "patience": 4, "width": 16, "depth": 1}


@pytest.fixture(scope="module")
def trained(baseline_artifacts, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("train")
    summary = core.train(
        str(baseline_artifacts["train"]),
        str(baseline_artifacts["val"]),
        str(root / "model"),
        str(root / "baseline"),
        core.TrainConfig.from_dict(SMALL),
    )
    return {"summary": summary, "model": root / "model", "baseline": root / "baseline"}


# --- TrainConfig ---------------------------------------------------------------------------------


def test_from_dict_names_an_unknown_key_and_the_allowed_ones():
    with pytest.raises(ConfigError) as exc:
        core.TrainConfig.from_dict({"max_epoch": 5})
    assert "unknown key(s) 'max_epoch'" in str(exc.value) and "max_epochs" in str(exc.value)


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"width": 0}, "width must be in 1..4096"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"lr": 0}, "lr must be > 0"),
        ({"device": "tpu"}, "device must be auto, cpu or cuda"),
        ({"task": "ranking"}, "task must be auto, binary, multiclass or regression"),
        ({"width": "64"}, "'width' must be int"),
    ],
)
def test_from_dict_rejects_bad_values(values, fragment):
    with pytest.raises(ConfigError) as exc:
        core.TrainConfig.from_dict(values)
    assert fragment in str(exc.value)


def test_from_dict_accepts_integral_floats_as_kfp_passes_them():
    config = core.TrainConfig.from_dict({"max_epochs": 5.0, "width": 32.0})
    assert config.max_epochs == 5 and isinstance(config.width, int)


# --- train() -------------------------------------------------------------------------------------


def test_train_writes_a_torchscript_artifact_and_a_skops_baseline(trained):
    summary = trained["summary"]
    assert summary["task"] == "binary" and summary["device"] == "cpu"
    assert 1 <= summary["epochs"] <= SMALL["max_epochs"]
    assert math.isfinite(summary["best_val_loss"]) and math.isfinite(summary["baseline_val_loss"])

    model = read_model_manifest(trained["model"])
    assert model.format == "torchscript" and model.task == "binary"
    assert set(model.files) == {core.TORCHSCRIPT_FILE, core.STATE_DICT_FILE}
    assert model.label == "target" and model.label_names == (0, 1)
    assert len(model.feature_names) == 30 and "target" not in model.feature_names
    assert model.metrics == {"val_loss": summary["best_val_loss"]}
    assert model.details["architecture"] == {"n_features": 30, "n_outputs": 2, "width": 16, "depth": 1, "dropout": 0.1}
    assert model.details["params"]["max_epochs"] == SMALL["max_epochs"]

    baseline = read_model_manifest(trained["baseline"])
    assert baseline.format == "sklearn-skops" and set(baseline.files) == {core.SKOPS_FILE}
    assert baseline.details["role"] == "baseline" and baseline.details["estimator"] == "LogisticRegression"
    assert baseline.input_schema == model.input_schema and baseline.label_names == model.label_names
    assert baseline.metrics == {"val_loss": summary["baseline_val_loss"]}


def test_torchscript_equals_the_rebuilt_state_dict_module(trained, baseline_artifacts):
    manifest = read_model_manifest(trained["model"])
    val = core.load_split(str(baseline_artifacts["val"]), manifest.task, list(manifest.label_names))
    x = torch.from_numpy(val.x)

    scripted = torch.jit.load(str(trained["model"] / core.TORCHSCRIPT_FILE))
    mlp = core.build_module(manifest.details["architecture"])
    mlp.load_state_dict(torch.load(trained["model"] / core.STATE_DICT_FILE, weights_only=True))
    rebuilt = core.scoring_module(mlp.eval(), manifest.task).eval()
    with torch.no_grad():
        a, b = scripted(x).numpy(), rebuilt(x).numpy()

    assert a.shape == (len(val.x), 2)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    np.testing.assert_allclose(load_model(trained["model"]).scores(val.x), a, atol=1e-6, rtol=0)


def test_baseline_val_loss_is_its_log_loss_on_val(trained, baseline_artifacts):
    """The served scores' log loss is the recorded one (scikit-learn's), up to float32 rounding.

    The served baseline is the float64 fold of scikit-learn's float32 pipeline: each row's logit
    may differ by the fold's decision bound (serving.formats.LinearFold), and a logit change of d
    moves -log p by at most d.
    """
    import skops.io as sio
    from sklearn.metrics import log_loss

    val = core.load_split(str(baseline_artifacts["val"]), "binary", [0, 1])
    scores = load_model(trained["baseline"]).scores(val.x)
    weights = trained["baseline"] / core.SKOPS_FILE
    model = sio.load(weights, trusted=sio.get_untrusted_types(file=weights))
    bound = float(np.mean(fold_linear(model, load_model(trained["baseline"]).manifest).decision_tolerance(val.x)))
    assert abs(log_loss(val.y, scores) - trained["summary"]["baseline_val_loss"]) <= bound


def test_early_stopping_stops_patience_epochs_after_the_best(baseline_artifacts):
    tr = core.load_split(str(baseline_artifacts["train"]))
    va = core.load_split(str(baseline_artifacts["val"]), tr.task, tr.label_names)
    losses: list[float] = []
    config = core.TrainConfig(max_epochs=40, patience=1, lr=0.05, width=16, depth=1)

    _, info = core.fit_mlp(tr, va, config, on_epoch=lambda epoch, loss: losses.append(loss))

    assert info["epochs"] < config.max_epochs
    assert info["epochs"] == info["best_epoch"] + config.patience + 1 == len(losses)
    assert info["best_val_loss"] == min(losses) < losses[-1]


def test_best_epoch_weights_are_restored(baseline_artifacts):
    tr = core.load_split(str(baseline_artifacts["train"]))
    va = core.load_split(str(baseline_artifacts["val"]), tr.task, tr.label_names)
    config = core.TrainConfig(max_epochs=40, patience=1, lr=0.05, width=16, depth=1)

    mlp, info = core.fit_mlp(tr, va, config)

    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(mlp(torch.from_numpy(va.x)), torch.from_numpy(va.y))
    assert float(loss) == pytest.approx(info["best_val_loss"], rel=1e-5)
    assert not mlp.training


def test_regression_on_diabetes(tmp_path):
    from components.ingest_data.core import IngestConfig, ingest
    from components.split_data.core import SplitConfig, split

    ingest("sklearn:diabetes", str(tmp_path / "ds"), IngestConfig())
    split(str(tmp_path / "ds"), str(tmp_path / "train"), str(tmp_path / "val"), str(tmp_path / "test"), SplitConfig())

    summary = core.train(
        str(tmp_path / "train"),
        str(tmp_path / "val"),
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        core.TrainConfig.from_dict(SMALL),
    )

    assert summary["task"] == "regression"
    assert math.isfinite(summary["best_val_loss"]) and summary["best_val_loss"] > 0
    assert math.isfinite(summary["baseline_val_loss"])
    manifest = read_model_manifest(tmp_path / "model")
    assert manifest.task == "regression" and manifest.label_names == ()
    assert manifest.details["architecture"]["n_outputs"] == 1
    assert read_model_manifest(tmp_path / "baseline").details["estimator"] == "Ridge"
    val = core.load_split(str(tmp_path / "val"), "regression")
    predictions = load_model(tmp_path / "model").scores(val.x)
    assert predictions.shape == (len(val.y),)
    # Served predictions are in the label's units (target scaling is undone by the serving head).
    assert abs(predictions.mean() - val.y.mean()) < val.y.std()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
def test_cuda_without_a_gpu_is_a_config_error(tmp_path, baseline_artifacts):
    with pytest.raises(ConfigError, match="device 'cuda' requested but no CUDA device"):
        core.train(
            str(baseline_artifacts["train"]),
            str(baseline_artifacts["val"]),
            str(tmp_path / "model"),
            str(tmp_path / "baseline"),
            core.TrainConfig(device="cuda", max_epochs=1),
        )
    assert not (tmp_path / "model").exists() and not (tmp_path / "baseline").exists()


def _write_split(path: Path, df: pd.DataFrame) -> str:
    write_dataset(path, df, infer_schema(df, "target"))
    return str(path)


def test_string_feature_column_is_rejected_naming_it(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=30), "color": rng.choice(["red", "blue"], 30), "target": np.arange(30) % 2})
    train_dir, val_dir = _write_split(tmp_path / "train", df), _write_split(tmp_path / "val", df)

    with pytest.raises(DataValidationError) as exc:
        core.train(
            train_dir, val_dir, str(tmp_path / "model"), str(tmp_path / "baseline"), core.TrainConfig(max_epochs=1)
        )

    assert "'color'" in str(exc.value) and "expected a numeric column" in str(exc.value)
    assert train_dir in str(exc.value)
    assert not (tmp_path / "model").exists()


def test_validation_class_unseen_in_training_is_rejected(tmp_path):
    x = np.linspace(0, 1, 30)
    train_dir = _write_split(tmp_path / "train", pd.DataFrame({"x": x, "target": np.arange(30) % 2}))
    val_dir = _write_split(tmp_path / "val", pd.DataFrame({"x": x, "target": np.arange(30) % 3}))
    with pytest.raises(DataValidationError, match=r"classes \[2\] not seen in training"):
        core.train(
            train_dir, val_dir, str(tmp_path / "model"), str(tmp_path / "baseline"), core.TrainConfig(max_epochs=1)
        )


def test_missing_label_values_are_rejected(tmp_path):
    df = pd.DataFrame({"x": np.linspace(0, 1, 30), "target": [0.0, 1.0, np.nan] * 10})
    with pytest.raises(DataValidationError, match="label 'target' has missing values"):
        core.load_split(_write_split(tmp_path / "train", df))
