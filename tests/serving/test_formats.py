"""Tests for serving.formats: Model artifacts are verified, never unpickled, then loaded by format."""

import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from components.train_model.core import TabularData, fit_baseline, save_sklearn_model
from serving.formats import load_model
from shipyard.artifacts import Column, ModelManifest, write_model
from shipyard.errors import ArtifactError, IntegrityError, UnsafeArtifactError

FEATURES = ["a", "b"]
LABELS = ("no", "yes")


def _data(task="binary"):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) if task == "binary" else (x @ [2.0, -1.0]).astype(np.float32)
    return TabularData(
        x=x,
        y=y,
        feature_names=FEATURES,
        label="y",
        label_names=list(LABELS) if task == "binary" else [],
        task=task,
        input_schema=tuple(Column(f, "float32") for f in FEATURES),
    )


def _manifest(fmt="sklearn-skops", task="binary", label_names=LABELS):
    return ModelManifest(
        format=fmt,
        task=task,
        input_schema=tuple(Column(f, "float32") for f in FEATURES),
        label="y",
        label_names=label_names,
    )


def _write(path, files, fmt="sklearn-skops"):
    """Writes an artifact holding ``files`` ({name: bytes}), each listed in model.json with its sha256."""

    def build(tmp):
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)

    write_model(path, _manifest(fmt), build)
    return path


