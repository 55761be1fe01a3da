"""Tests for components.train_model.keras_family: the Keras MLP family (the tf extra), its
artifact, its SavedModel export, its TFLite conversion and its scorer."""

from __future__ import annotations

import builtins
import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tiers import resource

from components.train_model import core
from components.train_model import keras_family as kf
from serving.formats import load_model
from shipyard.artifacts import Column, DatasetSchema, read_model_manifest, write_dataset
from shipyard.errors import ArtifactError, ConfigError

SMALL = {"max_epochs": 12, "patience": 4, "min_epochs": 1, "width": 32, "depth": 2, "lr": 5e-3}


def _config(**values) -> core.TrainConfig:
    return core.TrainConfig.from_dict({**SMALL, **values})


def _splits(root: Path) -> tuple[core.TabularData, core.TabularData, core.TabularData]:
    tr = core.load_split(str(root / "train"))
    va = core.load_split(str(root / "val"), tr.task, tr.label_names)
    te = core.load_split(str(root / "test"), tr.task, tr.label_names)
    return tr, va, te


def _fitted(root: Path, out: Path) -> dict:
    tr, va, te = _splits(root)
    epochs: list[dict] = []
    summary = kf.fit_keras(tr, va, _config(), str(out), epoch_log=epochs.append)
    return {"train": tr, "val": va, "test": te, "dir": out, "summary": summary, "logged": epochs}


@resource("slow", scope="module")
def binary(baseline_artifacts, tmp_path_factory) -> dict:
    """The Keras MLP on the breast-cancer reference splits."""
    root = Path(baseline_artifacts["train"]).parent
    return _fitted(root, tmp_path_factory.mktemp("keras-binary") / "model")


@resource("slow", scope="module")
def regression(tmp_path_factory) -> dict:
    """The Keras MLP on diabetes, ingested and split by the components."""
    from components.ingest_data.core import IngestConfig, ingest
    from components.split_data.core import SplitConfig, split

    root = tmp_path_factory.mktemp("keras-diabetes")
    ingest("sklearn:diabetes", str(root / "ds"), IngestConfig())
    split(str(root / "ds"), str(root / "train"), str(root / "val"), str(root / "test"), SplitConfig())
    return _fitted(root, root / "model")


def _keras_outputs(model_dir: Path, data: core.TabularData) -> np.ndarray:
    """The ``.keras`` file loaded by Keras itself, on the rows the artifact's own preprocessing gives."""
    import tensorflow as tf

    manifest = read_model_manifest(model_dir)
    prep = core.Preprocessing.from_dict(manifest.preprocessing)
    model = tf.keras.models.load_model(str(model_dir / kf.KERAS_FILE), compile=False, safe_mode=True)
    return np.asarray(model(prep.transform_frame(data.frame).x, training=False))


def _constant_loss(tr: core.TabularData, va: core.TabularData) -> float:
    """The validation loss of predicting the training split's class frequencies or mean."""
    if tr.task == "regression":
        return float(np.mean((va.y - tr.y.mean()) ** 2) / tr.y.std() ** 2)
    prior = np.bincount(tr.y, minlength=len(tr.label_names)) / len(tr)
    return float(-np.log(prior[va.y]).mean())


# --- the artifact ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_artifact_is_served_as_the_keras_model_scores(binary):
    loaded = load_model(binary["dir"])
    manifest = loaded.manifest
    assert manifest.format == "keras" and manifest.details["family"] == "keras"
    assert manifest.label_names == tuple(binary["train"].label_names)
    assert manifest.preprocessing["numeric"] == "standard" and manifest.preprocessing["categorical"] == "onehot"
    assert manifest.details["params"] == kf.keras_params(_config())
    test = binary["test"]
    scores = loaded.score_frame(test.frame, "test split")
    assert scores.shape == (len(test), 2)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores, _keras_outputs(binary["dir"], test), atol=1e-6)
    accuracy = float((scores.argmax(axis=1) == test.y).mean())
    assert accuracy > 0.85, accuracy


