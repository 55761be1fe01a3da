"""The ``keras`` family: a Keras MLP on the encoded table, behind the ``tf`` extra (opt-in).

The model takes the matrix of its own fitted preprocessing (:func:`keras_preprocessing`: numeric
features standardized with a missing indicator where training had nulls, categories one-hot with
their unknown and missing buckets), stored in ``model.json`` like every family's, so evaluation
and serving apply exactly what training applied. On it: ``depth`` ReLU layers of ``width`` units,
each followed by dropout, then a softmax over the classes or one value on the standardized
target, undone by a ``Rescaling`` head so that the served value is in the label's units.

Training mirrors the PyTorch MLP's (:mod:`components.train_model.loop`): AdamW (decoupled weight
decay), a linear warm-up over the first 5% of steps then cosine decay to 5% of ``lr``, shuffled
minibatches, seeded (``keras.utils.set_random_seed`` and TensorFlow's deterministic ops), and
early stopping on the validation loss with the best epoch's weights restored. The validation loss
is the one :func:`components.train_model.core.validation_loss` gives the other families: log loss,
or the squared error in units of the training label's standard deviation.

:func:`fit_keras` writes a ``keras`` Model artifact (``model.keras``, loaded by serving with
``safe_mode``) that also holds a TensorFlow SavedModel export (``saved_model/``, its ``serve``
endpoint takes the encoded matrix); :func:`convert_to_tflite` turns it into a ``tflite`` artifact;
:func:`keras_scorer` is the family's scorer for cross-validation. TensorFlow is imported only when
one of them is called; without it they raise a ConfigError naming the ``tf`` extra.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serving.formats import TF_HINT
from serving.preprocess import Preprocessing
from shipyard.artifacts import ModelManifest, read_model_manifest, sha256_file, write_model
from shipyard.errors import ArtifactError, ConfigError, TrainingDivergedError
from shipyard.formats import FORMATS

if TYPE_CHECKING:
    from components.train_model.core import TabularData, TrainConfig

FAMILY = "keras"
KERAS_FILE = FORMATS["keras"].weights_file
TFLITE_FILE = FORMATS["tflite"].weights_file
#: The SavedModel export inside a ``keras`` artifact (its ``serve`` endpoint takes the encoded matrix).
SAVED_MODEL_DIR = "saved_model"
#: TrainConfig fields that shape the Keras MLP's training (recorded as the family's params).
KERAS_FIELDS = (
    "width",
    "depth",
    "dropout",
    "lr",
    "weight_decay",
    "batch_size",
    "max_epochs",
    "min_epochs",
    "patience",
    "label_smoothing",
    "max_seconds",
    "num_threads",
    "seed",
    "task",
)
#: Rows per forward pass when scoring a split (bounds the memory of one call).
SCORE_CHUNK = 8192


def keras_params(config: TrainConfig) -> dict[str, Any]:
    """The TrainConfig values the Keras MLP is trained with (``details.params`` of its artifact)."""
    return {k: getattr(config, k) for k in KERAS_FIELDS}


def keras_preprocessing(data: TabularData) -> Preprocessing:
    """The Keras MLP's preprocessing, fitted on ``data`` (the training split): numeric features
    standardized (training mean and standard deviation), categories one-hot."""
    return Preprocessing.fit(
        data.frame,
        data.kinds,
        numeric="standard",
        categorical="onehot",
        nullable=[c.name for c in data.input_schema if c.nullable],
    )


def fit_keras(
    train: TabularData,
    val: TabularData,
    config: TrainConfig,
    out: str,
    epoch_log: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Trains the Keras MLP, early-stopped on ``val``, and writes its ``keras`` Model artifact to ``out``.

    The artifact holds ``model.keras`` (what serving loads), the SavedModel export in
    ``saved_model/`` (``details.saved_model`` says how to call it) and the preprocessing in
    ``model.json``; ``metrics.val_loss`` is the validation loss of the best epoch's weights.

    Args:
        train: Training split.
        val: Validation split (labels encoded with the training classes).
        config: Hyperparameters (:data:`KERAS_FIELDS`; the PyTorch MLP's others do not apply).
        out: The Model artifact directory to write (atomically).
        epoch_log: Called with each epoch's figures as it ends (``epoch``, ``train_loss``,
            ``val_loss``, ``lr``, ``seconds``, ``rows_per_second``), as the PyTorch MLP's.

    Returns:
        Summary: ``val_loss``, ``best_epoch`` (0-based), ``epochs`` run, ``stopped`` (``patience``,
        ``max_epochs`` or ``max_seconds``), ``batch_size``, ``threads``, ``device`` (``cpu``),
        ``train_seconds``, ``architecture`` and ``history`` (the epochs' figures).

    Raises:
        ConfigError: TensorFlow is not installed (the ``tf`` extra), or Keras runs on another backend.
        TrainingDivergedError: The training or validation loss became NaN or infinite.
    """
    tf = _tensorflow()
    fitted = _fit(tf, train, val, config, epoch_log)
    summary = fitted.summary
    width = fitted.prep.width
    saved_model = {
        "dir": SAVED_MODEL_DIR,
        "endpoint": "serve",
        "input_shape": [None, width],
        "output": "probabilities" if train.task != "regression" else "value",
    }
    details = {
        "family": FAMILY,
        "params": keras_params(config),
        "architecture": summary["architecture"],
        "training": {k: v for k, v in summary.items() if k not in ("architecture", "history")},
        "saved_model": saved_model,
        "framework": {"tensorflow": tf.__version__, "keras": tf.keras.__version__},
    }
    manifest = train.manifest(FAMILY, {"val_loss": summary["val_loss"]}, details, fitted.prep)

    def build(tmp: Path) -> None:
        fitted.model.save(str(tmp / KERAS_FILE))
        fitted.model.export(str(tmp / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)

    write_model(out, manifest, build)
    return summary


def keras_scorer(train: TabularData, val: TabularData, config: TrainConfig) -> Callable[[TabularData], np.ndarray]:
    """Fits the Keras MLP as :func:`fit_keras` does (early-stopped on ``val``, nothing written) and
    returns its scorer: a split's probabilities ``[rows, classes]`` or values ``[rows]``
    (``core.fit_scorer``'s contract, for cross-validation).

    Raises:
        ConfigError: TensorFlow is not installed (the ``tf`` extra).
    """
    tf = _tensorflow()
    fitted = _fit(tf, train, val, config, None)
    regression = train.task == "regression"

    def score(data: TabularData) -> np.ndarray:
        out = _predict(fitted.model, fitted.prep.transform_frame(data.frame, "held-out fold").x)
        return out.reshape(len(out)) if regression else out

    return score


def convert_to_tflite(keras_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> ModelManifest:
    """Converts a ``keras`` artifact's SavedModel export into a ``tflite`` Model artifact at ``out``.

    The TFLite artifact keeps the source's input schema, labels, metrics and preprocessing (it takes
    the same raw rows and is served by :class:`serving.model.TFLiteModel`); ``details.variant`` is
    ``fp32-tflite`` and ``parent`` names the source artifact.

    Returns:
        The manifest written.

    Raises:
        ConfigError: TensorFlow is not installed (the ``tf`` extra).
        ArtifactError: ``keras_dir`` is not a ``keras`` artifact holding a SavedModel export.
        IntegrityError: A file of ``keras_dir`` does not match its recorded sha256.
    """
    tf = _tensorflow()
    source = Path(keras_dir)
    manifest = read_model_manifest(source, verify=True)
    saved = (manifest.details.get("saved_model") or {}).get("dir", SAVED_MODEL_DIR)
    if manifest.format != FAMILY or f"{saved}/saved_model.pb" not in manifest.files:
        raise ArtifactError(
            f"{source}: expected a keras artifact with its SavedModel export in {saved}/ "
            f"(written by fit_keras), got format {manifest.format!r}"
        )
    flatbuffer = tf.lite.TFLiteConverter.from_saved_model(str(source / saved)).convert()
    details = {k: v for k, v in manifest.details.items() if k != "saved_model"}
    details["variant"] = "fp32-tflite"
    details["framework"] = {**details.get("framework", {}), "tflite_converter": tf.__version__}
    parent = {"path": str(source), "format": manifest.format, "model_json_sha256": sha256_file(source / "model.json")}
    tflite = dataclasses.replace(manifest, format="tflite", details=details, parent=parent, files={})
    return write_model(out, tflite, lambda tmp: (tmp / TFLITE_FILE).write_bytes(flatbuffer))


# --- training --------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Fitted:
    """A trained Keras MLP: the served model (probabilities or values), its preprocessing, its summary."""

    model: Any
    prep: Preprocessing
    summary: dict[str, Any]


def _tensorflow() -> Any:
    """TensorFlow, imported on first use (its C++ INFO lines silenced unless TF_CPP_MIN_LOG_LEVEL is set).

    Raises:
        ConfigError: TensorFlow is not installed, or Keras is set to another backend.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ConfigError(f"train: the keras family needs TensorFlow, which is not installed; {TF_HINT}") from exc
    backend = tf.keras.backend.backend()
    if backend != "tensorflow":
        raise ConfigError(
            f"train: the keras family needs the TensorFlow backend of Keras, not {backend!r}; unset KERAS_BACKEND"
        )
    return tf


def _set_threads(tf: Any, config: TrainConfig, rows: int) -> int:
    """Sets TensorFlow's CPU threads as the PyTorch MLP's rule (1 below ``SMALL_DATA_ROWS`` rows unless
    ``num_threads`` says otherwise); returns the threads in force (0: TensorFlow's default).

    TensorFlow takes the setting only before its runtime starts; later it keeps what it has."""
    from components.train_model.core import SMALL_DATA_ROWS

    wanted = config.num_threads or (1 if rows < SMALL_DATA_ROWS else 0)
    threading = tf.config.threading
    if threading.get_intra_op_parallelism_threads() != wanted:
        try:
            threading.set_intra_op_parallelism_threads(wanted)
            threading.set_inter_op_parallelism_threads(wanted)
        except RuntimeError:  # the runtime is initialized already: its thread pools stay
            pass
    return int(threading.get_intra_op_parallelism_threads())


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    """The model's outputs for ``x``, in chunks of :data:`SCORE_CHUNK` rows."""
    if len(x) <= SCORE_CHUNK:
        return np.asarray(model(x, training=False))
    return np.concatenate(
        [np.asarray(model(x[i : i + SCORE_CHUNK], training=False)) for i in range(0, len(x), SCORE_CHUNK)]
    )


def split_loss(task: str, y: np.ndarray, outputs: np.ndarray, y_std: float, classes: int) -> float:
    """The validation loss of :func:`components.train_model.core.validation_loss`: log loss of the
    probabilities, or MSE of the values in units of ``y_std``."""
    from sklearn.metrics import log_loss, mean_squared_error

    if task == "regression":
        return float(mean_squared_error(y, outputs.reshape(len(y))) / max(y_std**2, 1e-12))
    return float(log_loss(y, outputs, labels=list(range(classes))))


def _fit(
    tf: Any,
    train: TabularData,
    val: TabularData,
    config: TrainConfig,
    epoch_log: Callable[[dict[str, float]], None] | None,
) -> _Fitted:
    """Fits the preprocessing and the MLP (module docstring); the best epoch's weights restored."""
    from components.train_model.loop import auto_batch_size

    keras = tf.keras
    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    threads = _set_threads(tf, config, len(train))
    prep = keras_preprocessing(train)
    x = prep.transform_frame(train.frame, "train split").x
    xv = prep.transform_frame(val.frame, "validation split").x
    task, classes = train.task, len(train.label_names)
    regression = task == "regression"
    y_mean = float(train.y.mean()) if regression else 0.0
    y_std = (float(train.y.std()) or 1.0) if regression else 1.0

    arch = {
        "inputs": int(prep.width),
        "width": config.width,
        "depth": config.depth,
        "dropout": config.dropout,
        "outputs": 1 if regression else classes,
        "head": "rescaling" if regression else "softmax",
    }
    if regression:
        arch.update(y_mean=y_mean, y_std=y_std)
    inputs = keras.Input((prep.width,), name="features")
    hidden = inputs
    for i in range(config.depth):
        hidden = keras.layers.Dense(config.width, activation="relu", name=f"hidden_{i}")(hidden)
        if config.dropout > 0:
            hidden = keras.layers.Dropout(config.dropout, seed=config.seed + i, name=f"dropout_{i}")(hidden)
    if regression:
        raw = keras.layers.Dense(1, name="standardized")(hidden)
        served = keras.Model(inputs, keras.layers.Rescaling(y_std, y_mean, name="value")(raw), name="shipyard_keras")
        targets = ((train.y.astype(np.float64) - y_mean) / y_std).astype(np.float32)
        loss: Any = keras.losses.MeanSquaredError()
    else:
        raw = keras.layers.Dense(classes, name="logits")(hidden)
        served = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(raw), name="shipyard_keras")
        if config.label_smoothing > 0:
            targets = np.eye(classes, dtype=np.float32)[train.y]
            loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)
        else:
            targets = train.y
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    trained = keras.Model(inputs, raw)  # the same layers without the head: the loss is on logits / z

    batch = config.batch_size or auto_batch_size(len(x))
    total_steps = max(1, math.ceil(len(x) / batch)) * config.max_epochs
    warmup = max(1, total_steps // 20)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.lr / warmup,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.05,
        warmup_target=config.lr,
        warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    trained.compile(optimizer=optimizer, loss=loss)
    stopper = _early_stopping(keras)(served, val, xv, config, y_std, classes, (len(x), batch), epoch_log, start)
    trained.fit(x, targets, batch_size=batch, epochs=config.max_epochs, shuffle=True, verbose=0, callbacks=[stopper])
    if stopper.best_weights is not None:
        served.set_weights(stopper.best_weights)
    val_loss = split_loss(task, val.y, _predict(served, xv), y_std, classes)
    summary = {
        "val_loss": val_loss,
        "best_epoch": stopper.best_epoch,
        "epochs": len(stopper.history),
        "stopped": stopper.stopped or "max_epochs",
        "batch_size": batch,
        "threads": threads,
        "device": "cpu",
        "train_seconds": round(time.perf_counter() - start, 3),
        "architecture": arch,
        "history": stopper.history,
    }
    return _Fitted(served, prep, summary)


def _early_stopping(keras: Any) -> Any:
    """The early-stopping callback class (built here: it subclasses Keras's, imported lazily).

    After each epoch it computes the validation loss of the served model (:func:`split_loss`),
    keeps the weights of the best epoch (better by more than 1e-7), and stops once ``min_epochs``
    have run and ``patience`` epochs have passed without a better one, or past ``max_seconds``
    (checked after every step).
    """

    class EarlyStopping(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def __init__(
            self,
            served: Any,
            val: TabularData,
            xv: np.ndarray,
            config: TrainConfig,
            y_std: float,
            classes: int,
            rows_and_batch: tuple[int, int],
            epoch_log: Callable[[dict[str, float]], None] | None,
            start: float,
        ) -> None:
            super().__init__()
            self.served, self.val, self.xv, self.config = served, val, xv, config
            self.y_std, self.classes, self.epoch_log, self.start = y_std, classes, epoch_log, start
            self.rows, self.batch = rows_and_batch
            self.best_loss, self.best_epoch = math.inf, -1
            self.best_weights: list[np.ndarray] | None = None
            self.history: list[dict[str, float]] = []
            self.stopped = ""
            self.epoch_start, self.steps = 0.0, 0

        def _out_of_time(self) -> bool:
            limit = self.config.max_seconds
            return bool(limit) and time.perf_counter() - self.start > limit

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.epoch_start, self.steps = time.perf_counter(), 0

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.steps += 1
            if self._out_of_time():
                self.stopped = "max_seconds"
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            train_loss = float((logs or {}).get("loss", math.nan))
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            if not math.isfinite(train_loss):
                raise TrainingDivergedError(
                    f"train: the keras model's training loss became {train_loss} at epoch {epoch}; "
                    f"lower lr (now {self.config.lr:g})"
                )
            outputs = _predict(self.served, self.xv)
            if not np.isfinite(outputs).all():
                raise TrainingDivergedError(
                    f"train: the keras model's validation outputs became non-finite at epoch {epoch}; "
                    f"lower lr (now {self.config.lr:g})"
                )
            val_loss = split_loss(self.val.task, self.val.y, outputs, self.y_std, self.classes)
            seconds = time.perf_counter() - self.epoch_start
            rows = min(self.steps * self.batch, self.rows)  # every step but an epoch's last is a full batch
            stats = {
                "epoch": float(epoch),
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": lr,
                "seconds": seconds,
                "rows_per_second": rows / seconds if seconds > 0 else 0.0,
            }
            self.history.append(stats)
            if self.epoch_log is not None:
                self.epoch_log(stats)
            if val_loss < self.best_loss - 1e-7:
                self.best_loss, self.best_epoch = val_loss, epoch
                self.best_weights = [np.array(w, copy=True) for w in self.served.get_weights()]
            if epoch + 1 >= self.config.min_epochs and epoch - self.best_epoch >= self.config.patience:
                self.stopped = "patience"
                self.model.stop_training = True
            elif self._out_of_time():
                self.stopped = "max_seconds"
                self.model.stop_training = True

    return EarlyStopping