class _OpenOnUnpickle:
    """Unpickling this object's pickle calls ``open(marker, 'w')``: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_pickle(marker):
    return pickle.dumps(_OpenOnUnpickle(marker))


def _double(x):
    return x * 2


@pytest.fixture
def sklearn_dir(tmp_path):
    data = _data()
    model = fit_baseline(data)
    save_sklearn_model(str(tmp_path / "model"), model, data, {"val_loss": 0.1}, {"role": "test"})
    return tmp_path / "model", model


def test_sklearn_skops_round_trip(sklearn_dir):
    path, model = sklearn_dir
    loaded = load_model(path)
    assert loaded.manifest.format == "sklearn-skops"
    assert loaded.is_classifier
    x = _data().x[:5]
    scores = loaded.scores(x)
    assert scores.shape == (5, 2)
    np.testing.assert_allclose(scores, model.predict_proba(x), atol=1e-6)  # served by the linear fast path
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)
    assert loaded.labels(np.array([[0.9, 0.1], [0.2, 0.8]])) == ["no", "yes"]


def test_sklearn_regression_scores_are_one_dimensional(tmp_path):
    data = _data("regression")
    model = fit_baseline(data)
    save_sklearn_model(str(tmp_path / "m"), model, data, {}, {})
    loaded = load_model(tmp_path / "m")
    assert not loaded.is_classifier
    scores = loaded.scores(data.x[:3])
    assert scores.shape == (3,)
    np.testing.assert_allclose(scores, model.predict(data.x[:3]), rtol=1e-5)


def test_tampered_weights_are_an_integrity_error(sklearn_dir):
    path, _ = sklearn_dir
    weights = bytearray((path / "model.skops").read_bytes())
    weights[len(weights) // 2] ^= 0x01
    (path / "model.skops").write_bytes(bytes(weights))
    with pytest.raises(IntegrityError, match=r"sha256 mismatch for \['model.skops'\]"):
        load_model(path)


def test_unlisted_file_is_an_integrity_error(sklearn_dir):
    path, _ = sklearn_dir
    (path / "sitecustomize.py").write_text("raise SystemExit")
    with pytest.raises(IntegrityError, match=r"not listed in model.json: \['sitecustomize.py'\]"):
        load_model(path)


def test_the_pickle_payload_is_live(tmp_path):
    """Guards the next tests: unpickling the payload really does create its marker file."""
    marker = tmp_path / "proof"
    pickle.loads(_evil_pickle(marker)).close()
    assert marker.exists()


@pytest.mark.parametrize("name", ["model.pkl", "extra/state.joblib", "MODEL.PICKLE", "x.dill", "x.cloudpickle"])
def test_a_listed_pickle_is_refused_and_never_unpickled(sklearn_dir, tmp_path, name):
    path, _ = sklearn_dir
    marker = tmp_path / "pwned"
    bad = _write(tmp_path / "bad", {"model.skops": (path / "model.skops").read_bytes(), name: _evil_pickle(marker)})
    with pytest.raises(UnsafeArtifactError) as info:
        load_model(bad)
    assert f"refusing pickle file(s) ['{name}']" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(("fmt", "weights"), [("sklearn-skops", "model.skops"), ("torchscript", "model.pt")])
def test_a_pickle_disguised_as_weights_is_never_unpickled(tmp_path, fmt, weights):
    marker = tmp_path / "pwned"
    bad = _write(tmp_path / "bad", {weights: _evil_pickle(marker)}, fmt)
    with pytest.raises(Exception):  # noqa: B017 - the point is the marker; the error type is tested below
        load_model(bad)
    assert not marker.exists()


@pytest.mark.parametrize(("fmt", "weights"), [("sklearn-skops", "model.skops"), ("torchscript", "model.pt")])
def test_a_corrupt_weights_file_is_an_artifact_error(tmp_path, fmt, weights):
    bad = _write(tmp_path / "bad", {weights: b"not a zip archive"}, fmt)
    with pytest.raises(ArtifactError, match=weights):
        load_model(bad)


def test_skops_with_a_type_outside_sklearn_and_numpy_is_refused(tmp_path):
    data = _data()
    model = make_pipeline(FunctionTransformer(_double), LogisticRegression()).fit(data.x, data.y)
    write_model(tmp_path / "m", _manifest(), lambda tmp: sio.dump(model, tmp / "model.skops"))
    with pytest.raises(UnsafeArtifactError) as info:
        load_model(tmp_path / "m")
    assert f"refusing untrusted type(s) ['{_double.__module__}._double']" in str(info.value)
    assert "model.skops" in str(info.value)


def _crafted_skops(module, name, args):
    """A valid skops file of a fitted LogisticRegression whose attribute ``hook`` is ``module.name(*args)``.

    skops rebuilds a ``ConstructorFromReduceNode`` by calling ``module.name(*args)`` while loading, so
    trusting that type name runs the call.
    """
    est = LogisticRegression().fit(_data().x, _data().y)
    est.hook = "placeholder"
    src = zipfile.ZipFile(io.BytesIO(sio.dumps(est)))
    schema = json.loads(src.read("schema.json"))
    args_node = json.loads(zipfile.ZipFile(io.BytesIO(sio.dumps(tuple(args)))).read("schema.json"))
    schema["content"]["content"]["hook"] = {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": args_node,
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            dst.writestr(item, json.dumps(schema) if item == "schema.json" else src.read(item))
    data = out.getvalue()
    assert sio.get_untrusted_types(data=data) == [f"{module}.{name}"]
    return data


@pytest.mark.parametrize(("module", "name"), [("builtins", "open"), ("builtins", "exec"), ("numpy", "save")])
def test_skops_callables_in_trusted_modules_are_not_run(tmp_path, module, name):
    marker = tmp_path / "pwned.npy"
    payloads = {"open": (str(marker), "w"), "exec": (f"open({str(marker)!r}, 'w').close()",), "save": (str(marker), 0)}
    args = payloads[name]
    bad = _write(tmp_path / "bad", {"model.skops": _crafted_skops(module, name, args)})
    refused = None
    try:
        load_model(bad)
    except UnsafeArtifactError as exc:
        refused = str(exc)
    assert not marker.exists(), f"loading the artifact ran {module}.{name}"
    assert refused is not None and f"{module}.{name}" in refused


def test_a_directory_without_model_json_is_an_artifact_error(tmp_path):
    (tmp_path / "model.skops").write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"missing model manifest \(model\.json\)"):
        load_model(tmp_path)


def test_a_missing_path_is_an_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="not a directory"):
        load_model(tmp_path / "nope")


@pytest.mark.parametrize(("fmt", "weights"), [("tflite", "model.tflite"), ("keras", "model.keras")])
def test_tensorflow_formats_without_tensorflow_name_the_extra(tmp_path, fmt, weights, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorflow(name, *args, **kwargs):  # as Python fails for a package that is not installed
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError("No module named 'tensorflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorflow)
    bad = _write(tmp_path / "m", {weights: b"x"}, fmt)
    with pytest.raises(ArtifactError, match=r"needs TensorFlow, which is not installed; install the tf extra"):
        load_model(bad)


def test_weights_missing_from_the_manifest_are_an_artifact_error(tmp_path):
    bad = _write(tmp_path / "m", {"weights.bin": b"x"}, "torchscript")
    with pytest.raises(ArtifactError, match=r"format torchscript expects model\.pt in the manifest"):
        load_model(bad)


def test_torchscript_loads_and_scores(tmp_path):
    import torch

    torch.manual_seed(0)
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Softmax(dim=-1)).eval())
    manifest = _manifest("torchscript", "multiclass", ("a", "b", "c"))
    write_model(tmp_path / "m", manifest, lambda tmp: module.save(str(tmp / "model.pt")))
    loaded = load_model(tmp_path / "m")
    x = np.array([[0.0, 1.0], [1.0, -1.0], [2.0, 0.5], [-3.0, 0.0]], dtype=np.float32)
    scores = loaded.scores(x)
    assert scores.shape == (4, 3)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)
    assert loaded.labels(scores) == [("a", "b", "c")[i] for i in expected.argmax(axis=1)]


def test_a_torch_save_archive_that_needs_weights_only_false_is_refused(tmp_path):
    """A ``torch.save`` zip whose data.pkl runs code on load is not TorchScript: refused, never unpickled."""
    import torch

    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save(_OpenOnUnpickle(marker), buffer)
    assert zipfile.is_zipfile(io.BytesIO(buffer.getvalue())), "torch.save writes a zip archive like TorchScript"
    bad = _write(tmp_path / "m", {"model.pt": buffer.getvalue()}, "torchscript")
    with pytest.raises(ArtifactError, match="cannot load torchscript weights"):
        load_model(bad)
    assert not marker.exists()
    torch.load(io.BytesIO(buffer.getvalue()), weights_only=False).close()  # the payload is live:
    assert marker.exists()  # what load_model refused would have run


def _wine_data():
    from components.reference import sklearn_data

    return sklearn_data("multiclass", ["a", "b", "c"])


def _within(got, want, tolerance):
    """Asserts ``|got - want| <= tolerance`` elementwise, reporting the worst ratio."""
    got, want = np.reshape(got, np.shape(tolerance)), np.reshape(want, np.shape(tolerance))
    ratio = np.abs(got - want) / tolerance
    assert ratio.max() <= 1.0, f"off by {ratio.max():.3g} times the tolerance"


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_standardized_linear_models_are_served_by_one_matrix_product(tmp_path, task):
    from serving.formats import LinearScorer, fold_linear

    data = _wine_data() if task == "multiclass" else _data(task)
    model = fit_baseline(data)
    save_sklearn_model(str(tmp_path / "m"), model, data, {}, {})
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded._scorer, LinearScorer), "scikit-learn served it"
    sklearn_scores = model.predict(data.x) if task == "regression" else model.predict_proba(data.x)
    tolerance = fold_linear(model, loaded.manifest).tolerance(data.x)
    _within(loaded.scores(data.x), sklearn_scores, tolerance)
    one_by_one = [loaded.score_row(r) for r in data.x[:64].tolist()]  # the one-row path, plain floats
    n = len(one_by_one)
    _within(one_by_one, sklearn_scores[:n], tolerance[:n])
    # the one-row path and numpy's compute the same float64 fold: far closer than float32 rounding
    _within(one_by_one, loaded.scores(data.x[:n]), tolerance[:n] * 1e-6)


def _float32_sklearn(model, order, cast_statistics):
    """scikit-learn's computation for a ``StandardScaler → linear model`` pipeline, in float32 with
    an explicit order of operations: what another CPU, SIMD width or BLAS kernel may legitimately do.

    Elementwise numpy float32 arithmetic is correctly rounded on every CPU, so this is the same
    everywhere. ``order``: ``forward`` / ``reverse`` (feature order of the sum), ``fma`` (each term
    fused: one rounding), ``intercept-last`` (the intercept added after the products);
    ``cast_statistics``: the scaler's float64 statistics cast to float32 first.
    """
    from scipy.special import expit, softmax
    from sklearn.linear_model import LogisticRegression

    scaler, estimator = model[0], model[-1]
    weights = np.atleast_2d(estimator.coef_).astype(np.float32)
    intercept = np.atleast_1d(estimator.intercept_).astype(np.float32)

    def score(x):
        if cast_statistics:
            z = (x - scaler.mean_.astype(np.float32)) / scaler.scale_.astype(np.float32)
        else:  # float64 statistics, each step stored in float32
            z = ((x - scaler.mean_).astype(np.float32) / scaler.scale_).astype(np.float32)
        columns = range(x.shape[1])[::-1] if order == "reverse" else range(x.shape[1])
        out = np.zeros((len(x), len(weights)), np.float32) + (0 if order == "intercept-last" else intercept)
        for j in columns:
            if order == "fma":  # the product of two float32 is exact in float64: one rounding per term
                out = (out + z[:, j : j + 1].astype(np.float64) * weights[:, j]).astype(np.float32)
            else:
                out = out + z[:, j : j + 1] * weights[:, j]
        if order == "intercept-last":
            out = out + intercept
        if not isinstance(estimator, LogisticRegression):
            return out[:, 0]
        if len(weights) == 1:
            p = expit(out[:, 0])
            return np.stack([np.float32(1) - p, p], axis=1)
        return softmax(out, axis=1)

    return score


def _reference_model(task):
    """The training step's baseline on a dataset that ships with scikit-learn, and its manifest."""
    from components.reference import sklearn_data

    data = sklearn_data(task)
    return fit_baseline(data), data.manifest("sklearn-skops", {}, {})


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_the_fold_agrees_with_every_float32_evaluation_order(task):
    """Whether a model is folded may not depend on the CPU: the fold must be accepted against any
    legitimate float32 evaluation of scikit-learn's formula, not only against this machine's."""
    from serving.formats import fold_linear, linear_scorer

    model, manifest = _reference_model(task)
    fold = fold_linear(model, manifest)
    reference = model.predict if task == "regression" else model.predict_proba
    assert fold.disagreement(reference) <= 1.0 and linear_scorer(model, manifest, reference) is not None
    for order in ("forward", "reverse", "fma", "intercept-last"):
        for cast in (False, True):
            variant = _float32_sklearn(model, order, cast)
            assert fold.disagreement(variant) <= 1.0, f"{order}, cast statistics {cast}: refused"
            assert linear_scorer(model, manifest, variant) is not None