@pytest.mark.slow
def test_the_saved_model_export_gives_the_keras_models_outputs(binary):
    import tensorflow as tf

    manifest = read_model_manifest(binary["dir"])
    exported = manifest.details["saved_model"]
    assert exported["dir"] == kf.SAVED_MODEL_DIR and exported["output"] == "probabilities"
    assert f"{kf.SAVED_MODEL_DIR}/saved_model.pb" in manifest.files  # sha256-verified with the rest
    saved = tf.saved_model.load(str(binary["dir"] / exported["dir"]))
    prep = core.Preprocessing.from_dict(manifest.preprocessing)
    x = prep.transform_frame(binary["test"].frame).x
    assert list(exported["input_shape"]) == [None, x.shape[1]]
    outputs = np.asarray(getattr(saved, exported["endpoint"])(x))
    np.testing.assert_allclose(outputs, _keras_outputs(binary["dir"], binary["test"]), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["binary", "regression"])
def test_val_loss_is_the_served_models_and_beats_a_constant(case, request):
    fitted = request.getfixturevalue(case)
    tr, va, summary = fitted["train"], fitted["val"], fitted["summary"]
    served = load_model(fitted["dir"]).score_frame(va.frame)
    if tr.task == "regression":  # core.validation_loss: MSE in units of the training label's std
        expected = float(np.mean((served.astype(np.float64) - va.y) ** 2) / float(tr.y.std()) ** 2)
    else:
        p = np.clip(served.astype(np.float64)[np.arange(len(va)), va.y], 1e-15, 1.0)
        expected = float(-np.log(p).mean())
    assert summary["val_loss"] == pytest.approx(expected, rel=1e-4)
    assert read_model_manifest(fitted["dir"]).metrics["val_loss"] == summary["val_loss"]
    assert summary["val_loss"] < 0.8 * _constant_loss(tr, va), (summary["val_loss"], _constant_loss(tr, va))


@pytest.mark.slow
def test_the_best_epochs_weights_are_kept_and_every_epoch_is_logged(binary):
    summary = binary["summary"]
    history = summary["history"]
    assert binary["logged"] == history and len(history) == summary["epochs"] >= 1
    assert [int(h["epoch"]) for h in history] == list(range(summary["epochs"]))
    losses = [h["val_loss"] for h in history]
    assert summary["best_epoch"] == int(np.argmin(losses))
    assert summary["val_loss"] == pytest.approx(losses[summary["best_epoch"]], rel=1e-5)  # restored weights
    assert all(h["train_loss"] > 0 and h["lr"] > 0 and h["rows_per_second"] > 0 for h in history)
    lrs = [h["lr"] for h in history]  # the warm-up ends within the first epoch, then the cosine decays
    assert lrs[0] <= SMALL["lr"] and all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert summary["stopped"] in ("patience", "max_epochs")
    if summary["stopped"] == "max_epochs":
        assert summary["epochs"] == SMALL["max_epochs"]


@pytest.mark.slow
def test_early_stopping_waits_min_epochs_then_patience(binary):
    tr, va = binary["train"], binary["val"]
    config = _config(max_epochs=40, patience=1, min_epochs=6, lr=2e-2)
    summary = kf.fit_keras(tr, va, config, str(binary["dir"].parent / "early"))
    last, best = summary["epochs"] - 1, summary["best_epoch"]
    assert summary["stopped"] == "patience", summary["stopped"]
    assert summary["epochs"] >= 6 and last - best >= 1
    assert last == 5 or last - best == 1, (last, best)  # stops at the first epoch allowed to


@pytest.mark.slow
def test_training_is_seeded(binary, tmp_path):
    tr, va, te = binary["train"], binary["val"], binary["test"]
    again = kf.fit_keras(tr, va, _config(), str(tmp_path / "again"))
    other = kf.fit_keras(tr, va, _config(seed=1), str(tmp_path / "other"))
    first = load_model(binary["dir"]).score_frame(te.frame)
    np.testing.assert_allclose(load_model(tmp_path / "again").score_frame(te.frame), first, atol=1e-6)
    assert again["val_loss"] == pytest.approx(binary["summary"]["val_loss"], rel=1e-6)
    assert np.abs(load_model(tmp_path / "other").score_frame(te.frame) - first).max() > 1e-4
    assert other["val_loss"] != again["val_loss"]


