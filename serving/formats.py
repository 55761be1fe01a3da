"""Loading Model artifacts by format, after verifying their sha256 manifest.

One loader per format in ``model.json``: ``sklearn-skops`` (skops, only scikit-learn/numpy types
trusted), ``torchscript`` (``torch.jit.load``: a ``torch.save`` pickle is not a TorchScript archive
and is refused), ``onnx`` (ONNX Runtime), and, behind the ``tf`` extra, ``keras`` (``safe_mode``:
no Python lambdas) and ``tflite`` (the TensorFlow Lite interpreter). A plain pickle is never
loaded: such files are refused before anything is read.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.artifacts import ModelManifest, read_model_manifest
from shipyard.errors import ArtifactError, UnsafeArtifactError

#: The weights file each format keeps in the artifact directory.
WEIGHTS_FILE = {
    "sklearn-skops": "model.skops",
    "torchscript": "model.pt",
    "onnx": "model.onnx",
    "keras": "model.keras",
    "tflite": "model.tflite",
}
TF_HINT = "install the tf extra: pip install -c requirements.lock -e '.[tf]'"
#: File endings that mean pickle; never loaded.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".cloudpickle")
#: Exact type names a skops file may hold beyond skops' own default-trusted (scikit-learn and numpy
#: data) types. Empty: every type skops reports as untrusted is refused. Trusting a module prefix
#: instead would let a crafted file call e.g. ``builtins.exec`` or ``numpy.save`` while loading.
TRUSTED_SKOPS_TYPES: frozenset[str] = frozenset()

Scorer = Callable[[np.ndarray], np.ndarray]


class LoadedModel:
    """A verified, loaded model: ``scores`` gives probabilities (classification) or values."""

    def __init__(self, path: Path, manifest: ModelManifest, scorer: Scorer):
        self.path = path
        self.manifest = manifest
        self._scorer = scorer
        self._classifier = manifest.task != "regression"
        #: One row of finite numbers → probabilities (or ``[value]``) in Python floats, without
        #: numpy; only models that offer it (:class:`LinearScorer`), else None.
        self.score_row: Callable[[Sequence[float]], list[float]] | None = getattr(scorer, "row", None)

    @property
    def is_classifier(self) -> bool:
        """True for binary and multiclass tasks."""
        return self._classifier

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Returns class probabilities ``[n, classes]`` or regression values ``[n]``."""
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.asarray(self._scorer(x))
        if out.ndim == (2 if self._classifier else 1) and len(out) == len(x):
            return out
        # A batch must never hand one request another's predictions: a model that gives more or
        # fewer rows than it was given is an error (reshape raises for a flat output that does not fit).
        if out.ndim > 1 and out.shape[0] != len(x):
            raise ValueError(f"the model returned {out.shape[0]} rows of scores for {len(x)} rows of input")
        return out.reshape(len(x), -1) if self._classifier else out.reshape(len(x))

    def labels(self, scores: np.ndarray) -> list[Any]:
        """Maps class probabilities to label names (classification only)."""
        names = self.manifest.label_names
        return [names[i] for i in np.argmax(scores, axis=1)]


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Verifies and loads the Model artifact at ``path``.

    Raises:
        ArtifactError: Not a model artifact, or an unsupported format.
        IntegrityError: A file does not match its recorded sha256.
        UnsafeArtifactError: The artifact holds a pickle or untrusted serialized types.
    """
    root = Path(path)
    manifest = read_model_manifest(root, verify=True)
    pickles = [name for name in manifest.files if name.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise UnsafeArtifactError(f"{root}: refusing pickle file(s) {pickles}; Shipyard loads no pickles")
    loader = _LOADERS.get(manifest.format)
    if loader is None:
        raise ArtifactError(
            f"{root}: format {manifest.format!r} cannot be served by this runtime (supported: {sorted(_LOADERS)})"
        )
    weights = root / WEIGHTS_FILE[manifest.format]
    if WEIGHTS_FILE[manifest.format] not in manifest.files:
        raise ArtifactError(f"{root}: format {manifest.format} expects {weights.name} in the manifest")
    try:
        scorer = loader(weights, manifest)
    except ArtifactError:
        raise
    except Exception as exc:  # each framework raises its own types for a corrupt file
        raise ArtifactError(
            f"{weights}: cannot load {manifest.format} weights ({exc.__class__.__name__}: {exc})"
        ) from exc
    return LoadedModel(root, manifest, scorer)


def _load_skops(weights: Path, manifest: ModelManifest) -> Scorer:
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=weights)
    refused = sorted(t for t in untrusted if t not in TRUSTED_SKOPS_TYPES)
    if refused:
        raise UnsafeArtifactError(f"{weights}: refusing untrusted type(s) {refused}")
    model = sio.load(weights, trusted=list(untrusted))
    exact = (lambda x: model.predict(x)) if manifest.task == "regression" else (lambda x: model.predict_proba(x))
    return linear_scorer(model, manifest, exact) or exact


def linear_scorer(model: Any, manifest: ModelManifest, reference: Scorer) -> LinearScorer | None:
    """A :class:`LinearScorer` for a standardized linear model, or None for any other estimator.

    ``StandardScaler`` steps followed by ``LogisticRegression`` (binary or multinomial),
    ``LinearRegression`` or ``Ridge`` fold into one affine map, so a prediction is one matrix
    product (a few µs for a row instead of scikit-learn's ~250 µs of input checks). It is used
    only when it agrees with ``reference`` (scikit-learn itself) to 1e-5 (absolute or relative) on
    256 probe rows spread around the scaler's statistics, numpy and one-row paths both; otherwise
    scikit-learn serves.
    """
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [s for _, s in model.steps] if isinstance(model, Pipeline) else [model]
    *scalers, last = steps
    if not all(isinstance(s, StandardScaler) for s in scalers) or not isinstance(
        last, (LogisticRegression, LinearRegression, Ridge)
    ):
        return None
    k = len(manifest.input_schema)
    coef = np.atleast_2d(np.asarray(last.coef_, dtype=np.float64))
    if coef.shape[1] != k:
        return None
    weights, bias = coef.T.copy(), np.atleast_1d(np.asarray(last.intercept_, dtype=np.float64)).copy()
    center, spread = np.zeros(k), np.ones(k)
    for scaler in reversed(scalers):  # x -> (x - mean) / scale, innermost last
        mean = scaler.mean_ if scaler.mean_ is not None else np.zeros(k)
        scale = scaler.scale_ if scaler.scale_ is not None else np.ones(k)
        bias = bias - (mean / scale) @ weights
        weights = weights / scale[:, None]
        center, spread = mean, np.where(scale > 0, scale, 1.0)
    kind = "regression" if not isinstance(last, LogisticRegression) else "binary" if coef.shape[0] == 1 else "softmax"
    scorer = LinearScorer(weights, bias, kind)
    probe = (center + spread * np.random.default_rng(0).normal(size=(256, k)) * 2).astype(np.float32)
    try:
        expected = np.asarray(reference(probe), dtype=np.float64)
        # 1e-5 absolute or relative: scikit-learn computes float32 input in float32, so a regression
        # value of a few hundred is only good to ~1e-4 there (the fold computes in float64)
        agree = np.allclose(scorer(probe), expected, rtol=1e-5, atol=1e-5) and np.allclose(
            [scorer.row(r) for r in probe[:16].tolist()], expected[:16].reshape(16, -1), rtol=1e-5, atol=1e-5
        )
    except (ValueError, TypeError):  # pragma: no cover - an estimator fitted on other inputs
        return None
    return scorer if agree else None


class LinearScorer:
    """A folded linear model: ``scorer(x)`` for a float32 matrix, ``scorer.row(values)`` for one row.

    ``kind`` is ``binary`` (logistic: ``[1 - p, p]``), ``softmax`` (multinomial logistic) or
    ``regression``. :meth:`row` computes in plain Python floats: for a single row that is cheaper
    than numpy's per-call dispatch, which on a busy server also evicts the interpreter from the
    CPU caches (see serving/README.md). Both give the same values up to float64 rounding.
    """

    def __init__(self, weights: np.ndarray, bias: np.ndarray, kind: str):
        from scipy.special import expit

        self.kind, self._expit = kind, expit
        if kind == "binary":  # both columns z, then p = expit(z) and [1 - p, p] as scikit-learn gives them
            weights, bias = np.hstack([weights, weights]), np.concatenate([bias, bias])
        self.weights, self.bias = weights, bias
        self._columns = [tuple(c) for c in weights.T.tolist()]  # per output, for row()
        self._intercepts = bias.tolist()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = np.dot(x, self.weights)  # float64: the float32 rows are widened by the product
        z += self.bias
        if self.kind == "regression":
            return z.reshape(len(x))
        if self.kind == "binary":
            self._expit(z, out=z)
            z *= _FLIP  # [p, p] -> [-p, p] -> [1 - p, p]: exactly 1 - p, as scikit-learn computes it
            z += _SHIFT
            return z
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def row(self, values: Sequence[float]) -> list[float]:
        """Probabilities (or ``[value]``) of one row of finite numbers, in Python floats."""
        if self.kind == "binary":
            p = _expit(self._intercepts[1] + sum(map(operator.mul, values, self._columns[1])))
            return [1.0 - p, p]
        z = [b + sum(map(operator.mul, values, w)) for b, w in zip(self._intercepts, self._columns, strict=True)]
        if self.kind == "regression":
            return z
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = sum(e)
        return [v / total for v in e]


_FLIP, _SHIFT = np.array([-1.0, 1.0]), np.array([1.0, 0.0])


def _expit(v: float) -> float:
    """The logistic function in Python floats, without math.exp's OverflowError."""
    return 1.0 / (1.0 + math.exp(-v)) if v >= -700.0 else math.exp(v)


def _load_torchscript(weights: Path, manifest: ModelManifest) -> Scorer:
    import torch

    module = torch.jit.load(str(weights), map_location="cpu")
    module.eval()

    def score(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return score


def _load_onnx(weights: Path, manifest: ModelManifest) -> Scorer:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("SHIPYARD_ORT_THREADS", "1"))
    session = ort.InferenceSession(str(weights), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda x: session.run(None, {input_name: x})[0]


def _import_tensorflow() -> Any:
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ArtifactError(
            f"serving a Keras or TFLite model needs TensorFlow, which is not installed; {TF_HINT}"
        ) from exc
    return tf


def _load_keras(weights: Path, manifest: ModelManifest) -> Scorer:
    tf = _import_tensorflow()
    model = tf.keras.models.load_model(str(weights), compile=False, safe_mode=True)
    return lambda x: np.asarray(model(x, training=False))


def _load_tflite(weights: Path, manifest: ModelManifest) -> Scorer:
    import threading

    tf = _import_tensorflow()
    interpreter = tf.lite.Interpreter(model_path=str(weights), num_threads=1)
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    lock = threading.Lock()  # one interpreter: calls take turns

    def score(x: np.ndarray) -> np.ndarray:
        with lock:
            interpreter.resize_tensor_input(source, list(x.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(source, x)
            interpreter.invoke()
            return np.array(interpreter.get_tensor(target))

    return score


_LOADERS: dict[str, Callable[[Path, ModelManifest], Scorer]] = {
    "sklearn-skops": _load_skops,
    "torchscript": _load_torchscript,
    "onnx": _load_onnx,
    "keras": _load_keras,
    "tflite": _load_tflite,
}