def _pinned_ridge(mean, scale, coef, intercept):
    """A ``StandardScaler → Ridge`` pipeline with exactly these parameters, not fitted: a fit differs
    in its last bits from machine to machine, and the test below needs one model everywhere."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    scaler.mean_, scaler.scale_ = np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    scaler.var_, scaler.n_features_in_, scaler.n_samples_seen_ = scaler.scale_**2, len(coef), 100
    ridge = Ridge()
    ridge.coef_, ridge.intercept_, ridge.n_features_in_ = np.asarray(coef, np.float32), np.float32(intercept), len(coef)
    return make_pipeline(scaler, ridge)


def test_a_constant_tolerance_would_refuse_a_legitimate_evaluation_order():
    """Why the bound is derived, not a constant: where large terms cancel (1000·x0 - 1000·x1 with x1 the
    next float32 after x0), every float32 evaluation, scikit-learn's included, lies further from the
    exact value than a 1e-5 absolute-or-relative rule allows, yet within the rounding bound."""
    from serving.formats import fold_linear

    model = _pinned_ridge([0.0, 0.0], [1.0, 1.0], [1000.25, -1000.25], 0.0)
    manifest = ModelManifest(
        format="sklearn-skops",
        task="regression",
        input_schema=(Column("a", "float32"), Column("b", "float32")),
        label="y",
    )
    fold = fold_linear(model, manifest)
    x0 = np.linspace(1, 2, 200, dtype=np.float32)
    x = np.stack([x0, np.nextafter(x0, np.float32(3))], axis=1)
    exact, tolerance = fold.scorer(x), fold.tolerance(x)[:, 0]
    for order in ("forward", "reverse", "fma", "intercept-last"):
        variant = _float32_sklearn(model, order, False)(x)
        assert not np.allclose(exact, variant, rtol=1e-5, atol=1e-5), f"{order}: a 1e-5 rule would accept it"
        assert np.all(np.abs(exact - variant) <= tolerance), f"{order}: outside the rounding bound"


def test_a_fold_off_by_more_than_rounding_is_refused():
    """The bound is tight enough to catch real mistakes: the largest coefficient off by 1e-4 of itself, or the
    centering left out, is refused."""
    from serving.formats import fold_linear, linear_scorer

    model, manifest = _reference_model("regression")
    fold = fold_linear(model, manifest)
    nudged = fold_linear(model, manifest)
    nudged.coef.flat[np.argmax(np.abs(nudged.coef))] *= 1 + 1e-4  # the largest coefficient
    assert nudged.disagreement(model.predict) > 1.0 and fold.disagreement(model.predict) <= 1.0
    uncentered = model.predict(np.zeros((1, fold.coef.shape[1]), dtype=np.float32))
    assert linear_scorer(model, manifest, lambda x: model.predict(x) - uncentered) is None


def test_a_model_fitted_on_float64_is_bounded_by_float64_decision_arithmetic():
    """Float64 coefficients widen scikit-learn's product to float64: only its scaler rounds in float32,
    so the bound is the tighter one, and it still holds. The fold copies, never aliases, the model."""
    from components.reference import sklearn_data
    from serving.formats import UNIT_ROUNDOFF_64, fold_linear, linear_scorer

    data = sklearn_data("regression")
    wide = make_pipeline(StandardScaler(), Ridge()).fit(data.x.astype(np.float64), data.y.astype(np.float64))
    narrow, manifest = _reference_model("regression")
    fold, narrow_fold = fold_linear(wide, manifest), fold_linear(narrow, manifest)
    assert fold.decision_unit == UNIT_ROUNDOFF_64 and narrow_fold.decision_unit > UNIT_ROUNDOFF_64
    x = fold.probe()
    assert np.all(fold.decision_tolerance(x) < narrow_fold.decision_tolerance(x) / 2)
    assert linear_scorer(wide, manifest, wide.predict) is not None
    assert not np.shares_memory(fold.coef, wide[-1].coef_) and not np.shares_memory(fold.mean, wide[0].mean_)


@pytest.mark.parametrize("scaler", [{"with_mean": False}, {"with_std": False}, None])
def test_scalers_that_skip_centering_or_scaling_fold_as_they_transform(scaler):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from serving.formats import linear_scorer

    _, manifest = _reference_model("binary")
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    steps = [StandardScaler(**scaler)] if scaler is not None else []
    model = make_pipeline(*steps, LogisticRegression(max_iter=5000)).fit(x.astype(np.float32), y)
    assert linear_scorer(model, manifest, model.predict_proba) is not None


def test_other_estimators_and_disagreeing_fast_paths_keep_scikit_learn(tmp_path):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import StandardScaler

    from serving.formats import linear_scorer

    data = _data()
    manifest = _manifest()
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(data.x, data.y)
    assert linear_scorer(forest, manifest, forest.predict_proba) is None
    two_scalers = make_pipeline(StandardScaler(), StandardScaler(), LogisticRegression()).fit(data.x, data.y)
    assert linear_scorer(two_scalers, manifest, two_scalers.predict_proba) is None
    model = fit_baseline(data)
    assert linear_scorer(model, manifest, model.predict_proba) is not None
    assert linear_scorer(model, manifest, lambda x: model.predict_proba(x) * 0.9) is None, "must agree with sklearn"


def test_folded_binary_logistic_gives_scikit_learns_one_minus_p(tmp_path):
    """Class 0 is 1 - p exactly, as predict_proba computes it (not expit(-z), which differs far out)."""
    from serving.formats import fold_linear

    data = _data()
    model = fit_baseline(data)
    save_sklearn_model(str(tmp_path / "m"), model, data, {}, {})
    loaded = load_model(tmp_path / "m")
    x = np.array([[60.0, 60.0], [20.0, 15.0], [-20.0, -15.0], [0.1, -0.2]], dtype=np.float32)
    scores = loaded.scores(x)
    np.testing.assert_array_equal(scores[:, 0], 1.0 - scores[:, 1])
    tolerance = fold_linear(model, loaded.manifest).tolerance(x)
    _within(scores, model.predict_proba(x), tolerance)  # scikit-learn computes it in float32
    assert scores[0].tolist() == [0.0, 1.0] == loaded.score_row(x[0].tolist())
    _within([loaded.score_row(row) for row in x.tolist()], scores, tolerance * 1e-6)


@pytest.mark.parametrize(
    ("task", "scorer"),
    [
        ("regression", lambda x: np.ones(2 * len(x))),  # two values per row
        ("regression", lambda x: np.ones((len(x) + 1, 1))),  # a row too many
        ("binary", lambda x: np.ones((len(x) + 1, 2))),
        ("binary", lambda x: np.ones(2 * len(x) + 1)),  # flat, not a whole number per row
    ],
)
def test_a_model_giving_the_wrong_number_of_rows_is_an_error(tmp_path, task, scorer):
    """A batch must never hand one request another's rows: a model that miscounts them fails."""
    from serving.formats import LoadedModel

    manifest = _manifest(task=task, label_names=LABELS if task == "binary" else ())
    loaded = LoadedModel(tmp_path, manifest, scorer)
    with pytest.raises(ValueError, match="rows of scores for 2 rows|cannot reshape"):
        loaded.scores(np.ones((2, 2), dtype=np.float32))