@pytest.mark.slow
def test_regression_serves_values_in_the_labels_units(regression):
    loaded = load_model(regression["dir"])
    te, tr = regression["test"], regression["train"]
    assert loaded.manifest.task == "regression" and loaded.manifest.label_names == ()
    arch = loaded.manifest.details["architecture"]
    assert arch["head"] == "rescaling" and arch["y_std"] == pytest.approx(float(tr.y.std()))
    values = loaded.score_frame(te.frame)
    assert values.shape == (len(te),)
    np.testing.assert_allclose(values, _keras_outputs(regression["dir"], te).reshape(-1), rtol=1e-5, atol=1e-3)
    assert abs(values.mean() - te.y.mean()) < te.y.std()
    assert np.corrcoef(values, te.y)[0, 1] > 0.4  # the signal is learned


# --- TFLite ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("case", ["binary", "regression"])
def test_the_tflite_conversion_scores_as_the_keras_model(case, request, tmp_path):
    fitted = request.getfixturevalue(case)
    manifest = kf.convert_to_tflite(fitted["dir"], tmp_path / "tflite")
    source = read_model_manifest(fitted["dir"])
    assert manifest.format == "tflite" and set(manifest.files) == {kf.TFLITE_FILE}
    assert manifest.parent is not None and manifest.parent["format"] == "keras"
    assert manifest.preprocessing == source.preprocessing and manifest.input_schema == source.input_schema
    assert manifest.details["variant"] == "fp32-tflite" and "saved_model" not in manifest.details
    loaded = load_model(tmp_path / "tflite")
    te = fitted["test"]
    keras_scores = load_model(fitted["dir"]).score_frame(te.frame)
    tflite_scores = loaded.score_frame(te.frame)
    assert tflite_scores.shape == keras_scores.shape
    scale = 1.0 if case == "binary" else float(np.abs(keras_scores).max())
    np.testing.assert_allclose(tflite_scores, keras_scores, atol=1e-5 * scale)


@pytest.mark.slow
def test_only_a_keras_artifact_with_its_export_converts(binary, baseline_artifacts, tmp_path):
    with pytest.raises(ArtifactError, match="expected a keras artifact with its SavedModel export"):
        kf.convert_to_tflite(baseline_artifacts["baseline"], tmp_path / "t")
    stripped = tmp_path / "stripped"
    manifest = read_model_manifest(binary["dir"])
    stripped.mkdir()
    (stripped / kf.KERAS_FILE).write_bytes((binary["dir"] / kf.KERAS_FILE).read_bytes())
    files = {kf.KERAS_FILE: manifest.files[kf.KERAS_FILE]}
    (stripped / "model.json").write_text(json.dumps({**manifest.to_dict(), "files": files}))
    with pytest.raises(ArtifactError, match="SavedModel export in saved_model/"):
        kf.convert_to_tflite(stripped, tmp_path / "t")
    assert not (tmp_path / "t").exists()


# --- raw mixed-type rows, and cross-validation --------------------------------------------------


