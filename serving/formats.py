"""Loading Model artifacts by format, after verifying their sha256 manifest.

One loader per format in ``model.json``: ``sklearn-skops`` (skops, only scikit-learn/numpy types
trusted), ``torchscript`` (``torch.jit.load``: a ``torch.save`` pickle is not a TorchScript archive
and is refused), ``onnx`` (ONNX Runtime), and, behind the ``tf`` extra, ``keras`` (``safe_mode``:
no Python lambdas) and ``tflite`` (the TensorFlow Lite interpreter). A plain pickle is never
loaded: such files are refused before anything is read.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import operator
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from serving import codec
from serving.preprocess import Encoded, Preprocessing
from shipyard.artifacts import ModelManifest, read_model_manifest
from shipyard.errors import ArtifactError, DataValidationError, UnsafeArtifactError
from shipyard.formats import FORMATS

#: The weights file each format keeps in the artifact directory.
WEIGHTS_FILE = {f.name: f.weights_file for f in FORMATS.values()}
TF_HINT = "install the tf extra: pip install -c requirements.lock -e '.[tf]'"
#: File endings that mean pickle; never loaded.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".cloudpickle")
#: Exact type names a skops file may hold beyond skops' own default-trusted (scikit-learn and numpy
#: data) types; every other type skops reports as untrusted is refused. Trusting a module prefix
#: instead would let a crafted file call e.g. ``builtins.exec`` or ``numpy.save`` while loading.
#: The exceptions are exact names a HistGradientBoosting model holds: its tree predictors (plain
#: arrays) and ``functools.partial`` over scikit-learn's ``check_array``. A partial is only
#: constructed while loading, never called, and its function is checked by name like any other
#: type, so a partial over anything else (``builtins.exec``) is still refused.
TRUSTED_SKOPS_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "functools.partial",
        "sklearn.utils.validation.check_array",
    }
)

Scorer = Callable[[np.ndarray], np.ndarray]
logger = logging.getLogger(__name__)


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
        #: Raw features → the matrix the weights take; the identity for a model without one.
        try:
            self.preprocessing = (
                Preprocessing.plain(manifest.feature_names)
                if manifest.preprocessing is None
                else Preprocessing.from_dict(manifest.preprocessing, str(path / "model.json"))
            )
        except DataValidationError as exc:  # a broken artifact, not bad client data
            raise ArtifactError(str(exc)) from exc
        if self.preprocessing.feature_names != manifest.feature_names:
            raise ArtifactError(
                f"{path / 'model.json'}: preprocessing features {self.preprocessing.feature_names} differ from "
                f"input_schema {manifest.feature_names}"
            )
        if not self.preprocessing.identity:
            self.score_row = None  # one raw row needs the preprocessing first

    def encode_frame(self, df: Any, where: str = "dataset") -> Encoded:
        """The model's input matrix for a DataFrame of raw features (:class:`Preprocessing`).

        Raises:
            DataValidationError: A feature is missing, of the wrong type, or null where it may not be.
        """
        if self.preprocessing.identity:
            return Encoded(codec.from_frame(df, self.manifest.feature_names, where), {})
        return self.preprocessing.transform_frame(df, where)

    def score_frame(self, df: Any, where: str = "dataset") -> np.ndarray:
        """:meth:`scores` of a DataFrame of raw features (see :meth:`encode_frame`)."""
        return self.scores(self.encode_frame(df, where).x)

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
    loader = LOADERS.get(manifest.format)
    if loader is None:
        raise ArtifactError(
            f"{root}: format {manifest.format!r} cannot be served by this runtime (supported: {sorted(LOADERS)})"
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

    An optional ``StandardScaler`` followed by ``LogisticRegression`` (binary or multinomial),
    ``LinearRegression`` or ``Ridge`` folds into one affine map (:func:`fold_linear`), so a
    prediction is one matrix product (a few µs for a row instead of scikit-learn's ~250 µs of input
    checks). It is used only when it agrees with ``reference`` (scikit-learn itself) within the
    worst-case rounding of scikit-learn's float32 arithmetic (:meth:`LinearFold.disagreement`), so
    the decision is the same on every CPU and BLAS kernel. Otherwise scikit-learn serves.
    """
    fold = fold_linear(model, manifest)
    if fold is None:
        return None
    try:
        worst = fold.disagreement(reference)
    except (ValueError, TypeError):  # pragma: no cover - an estimator fitted on other inputs
        return None
    if worst <= 1.0:
        return fold.scorer
    logger.info("linear fold not used: it differs from scikit-learn by %.3g times the rounding bound", worst)
    return None