# --- the tf extra's formats, with TensorFlow installed (slow: importing it takes seconds) ----------


def _tiny_keras(classes=3):
    """A small Keras softmax model over the two features (seeded)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((len(FEATURES),))
    hidden = tf.keras.layers.Dense(8, activation="relu")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(classes, activation="softmax")(hidden))


_ROWS = np.array([[0.0, 1.0], [1.0, -1.0], [2.0, 0.5], [-3.0, 0.0]], dtype=np.float32)


@pytest.mark.slow
def test_keras_loads_and_scores(tmp_path):
    model = _tiny_keras()
    write_model(
        tmp_path / "m", _manifest("keras", "multiclass", ("a", "b", "c")), lambda t: model.save(t / "model.keras")
    )
    loaded = load_model(tmp_path / "m")
    scores = loaded.scores(_ROWS)
    assert scores.shape == (4, 3)
    np.testing.assert_allclose(scores, np.asarray(model(_ROWS)), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.slow
def test_tflite_loads_and_scores_any_batch_size(tmp_path):
    import tensorflow as tf

    model = _tiny_keras()
    model.export(str(tmp_path / "export"), format="tf_saved_model", verbose=False)
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "export")).convert()
    manifest = _manifest("tflite", "multiclass", ("a", "b", "c"))
    write_model(tmp_path / "m", manifest, lambda t: (t / "model.tflite").write_bytes(flatbuffer))
    loaded = load_model(tmp_path / "m")
    for x in (_ROWS, _ROWS[:1], np.tile(_ROWS, (5, 1))):  # the interpreter is resized for each batch
        scores = loaded.scores(x)
        assert scores.shape == (len(x), 3)
        np.testing.assert_allclose(scores, np.asarray(model(x)), atol=1e-6)


def _marker_layer_model(marker):
    """A Keras model with a Lambda layer whose Python code creates ``marker`` when it runs."""
    import tensorflow as tf

    path = str(marker)
    inputs = tf.keras.Input((len(FEATURES),))
    touched = tf.keras.layers.Lambda(lambda x: x + 0.0 * len(open(path, "w").name))(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(2, activation="softmax")(touched))


@pytest.mark.slow
def test_a_keras_lambda_layer_is_refused_and_never_run(tmp_path):
    """``safe_mode``: Python code inside a .keras file (a Lambda layer's bytecode) is refused on load."""
    import tensorflow as tf

    marker = tmp_path / "pwned"
    model = _marker_layer_model(marker)  # building it ran the lambda once: remove its trace
    marker.unlink(missing_ok=True)
    write_model(tmp_path / "m", _manifest("keras"), lambda t: model.save(t / "model.keras"))
    with pytest.raises(ArtifactError, match=r"cannot load keras weights .*deserialization of a `Lambda` layer"):
        load_model(tmp_path / "m")
    assert not marker.exists()
    unsafe = tf.keras.models.load_model(str(tmp_path / "m" / "model.keras"), compile=False, safe_mode=False)
    unsafe(_ROWS)  # the payload is live: what load_model refused would have run
    assert marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "weights"), [("keras", "model.keras"), ("tflite", "model.tflite")])
def test_a_corrupt_tensorflow_weights_file_is_an_artifact_error(tmp_path, fmt, weights):
    bad = _write(tmp_path / "bad", {weights: b"not a zip archive or a flatbuffer"}, fmt)
    with pytest.raises(ArtifactError, match=f"cannot load {fmt} weights"):
        load_model(bad)