def _mixed(n: int, seed: int) -> pd.DataFrame:
    """A churn-like table: a float with nulls, an integer, strings with a rare value, booleans."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "pro", "team"], n).astype(object)
    plan[:2] = "legacy"  # rarer than the vocabulary's minimum frequency: the unknown bucket
    tenure = rng.exponential(12, n)
    tenure[rng.random(n) < 0.15] = np.nan
    promo = rng.random(n) < 0.4
    logit = 0.1 * np.nan_to_num(tenure, nan=12) - 1.5 * (plan == "basic") + 1.5 * promo - 1.0
    churn = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return pd.DataFrame(
        {
            "tenure": tenure,
            "seats": rng.integers(1, 20, n),
            "plan": pd.array(plan, dtype="string"),
            "promo": promo,
            "churn": churn,
        }
    )


MIXED_SCHEMA = DatasetSchema(
    (
        Column("tenure", "float64"),
        Column("seats", "int64"),
        Column("plan", "string", kind="categorical"),
        Column("promo", "bool"),
        Column("churn", "object", "label"),
    )
)


@pytest.mark.slow
def test_a_raw_mixed_type_table_trains_and_serves_raw_rows(tmp_path):
    for name, (rows, seed) in {"train": (500, 0), "val": (150, 1), "test": (150, 2)}.items():
        write_dataset(tmp_path / name, _mixed(rows, seed), MIXED_SCHEMA)
    tr, va, te = _splits(tmp_path)
    assert tr.x is None  # not a plain matrix: the preprocessing encodes it
    summary = kf.fit_keras(tr, va, _config(max_epochs=20), str(tmp_path / "model"))
    loaded = load_model(tmp_path / "model")
    prep = {f["name"]: f for f in loaded.manifest.preprocessing["features"]}
    assert prep["tenure"]["indicator"] is True and prep["plan"]["kind"] == "categorical"
    assert "legacy" not in prep["plan"]["vocabulary"]
    encoded = loaded.encode_frame(te.frame)
    assert encoded.unknown == {"plan": 2}
    scores = loaded.scores(encoded.x)
    np.testing.assert_allclose(scores, _keras_outputs(tmp_path / "model", te), atol=1e-6)
    assert summary["val_loss"] < 0.9 * _constant_loss(tr, va)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["binary", "regression"])
def test_the_scorer_is_the_fitted_models(case, request):
    fitted = request.getfixturevalue(case)
    score = kf.keras_scorer(fitted["train"], fitted["val"], _config())
    te = fitted["test"]
    held_out = dataclasses.replace(te, x=None)  # scored from the raw frame, as cross-validation's folds are
    got = score(held_out)
    expected = load_model(fitted["dir"]).score_frame(te.frame)
    assert got.shape == expected.shape == ((len(te), 2) if case == "binary" else (len(te),))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_cross_validation_takes_the_keras_scorer(binary):
    from components.train_model.selection import cross_validate

    def fit(train, val, family, config):
        return kf.keras_scorer(train, val, config)

    tr, va = binary["train"], binary["val"]
    cv = cross_validate(tr, va, ["keras"], _config(max_epochs=4), fit, 2)
    assert cv.losses["keras"].shape == (len(tr) + len(va),) and np.isfinite(cv.losses["keras"]).all()
    assert cv.losses["keras"].mean() < _constant_loss(tr, va)


# --- without TensorFlow --------------------------------------------------------------------------


def _tiny() -> core.TabularData:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    schema = tuple(Column(n, "float32") for n in ("a", "b"))
    return core.TabularData(x, np.array([0, 1] * 3), ["a", "b"], "y", ["no", "yes"], "binary", schema)


def test_without_tensorflow_every_entry_point_is_a_config_error_naming_the_extra(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_tensorflow(name, *args, **kwargs):  # as Python fails for a package that is not installed
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError("No module named 'tensorflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorflow)
    data, config = _tiny(), core.TrainConfig()
    calls = [
        lambda: kf.fit_keras(data, data, config, str(tmp_path / "m")),
        lambda: kf.keras_scorer(data, data, config),
        lambda: kf.convert_to_tflite(tmp_path / "m", tmp_path / "t"),
    ]
    for call in calls:
        with pytest.raises(ConfigError, match=r"keras family needs TensorFlow, which is not installed; install the tf"):
            call()
    assert not (tmp_path / "m").exists() and not (tmp_path / "t").exists()


def test_the_params_are_the_training_fields_of_the_config():
    config = core.TrainConfig(width=7, depth=3, seed=5)
    params = kf.keras_params(config)
    assert list(params) == list(kf.KERAS_FIELDS)
    assert params["width"] == 7 and params["depth"] == 3 and params["seed"] == 5
    assert set(kf.KERAS_FIELDS) <= {f.name for f in dataclasses.fields(core.TrainConfig)}