def fold_linear(model: Any, manifest: ModelManifest) -> LinearFold | None:
    """The affine map of a standardized linear scikit-learn model, or None for any other estimator.

    ``[StandardScaler →] LogisticRegression | LinearRegression | Ridge`` (one scaler at most, one
    regression target), with the scaler's centering and scaling each taken only when it applies them.
    """
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [s for _, s in model.steps] if isinstance(model, Pipeline) else [model]
    *scalers, last = steps
    if (
        len(scalers) > 1
        or not all(isinstance(s, StandardScaler) for s in scalers)
        or not isinstance(last, (LogisticRegression, LinearRegression, Ridge))
    ):
        return None
    k = model_width(manifest)
    coef = np.atleast_2d(np.array(last.coef_, dtype=np.float64))  # copies: the fold never aliases the model
    if coef.shape[1] != k or (not isinstance(last, LogisticRegression) and coef.shape[0] != 1):
        return None  # fitted on other inputs, or several regression targets
    intercept = np.broadcast_to(np.asarray(last.intercept_, dtype=np.float64), (coef.shape[0],)).copy()
    # float32 rows times float32 coefficients stay float32; float64 coefficients widen the product
    decision_unit = UNIT_ROUNDOFF_32 if np.asarray(last.coef_).dtype == np.float32 else UNIT_ROUNDOFF_64
    mean, scale, center, spread = np.zeros(k), np.ones(k), np.zeros(k), np.ones(k)
    if scalers:
        scaler = scalers[0]
        if scaler.mean_ is not None:  # the data's centre and spread place the probe rows, applied or not
            center = mean = np.array(scaler.mean_, dtype=np.float64)
        if scaler.scale_ is not None:
            spread = scale = np.array(scaler.scale_, dtype=np.float64)  # zero variances are 1 in scale_
        mean = mean if scaler.with_mean else np.zeros(k)
        scale = scale if scaler.with_std else np.ones(k)
    kind = "regression" if not isinstance(last, LogisticRegression) else "binary" if coef.shape[0] == 1 else "softmax"
    return LinearFold(mean, scale, coef, intercept, kind, center, spread, decision_unit)


def model_width(manifest: ModelManifest) -> int:
    """How many columns the weights take: the preprocessing's output width, else one per input feature."""
    if manifest.preprocessing is None:
        return len(manifest.input_schema)
    return Preprocessing.from_dict(manifest.preprocessing).width


@dataclasses.dataclass(frozen=True, eq=False)
class LinearFold:
    """``x -> (x - mean) / scale -> coef·z + intercept`` (then logistic or softmax), folded.

    Attributes:
        mean: The centering applied (zeros without), ``[k]``.
        scale: The scaling applied (ones without), ``[k]``.
        coef: Coefficients ``[outputs, k]``.
        intercept: Intercepts ``[outputs]``.
        kind: ``regression``, ``binary`` or ``softmax`` (see :class:`LinearScorer`).
        center: Where the probe rows are centred (the data's mean).
        spread: Their spread per feature (the data's standard deviation).
        decision_unit: Unit roundoff of scikit-learn's decision ``X @ coef_ + intercept_``: float32's
            for coefficients fitted on float32 (Shipyard's training), float64's for float64 ones.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    kind: str
    center: np.ndarray
    spread: np.ndarray
    decision_unit: float = 2.0**-24

    @functools.cached_property
    def scorer(self) -> LinearScorer:
        """The folded map: weights ``coef / scale`` and bias ``intercept - (mean / scale)·coef``."""
        weights = self.coef.T / self.scale[:, None]
        return LinearScorer(weights, self.intercept - (self.mean / self.scale) @ self.coef.T, self.kind)

    def probe(self, rows: int = 256) -> np.ndarray:
        """Float32 rows spread around the data (seeded): ``center ± 2·spread`` Gaussian."""
        noise = np.random.default_rng(0).normal(size=(rows, len(self.center))) * 2
        return (self.center + self.spread * noise).astype(np.float32)

    def tolerance(self, x: np.ndarray) -> np.ndarray:
        """How far a correct fold may lie from scikit-learn's float32 answer, per row and output.

        A worst-case bound, valid for any summation order, SIMD width, FMA use and BLAS kernel, from
        the magnitudes involved (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1):

        - scikit-learn's scaler computes ``(x - mean) / scale`` and stores it in float32 (with the
          statistics in float64, or cast to float32 first): each ``z_j`` is within
          ``4u (|x_j| + |mean_j|) / scale_j`` of its exact value;
        - the decision ``Σ_j coef_j z_j + intercept`` is k products and k additions, within
          ``γ_{k+1}(u_d)`` of the sum of the terms' magnitudes, ``u_d`` the roundoff of its arithmetic
          (float32 for float32 coefficients, float64 for float64 ones: :attr:`decision_unit`);

        together ``|Δz| ≤ (4u32 + γ_{k+1}(u_d))(1 + 4u32) · T`` (``≈ γ_{k+5}(u32) · T`` for a
        float32 model) with ``T = Σ_j |coef_j| (|x_j| + |mean_j|) / scale_j + |intercept|``, plus
        ``γ_{2k+5}(u64) · T`` for the fold's own float64 folding and evaluation.
        A logistic output moves by at most ``|Δz| / 4`` (the slope of expit) plus 4 float32 roundings
        of ``p`` and ``1 - p``; a softmax output by at most ``2 max |Δz|`` plus ``classes + 4``
        roundings (exp, sum, divide).

        Args:
            x: Float32 rows ``[n, k]``.

        Returns:
            Absolute tolerances ``[n, outputs]`` (``[n, 2]`` for binary: both columns).
        """
        dz = self.decision_tolerance(x)
        if self.kind == "regression":
            return dz
        if self.kind == "binary":
            return np.repeat(dz / 4 + 4 * UNIT_ROUNDOFF_32, 2, axis=1)
        classes = self.coef.shape[0]
        return np.repeat(2 * dz.max(axis=1, keepdims=True) + (classes + 4) * UNIT_ROUNDOFF_32, classes, axis=1)

    def decision_tolerance(self, x: np.ndarray) -> np.ndarray:
        """The bound on the decision (logit or value) ``|Δz|`` of :meth:`tolerance`, ``[n, outputs]``."""
        k = x.shape[1]
        carried = (np.abs(x.astype(np.float64)) + np.abs(self.mean)) / self.scale
        magnitude = carried @ np.abs(self.coef).T + np.abs(self.intercept)
        scaling, decision = 4 * UNIT_ROUNDOFF_32, _gamma(k + 1, self.decision_unit)
        return ((scaling + decision) * (1 + scaling) + _gamma(2 * k + 5, UNIT_ROUNDOFF_64)) * magnitude

    def disagreement(self, reference: Scorer, rows: int = 256, one_rows: int = 16) -> float:
        """The largest ``|fold - reference| / tolerance`` on :meth:`probe` rows: numpy path on all of
        them, the one-row path on the first ``one_rows``; at most 1 means they agree (inf when a value
        is not finite or the shapes differ)."""
        x = self.probe(rows)
        expected = np.asarray(reference(x), dtype=np.float64).reshape(rows, -1)
        tolerance = np.maximum(self.tolerance(x), np.finfo(np.float64).tiny)
        folded = self.scorer(x).reshape(rows, -1)
        by_row = np.array([self.scorer.row(r) for r in x[:one_rows].tolist()]).reshape(one_rows, -1)
        worst = 0.0
        for got, want, tol in ((folded, expected, tolerance), (by_row, expected[:one_rows], tolerance[:one_rows])):
            if got.shape != want.shape or not (np.isfinite(got).all() and np.isfinite(want).all()):
                return math.inf
            worst = max(worst, float(np.max(np.abs(got - want) / tol)))
        return worst


#: Unit roundoff (half the machine epsilon) of float32, the arithmetic scikit-learn applies to the
#: float32 rows a server receives, and of float64, the fold's.
UNIT_ROUNDOFF_32, UNIT_ROUNDOFF_64 = 2.0**-24, 2.0**-53


def _gamma(n: int, u: float) -> float:
    """Higham's γ_n = n·u / (1 - n·u): the relative error bound of n roundings in a row."""
    return n * u / (1.0 - n * u)


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


#: The loader of each format of :data:`shipyard.formats.FORMATS` (a test checks none is missing).
LOADERS: dict[str, Callable[[Path, ModelManifest], Scorer]] = {
    "sklearn-skops": _load_skops,
    "torchscript": _load_torchscript,
    "onnx": _load_onnx,
    "keras": _load_keras,
    "tflite": _load_tflite,
}
