"""Training the model families on raw mixed-type tables and choosing the candidate.

The families are trained on the same splits, each on its own fitted preprocessing
(:class:`serving.preprocess.Preprocessing`, fitted on the training split only and stored in the
family's ``model.json``, so evaluation and serving apply exactly what training applied):

- ``gbdt``: scikit-learn ``HistGradientBoosting{Classifier,Regressor}`` with native categorical
  splits on the categorical code columns, early stopping on the validation split (``sklearn-skops``).
- ``mlp``: a PyTorch MLP for tables (:class:`TabularMLP`): robust scaling with smooth clipping and
  periodic embeddings of numeric columns, learned embeddings of categorical codes, missing values
  through the preprocessing's indicator columns, and a packed ensemble of ``ensemble`` members
  sharing one backbone (TabM-mini style); AdamW with warm-up and cosine decay, the best epoch by
  validation loss restored (``torchscript``: TorchScript + ``state_dict``).
- ``linear``: standardized logistic or ridge regression on one-hot categories (``sklearn-skops``);
  the baseline evaluation compares with. On an all-numeric table without nulls its preprocessing
  is the identity and it is exactly the artifact of earlier versions (the server folds it).
- ``keras`` (opt-in: ``families`` must name it; the ``tf`` extra): a Keras MLP on standardized
  numbers and one-hot categories (``keras``: ``.keras`` + a SavedModel export;
  :mod:`components.train_model.keras_family`).

The candidate (``candidate="best"``): the linear baseline unless another family's per-row losses
beat it by more than one standard error, then the family with the lowest loss; the losses are the
validation split's, or out-of-fold over train + validation on a table of at most ``cv_max_rows``
rows (:mod:`components.train_model.selection`). The MLP itself is in
:mod:`components.train_model.mlp`.
"""

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components import tracking
from components.train_model import distributed
from components.train_model.checkpoint import CheckpointStore
from components.train_model.loop import (  # noqa: F401 (re-exported for tuning and quantization)
    PRECISIONS,
    MLPInputs,
    ProgressLine,
    auto_batch_size,
    fit_module,
    pick_device,
)
from components.train_model.mlp import (  # noqa: F401 (the MLP's names, re-exported for tuning and quantization)
    STATE_DICT_FILE,
    TORCHSCRIPT_FILE,
    TabularMLP,
    architecture,
    build_module,
    fill_unseen_embeddings,
    load_torch_weights,
    save_torch_model,
    scoring_module,
)
from components.train_model.selection import (  # noqa: F401 (re-exported: the rule's names)
    TIE_ORDER,
    CrossValidation,
    choose_candidate,
    cross_validate,
    cv_problem,
    primary_of,
    row_losses,
)
from components.train_model.stream import ParquetSplit
from serving.preprocess import Preprocessing, resolve_kind
from shipyard import attempts
from shipyard.artifacts import (
    DATA_FILE,
    SCHEMA_FILE,
    ModelManifest,
    atomic_dir,
    read_dataset,
    read_model_manifest,
    sha256_file,
    write_json,
    write_model,
    write_text,
)
from shipyard.config import Config, require
from shipyard.errors import DataValidationError
from shipyard.placement import CHECKPOINT_URI_ENV
from shipyard.report import markdown_table
from shipyard.tasks import infer_task


def progress(message: str) -> None:
    """One progress line on stderr, flushed, so that it shows in the step's log as it happens."""
    print(message, file=sys.stderr, flush=True)


SKOPS_FILE = "model.skops"
#: Below this many training rows, CPU training runs on one thread unless num_threads says otherwise.
SMALL_DATA_ROWS = 100_000
#: The families, in training order (the fast, strong GBDT first).
FAMILIES = ("gbdt", "mlp", "linear")
#: Families trained only when ``families`` names them (after the default ones): ``keras`` needs the tf extra.
OPTIONAL_FAMILIES = ("keras",)
KNOWN_FAMILIES = (*FAMILIES, *OPTIONAL_FAMILIES)
#: Where checkpoints go when TrainConfig.checkpoint_uri is empty (a compiled pipeline mounts a PVC there).
CHECKPOINT_ENV = CHECKPOINT_URI_ENV
#: What the ``best`` candidate is chosen on (TrainConfig.selection).
SELECTIONS = ("auto", "cv", "validation")
#: TrainConfig fields that shape the MLP's training (the tuning reuse key).
MLP_FIELDS = (
    "width",
    "depth",
    "dropout",
    "lr",
    "weight_decay",
    "batch_size",
    "max_epochs",
    "min_epochs",
    "patience",
    "ensemble",
    "n_frequencies",
    "frequency_scale",
    "embedding_dim",
    "label_smoothing",
    "max_seconds",
    "seed",
    "task",
    "precision",
    "shuffle_block_rows",
    "processes",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Hyperparameters of the families and training options.

    Attributes:
        width: MLP units per hidden layer.
        depth: MLP hidden layers.
        dropout: Dropout after each hidden layer.
        lr: AdamW peak learning rate (warm-up over the first 5% of steps, then cosine decay).
        weight_decay: AdamW (decoupled) weight decay.
        batch_size: Minibatch size; 0 picks one from the training rows (32 … 1024).
        max_epochs: Upper bound on epochs (also the length of the learning-rate schedule).
        min_epochs: Epochs always run before early stopping may stop.
        patience: Stop after this many epochs without a better validation loss.
        ensemble: Members of the packed ensemble (1: a plain MLP).
        n_frequencies: Periodic-embedding frequencies per numeric column (0: the scaled value only).
        frequency_scale: Standard deviation of the initial frequencies.
        embedding_dim: Width of each numeric and categorical embedding.
        label_smoothing: Classification label smoothing (the validation loss is computed without).
        max_seconds: Stop the MLP after this many seconds of training (0: no limit); the best
            epoch so far is kept. A limit that is hit makes the epoch count depend on the machine.
        seed: Seed for initialization, shuffling and the GBDT.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        precision: The MLP's forward pass: ``auto`` (bf16 autocast on a CUDA device that has it,
            fp16 with a gradient scaler on one that does not, fp32 on CPU), ``fp32``, ``bf16``
            (also on CPU) or ``fp16`` (CUDA only).
        compile: Train through ``torch.compile`` (the artifact is the same module, uncompiled).
        checkpoint_uri: Where the MLP's checkpoints go (a directory, a mounted PVC or a ``gs://``
            prefix; empty: none). A run started again with the same data and parameters resumes
            from the newest intact one (:mod:`components.train_model.checkpoint`).
        checkpoint_every_steps: Also checkpoint every this many optimizer steps (0: only at the
            end of each epoch).
        checkpoint_keep: Complete checkpoints kept (the newest).
        stream: How the MLP reads its rows: ``auto`` streams them from the split's Parquet row
            groups when the encoded training matrix would exceed ``stream_above_mb``, ``on``
            always streams, ``off`` holds the matrix in memory. The results are the same either
            way (:mod:`components.train_model.stream`).
        stream_above_mb: The encoded size (MB) above which ``auto`` streams.
        loader_workers: DataLoader worker processes that read and encode the streamed rows
            (0: the training process itself).
        shuffle_block_rows: Rows per shuffling block: each epoch shuffles the blocks, then the
            rows inside groups of four blocks (one permutation of all rows when the table has
            at most this many).
        processes: Training processes: 0 is one per visible GPU when there are more than one
            (DDP through ``torchrun``), else one; more than one on CPU uses the gloo backend.
        task: ``auto``, ``binary``, ``multiclass`` or ``regression``.
        num_threads: CPU threads for training; 0 picks 1 below ``SMALL_DATA_ROWS`` training rows
            (a small MLP is fastest single-threaded, and much faster on a busy machine) and
            torch's default above it.
        candidate: ``best`` (:func:`choose_candidate`) or a family to force.
        selection: What the ``best`` candidate is chosen on: ``auto`` (k-fold cross-validation
            over train + validation when they hold at most ``cv_max_rows`` rows, else the
            validation split), ``cv`` (always cross-validate) or ``validation``.
        cv_folds: Folds of that cross-validation.
        cv_max_rows: Most train + validation rows that ``auto`` cross-validates.
        families: The families to train (``linear`` always is: it is the baseline).
        gbdt_max_iter: Most boosting iterations (early stopping usually ends sooner).
        gbdt_learning_rate: Boosting learning rate.
        gbdt_max_leaf_nodes: Leaves per tree.
        gbdt_l2: L2 regularization of the leaf values.
        gbdt_min_samples_leaf: Fewest training rows per leaf.
    """

    section = "train"
    width: int = 128
    depth: int = 2
    dropout: float = 0.1
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 0
    max_epochs: int = 100
    min_epochs: int = 10
    patience: int = 16
    ensemble: int = 8
    n_frequencies: int = 12
    frequency_scale: float = 0.1
    embedding_dim: int = 8
    label_smoothing: float = 0.0
    max_seconds: float = 0.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    checkpoint_uri: str = ""
    checkpoint_every_steps: int = 0
    checkpoint_keep: int = 2
    stream: str = "auto"
    stream_above_mb: float = 2048.0
    loader_workers: int = 2
    shuffle_block_rows: int = 65_536
    processes: int = 0
    task: str = "auto"
    num_threads: int = 0
    candidate: str = "best"
    selection: str = "auto"
    cv_folds: int = 5
    cv_max_rows: int = 1000
    families: tuple = FAMILIES
    gbdt_max_iter: int = 500
    gbdt_learning_rate: float = 0.1
    gbdt_max_leaf_nodes: int = 31
    gbdt_l2: float = 0.0
    gbdt_min_samples_leaf: int = 20

    def validate(self) -> None:
        require(self.num_threads >= 0, self.section, "num_threads must be >= 0 (0: automatic)")
        require(1 <= self.width <= 4096, self.section, "width must be in 1..4096")
        require(1 <= self.depth <= 16, self.section, "depth must be in 1..16")
        require(0 <= self.dropout < 1, self.section, "dropout must be in [0, 1)")
        require(self.lr > 0 and self.weight_decay >= 0, self.section, "lr must be > 0 and weight_decay >= 0")
        require(
            self.batch_size >= 0 and self.max_epochs >= 1 and self.patience >= 1 and self.min_epochs >= 0,
            self.section,
            "batch_size must be >= 0 (0: automatic), max_epochs and patience >= 1, min_epochs >= 0",
        )
        require(1 <= self.ensemble <= 64, self.section, "ensemble must be in 1..64")
        require(0 <= self.n_frequencies <= 128, self.section, "n_frequencies must be in 0..128")
        require(self.frequency_scale > 0, self.section, "frequency_scale must be > 0")
        require(1 <= self.embedding_dim <= 256, self.section, "embedding_dim must be in 1..256")
        require(0 <= self.label_smoothing < 0.5, self.section, "label_smoothing must be in [0, 0.5)")
        require(self.max_seconds >= 0, self.section, "max_seconds must be >= 0 (0: no limit)")
        require(self.device in ("auto", "cpu", "cuda"), self.section, "device must be auto, cpu or cuda")
        require(self.precision in PRECISIONS, self.section, f"precision must be one of {', '.join(PRECISIONS)}")
        require(
            self.checkpoint_every_steps >= 0 and self.checkpoint_keep >= 1,
            self.section,
            "checkpoint_every_steps must be >= 0 (0: epoch ends only) and checkpoint_keep >= 1",
        )
        require(self.stream in ("auto", "on", "off"), self.section, "stream must be auto, on or off")
        require(
            self.stream_above_mb > 0 and 0 <= self.loader_workers <= 64 and self.shuffle_block_rows >= 1,
            self.section,
            "stream_above_mb must be > 0, loader_workers in 0..64 and shuffle_block_rows >= 1",
        )
        require(0 <= self.processes <= 64, self.section, "processes must be in 0..64 (0: one per GPU)")
        require(
            self.task in ("auto", "binary", "multiclass", "regression"),
            self.section,
            "task must be auto, binary, multiclass or regression",
        )
        require(self.selection in SELECTIONS, self.section, f"selection must be one of {', '.join(SELECTIONS)}")
        require(2 <= self.cv_folds <= 20 and self.cv_max_rows >= 0, self.section, "cv_folds in 2..20, cv_max_rows >= 0")
        unknown = sorted(set(self.families) - set(KNOWN_FAMILIES))
        require(not unknown, self.section, f"families: unknown {unknown}; expected some of {list(KNOWN_FAMILIES)}")
        require(
            self.candidate == "best" or self.candidate in KNOWN_FAMILIES,
            self.section,
            f"candidate must be best or one of {list(KNOWN_FAMILIES)}, got {self.candidate!r}",
        )
        require(
            self.candidate in ("best", "linear") or self.candidate in self.families,
            self.section,
            f"candidate {self.candidate!r} is not among the families trained {list(self.families)}",
        )
        require(self.gbdt_max_iter >= 1 and self.gbdt_learning_rate > 0, self.section, "gbdt_max_iter >= 1, lr > 0")
        require(
            self.gbdt_max_leaf_nodes >= 2 and self.gbdt_l2 >= 0 and self.gbdt_min_samples_leaf >= 1,
            self.section,
            "gbdt_max_leaf_nodes must be >= 2, gbdt_l2 >= 0 and gbdt_min_samples_leaf >= 1",
        )

    @property
    def trained_families(self) -> list[str]:
        """The families to train, in :data:`KNOWN_FAMILIES` order, the linear baseline always among them."""
        return [f for f in KNOWN_FAMILIES if f in self.families or f == "linear"]


# --- data ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class TabularData:
    """The raw features and encoded labels of one split.

    Attributes:
        x: The raw matrix when every feature is numeric and has no nulls (what a model with the
            identity preprocessing takes), else None: encode ``frame`` with the model's preprocessing.
        y: Class indices (classification) or float32 values (regression).
        feature_names: The features, in input order.
        label: The label column.
        label_names: Class names in index order (empty for regression).
        task: ``binary``, ``multiclass`` or ``regression``.
        input_schema: The feature columns of the dataset schema.
        frame: The raw feature columns (built from ``x`` when not given).
        kinds: ``{feature: numeric | categorical}`` (numeric for all when not given).
        source: The split's ``data.parquet`` when it was read from a Dataset artifact (the MLP
            can stream its rows from it), else empty.
    """

    x: np.ndarray | None
    y: np.ndarray
    feature_names: list[str]
    label: str
    label_names: list[Any]
    task: str
    input_schema: tuple
    frame: Any = None
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.frame is None:
            import pandas as pd

            if self.x is None:
                raise ValueError("TabularData needs x or frame")
            self.frame = pd.DataFrame(self.x, columns=self.feature_names)
        if not self.kinds:
            self.kinds = {c.name: resolve_kind(c.dtype, getattr(c, "kind", "")) for c in self.input_schema}

    def __len__(self) -> int:
        return len(self.y)

    def manifest(
        self,
        fmt: str,
        metrics: dict[str, float],
        details: dict[str, Any],
        preprocessing: Preprocessing | None = None,
    ) -> ModelManifest:
        """The manifest of a model trained on this data (files are filled in when written).

        An identity preprocessing is recorded as none, so such a model's ``model.json`` is what it
        was before preprocessing existed.
        """
        return ModelManifest(
            format=fmt,
            task=self.task,
            input_schema=self.input_schema,
            label=self.label,
            label_names=tuple(self.label_names),
            metrics=metrics,
            details=details,
            preprocessing=None if preprocessing is None or preprocessing.identity else preprocessing.to_dict(),
        )


def load_split(dataset_dir: str, task: str = "auto", label_names: list[Any] | None = None) -> TabularData:
    """Reads a Dataset artifact: its raw feature columns and its encoded labels.

    Every column with role ``feature`` is used, with its kind from the schema (or inferred from
    its dtype: :func:`serving.preprocess.resolve_kind`).

    Args:
        dataset_dir: The Dataset artifact.
        task: The task, or ``auto`` to infer it from the label.
        label_names: Class names from the training split; labels outside them are an error.

    Raises:
        DataValidationError: No label column, no features, missing labels, unseen classes.
    """
    df, schema = read_dataset(dataset_dir)
    if schema.label is None:
        raise DataValidationError(f"{dataset_dir}: the dataset has no label column")
    features = schema.features
    if not features:
        raise DataValidationError(f"{dataset_dir}: no feature columns")
    absent = [f for f in [*features, schema.label] if f not in df.columns]
    if absent:
        raise DataValidationError(f"{dataset_dir}: schema column(s) {absent} are not in {DATA_FILE}")
    if df[schema.label].isna().any():
        row = int(np.flatnonzero(df[schema.label].isna().to_numpy())[0])
        raise DataValidationError(f"{dataset_dir}: label {schema.label!r} has missing values (first in row {row})")
    raw_y = df[schema.label].to_numpy()
    task = infer_task(raw_y, task, schema.label) if label_names is None or task == "auto" else task
    if task == "regression":
        y = raw_y.astype(np.float32)
        names: list[Any] = []
    else:
        import pandas as pd

        names = label_names if label_names is not None else sorted(np.unique(raw_y).tolist())
        codes = pd.Index(names).get_indexer(raw_y)
        if (codes < 0).any():
            unseen = sorted({v for v, c in zip(raw_y.tolist(), codes, strict=True) if c < 0}, key=str)
            raise DataValidationError(
                f"{dataset_dir}: label {schema.label!r} has classes {unseen[:5]} not seen in training"
            )
        y = codes.astype(np.int64)
    input_schema = tuple(schema.column(f) for f in features)
    kinds = {c.name: resolve_kind(c.dtype, c.kind) for c in input_schema}
    frame = df[features]
    plain = all(k == "numeric" for k in kinds.values()) and all(
        frame[f].dtype.kind in "biuf" and not frame[f].isna().any() for f in features
    )
    x = frame.to_numpy(dtype=np.float32) if plain else None
    if x is not None and not np.isfinite(x).all():
        row, col = map(int, np.argwhere(~np.isfinite(x))[0])
        raise DataValidationError(f"{dataset_dir}: feature {features[col]!r} is {x[row, col]} in row {row}")
    source = str(Path(dataset_dir) / DATA_FILE)
    return TabularData(x, y, features, schema.label, names, task, input_schema, frame, kinds, source)


def fit_preprocessing(data: TabularData, family: str) -> Preprocessing:
    """The preprocessing a family is trained on, fitted on ``data`` (the training split).

    ``linear``: one-hot categories; ``gbdt`` and ``mlp``: categorical codes (trees split on them
    natively, the MLP embeds them). Numbers are imputed (median) with a missing indicator and not
    scaled: the linear model standardizes in its pipeline and the MLP scales inside its module.
    """
    return Preprocessing.fit(
        data.frame,
        data.kinds,
        numeric="none",
        categorical="onehot" if family == "linear" else "codes",
        nullable=[c.name for c in data.input_schema if c.nullable],
    )


def encode(prep: Preprocessing, data: TabularData, where: str = "dataset") -> np.ndarray:
    """The float32 matrix ``prep`` gives for a split (the raw matrix itself for the identity)."""
    if prep.identity and data.x is not None:
        return data.x
    return prep.transform_frame(data.frame, where).x


# --- the MLP -------------------------------------------------------------------------------------


def mlp_inputs(train: TabularData, val: TabularData, config: TrainConfig | None = None) -> MLPInputs:
    """Fits the MLP's preprocessing on ``train`` and encodes both splits (done once per tuning
    study), or, when ``config`` says to stream (:attr:`TrainConfig.stream`), leaves their rows in
    their Parquet files to be read batch by batch.

    Raises:
        ConfigError: ``stream`` is ``on`` but a split was not read from a Dataset artifact.
    """
    prep = fit_preprocessing(train, "mlp")
    if config is not None and _streams(config, train, val, prep):
        return MLPInputs(
            prep,
            None,
            None,
            ParquetSplit(train.source, train.feature_names, prep, "train split"),
            ParquetSplit(val.source, val.feature_names, prep, "validation split"),
        )
    return MLPInputs(prep, encode(prep, train, "train split"), encode(prep, val, "validation split"))


def _streams(config: TrainConfig, train: TabularData, val: TabularData, prep: Preprocessing) -> bool:
    if config.stream == "off":
        return False
    readable = bool(train.source and val.source)
    if config.stream == "on":
        require(readable, config.section, "stream 'on' needs splits read from Dataset artifacts (load_split)")
        return True
    return readable and len(train) * prep.width * 4 > config.stream_above_mb * 1e6


def fit_mlp(
    train: TabularData,
    val: TabularData,
    config: TrainConfig,
    on_epoch: Callable[[int, float], None] | None = None,
    inputs: MLPInputs | None = None,
    checkpoints: CheckpointStore | None = None,
    epoch_log: Callable[[dict[str, float]], None] | None = None,
) -> tuple[TabularMLP, dict[str, Any]]:
    """Trains the MLP with AdamW and early stopping on the validation loss.

    Args:
        train: Training split.
        val: Validation split (labels encoded with the training classes).
        config: Hyperparameters.
        on_epoch: Called as ``on_epoch(epoch, val_loss)`` after every epoch (Optuna pruning
            raises from it to stop a trial).
        inputs: The encoded splits from :func:`mlp_inputs` (fitted here when None).
        checkpoints: Where to checkpoint and resume from (:mod:`components.train_model.loop`).
        epoch_log: Called with each epoch's figures as it ends (train and validation loss,
            learning rate, seconds, rows per second).

    Returns:
        The module with the best epoch's weights (on CPU, eval mode) and a summary dict
        (``architecture`` and ``preprocessing`` included).

    Raises:
        TrainingDivergedError: The training or validation loss became NaN or infinite.
        ConfigError: A precision the device cannot run.
    """
    inputs = inputs or mlp_inputs(train, val, config)
    device = pick_device(config.device)
    # a tuning trial (on_epoch) runs in this process unless processes asks for more explicitly
    world = distributed.processes(config.processes, device) if on_epoch is None or config.processes else 1
    if world > 1:
        require(on_epoch is None, config.section, "processes > 1 cannot report each epoch to a tuner (pruning)")
        return distributed.fit(train, val, inputs, config, device, world, checkpoints, epoch_log)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(config.num_threads or (1 if len(train) < SMALL_DATA_ROWS else threads))
    try:
        return fit_module(train, val, inputs, config, device, on_epoch, checkpoints, epoch_log)
    finally:
        torch.set_num_threads(threads)


# --- the scikit-learn families ---------------------------------------------------------------------


def fit_baseline(train: TabularData, seed: int = 0, x: np.ndarray | None = None) -> Any:
    """The linear baseline: standardized logistic regression or ridge regression.

    Args:
        train: Training split.
        seed: The solver's random state.
        x: The encoded training matrix (default: ``train.x``, the raw all-numeric matrix).
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    matrix = train.x if x is None else x
    if matrix is None:
        raise DataValidationError("fit_baseline: the table is not all-numeric; pass the encoded matrix x")
    estimator = Ridge() if train.task == "regression" else LogisticRegression(max_iter=2000, random_state=seed)
    # Classification labels are class indices, so predict_proba's columns follow label_names.
    return make_pipeline(StandardScaler(), estimator).fit(matrix, train.y)


def fit_gbdt(
    train: TabularData,
    x: np.ndarray,
    val: TabularData,
    x_val: np.ndarray,
    prep: Preprocessing,
    config: TrainConfig,
) -> Any:
    """A HistGradientBoosting model with native categorical splits, early-stopped on the validation split.

    Args:
        train: Training split (labels).
        x: Its encoded matrix (``codes`` preprocessing).
        val: Validation split (labels).
        x_val: Its encoded matrix.
        prep: The preprocessing (which columns are categorical codes).
        config: ``gbdt_*`` hyperparameters and the seed.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    mask = np.zeros(x.shape[1], dtype=bool)
    for col, _ in prep.code_columns():
        mask[col] = True
    common = {
        "learning_rate": config.gbdt_learning_rate,
        "max_iter": config.gbdt_max_iter,
        "max_leaf_nodes": config.gbdt_max_leaf_nodes,
        "l2_regularization": config.gbdt_l2,
        "min_samples_leaf": config.gbdt_min_samples_leaf,
        "categorical_features": mask if mask.any() else None,
        "early_stopping": True,
        "scoring": "loss",
        "n_iter_no_change": 30,
        "random_state": config.seed,
    }
    if train.task == "regression":
        model: Any = HistGradientBoostingRegressor(**common)
    else:
        model = HistGradientBoostingClassifier(**common)
    return model.fit(x, train.y, X_val=x_val, y_val=val.y)


def save_sklearn_model(
    model_dir: str,
    model: Any,
    data: TabularData,
    metrics: dict[str, float],
    details: dict[str, Any],
    preprocessing: Preprocessing | None = None,
) -> ModelManifest:
    """Writes a ``sklearn-skops`` Model artifact atomically."""
    import sklearn
    import skops.io as sio

    last = model[-1] if hasattr(model, "steps") else model
    manifest = data.manifest(
        "sklearn-skops",
        metrics,
        {**details, "estimator": type(last).__name__, "framework": {"scikit-learn": sklearn.__version__}},
        preprocessing,
    )
    return write_model(model_dir, manifest, lambda tmp: sio.dump(model, tmp / SKOPS_FILE))


def validation_loss(model: Any, data: TabularData, y_std: float = 1.0, x: np.ndarray | None = None) -> float:
    """The MLP's loss for a scikit-learn model: log loss, or MSE in units of ``y_std``."""
    from sklearn.metrics import log_loss, mean_squared_error

    matrix = data.x if x is None else x
    if data.task == "regression":
        return float(mean_squared_error(data.y, model.predict(matrix)) / max(y_std**2, 1e-12))
    return float(log_loss(data.y, model.predict_proba(matrix), labels=list(range(len(data.label_names)))))


# --- the train step --------------------------------------------------------------------------------


def data_digest(train_dir: str, val_dir: str) -> str:
    """The sha256 of the two splits' data and schema files (what tuning and training saw)."""
    h = hashlib.sha256()
    for d in (train_dir, val_dir):
        for name in (DATA_FILE, SCHEMA_FILE):
            h.update(sha256_file(Path(d) / name).encode())
    return h.hexdigest()


def reuse_key(data_sha: str, config: TrainConfig, device: str) -> str:
    """The key under which a trained MLP can stand in for a new fit: data, MLP parameters, device."""
    params = {k: getattr(config, k) for k in MLP_FIELDS}
    blob = json.dumps({"data": data_sha, "params": params, "device": device}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@attempts.step
def train(
    train_dir: str,
    val_dir: str,
    model_dir: str,
    baseline_dir: str,
    config: TrainConfig,
    comparison_json: str | None = None,
    comparison_md: str | None = None,
    tuned_dir: str | None = None,
    families_dir: str | None = None,
    tracking_uri: str = "",
    curves_html: str | None = None,
) -> dict[str, Any]:
    """Trains the families, writes the candidate and the linear baseline, and compares them.

    With a tracking URI (``tracking_uri`` or ``$MLFLOW_TRACKING_URI``) the step's MLflow run
    (:func:`components.tracking.step_run`) gets the parameters, where it ran (device, CUDA,
    torch, CPUs, the code's commit), the splits' sha256, the MLP's figures per epoch as they
    happen, every family's validation metrics, the candidate, the comparison and the MLP's
    training curves (PNG).

    Args:
        train_dir: Training Dataset artifact.
        val_dir: Validation Dataset artifact (early stopping and the choice of candidate).
        model_dir: Output Model artifact: the candidate (``torchscript``, ``sklearn-skops`` or ``keras``).
        baseline_dir: Output Model artifact: the linear baseline (``sklearn-skops``).
        config: Hyperparameters, the candidate rule and the families.
        comparison_json: Optional output: the comparison table as JSON.
        comparison_md: Optional output: the comparison table as Markdown.
        tuned_dir: Optional: tune_hyperparams' ``best_model``; its weights are used instead of a new
            MLP fit when it was trained on the same data with the same parameters (else the log says why).
        families_dir: Optional: every family's Model artifact is also written to ``families_dir/<family>``
            (benchmarks score them all).
        tracking_uri: MLflow tracking URI ("" : ``$MLFLOW_TRACKING_URI``, else nothing is tracked).
        curves_html: Optional output: the MLP's training curves as a self-contained HTML page.

    Returns:
        Summary: ``candidate``, ``reason``, ``task``, ``table`` (per family: format, validation
        metrics, val_loss, fit seconds), ``best_val_loss`` (the candidate's), ``baseline_val_loss``,
        ``device`` and, when the MLP was trained, its epochs.

    Raises:
        DataValidationError: The splits are unusable (see :func:`load_split`).
        ConfigError: ``device='cuda'`` without a GPU.
    """
    tr = load_split(train_dir, config.task)
    va = load_split(val_dir, tr.task, tr.label_names)
    with tracking.step_run("train", "shipyard/train", tracking_uri) as mlrun, tempfile.TemporaryDirectory() as tmp:
        if mlrun is not None:
            mlrun.log_params({**config.to_dict(), "train_rows": len(tr), "val_rows": len(va)})
            mlrun.set_tags(tracking.system_tags())
        summary = _train(tr, va, train_dir, val_dir, model_dir, baseline_dir, config, tuned_dir, families_dir, mlrun)
        curves = _curves(summary, Path(tmp))
        if curves_html:
            write_text(curves_html, _curves_html(curves, summary))
        if comparison_json:
            keys = ("task", "candidate", "reason", "primary_metric", "selection", "table")
            write_json(comparison_json, {k: summary[k] for k in keys if k in summary})
        if comparison_md:
            write_text(comparison_md, comparison_markdown(summary))
        if mlrun is not None:
            _track(mlrun, summary, train_dir, val_dir, curves, comparison_md)
    if summary.get("checkpoint_dir"):  # every output is written: no retry will resume from them
        CheckpointStore(summary["checkpoint_dir"]).clear()
    return summary


def _train(
    tr: TabularData,
    va: TabularData,
    train_dir: str,
    val_dir: str,
    model_dir: str,
    baseline_dir: str,
    config: TrainConfig,
    tuned_dir: str | None,
    families_dir: str | None,
    mlrun: tracking.StepRun | None,
) -> dict[str, Any]:
    """The families fitted and compared, the candidate and the baseline written (see :func:`train`)."""
    from serving.formats import load_model
    from shipyard import metrics as task_metrics

    progress(f"train: {len(tr)} training rows, {len(va)} validation rows, {len(tr.feature_names)} features")
    device = pick_device(config.device).type
    families = config.trained_families
    table: dict[str, dict[str, Any]] = {}
    losses: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {"task": tr.task, "device": "cpu"}
    work = Path(tempfile.mkdtemp(prefix="shipyard-train-"))
    try:
        y_std = (float(tr.y.std()) or 1.0) if tr.task == "regression" else 1.0
        for family in families:
            start = time.perf_counter()
            out = str(work / family)
            if family == "mlp":
                info = _train_mlp(tr, va, config, out, train_dir, val_dir, device, tuned_dir, mlrun)
                summary.update(
                    {k: info[k] for k in ("epochs", "best_epoch", "history", "checkpoint_dir") if k in info},
                    device=info["device"],
                )
                loss = float(info["best_val_loss"])
                extra = {"reused": info.get("reused", False)}
            elif family == "keras":
                info = _train_keras(tr, va, config, out, mlrun)
                loss = float(info["val_loss"])
                extra = {"epochs": info["epochs"], "best_epoch": info["best_epoch"]}
            else:
                prep = fit_preprocessing(tr, family)
                x, xv = encode(prep, tr, "train split"), encode(prep, va, "validation split")
                if family == "gbdt":
                    model = fit_gbdt(tr, x, va, xv, prep, config)
                    extra = {"iterations": int(model.n_iter_)}
                else:
                    model = fit_baseline(tr, config.seed, x)
                    extra = {}
                loss = validation_loss(model, va, y_std, xv)
                details = {"family": family, "params": _family_params(config, family), **extra}
                if family == "linear":
                    details["role"] = "baseline"
                save_sklearn_model(out, model, tr, {"val_loss": loss}, details, prep)
            seconds = time.perf_counter() - start
            loaded = load_model(out)  # scored as it will be served
            val_scores = loaded.score_frame(va.frame, "validation split")
            metrics = task_metrics.compute(tr.task, va.y, val_scores)
            losses[family] = row_losses(tr.task, va.y, val_scores)
            table[family] = {
                "format": loaded.manifest.format,
                "metrics": metrics,
                "val_loss": loss,
                "fit_seconds": round(seconds, 3),
                **extra,
            }
            progress(f"train: {family} fitted in {seconds:.1f}s; validation {_fmt_metrics(metrics)}")
        chosen_on, where = losses, "validation"
        if config.candidate == "best" and len(families) > 1 and config.selection != "validation":
            limit = config.cv_max_rows if config.selection == "auto" else math.inf
            why_not = cv_problem(tr, va, config.cv_folds, limit)
            if why_not is None:
                rows = len(tr) + len(va)
                progress(f"train: comparing the families by {config.cv_folds}-fold cross-validation over {rows} rows")
                cv = cross_validate(tr, va, families, config, fit_scorer, config.cv_folds, progress)
                chosen_on, where = cv.losses, f"{cv.folds}-fold CV"
                for family in families:
                    table[family]["cv_loss"] = float(cv.losses[family].mean())
                summary["selection"] = {"method": "cv", "folds": cv.folds, "rows": cv.rows, "seconds": cv.seconds}
            else:
                progress(f"train: no cross-validation: {why_not}")
                summary["selection"] = {"method": "validation", "why": why_not}
        pick, reason = choose_candidate(table, tr.task, config.candidate, chosen_on, where)
        progress(f"train: candidate {pick} ({reason})")
        _copy_artifact(work / pick, model_dir)
        _copy_artifact(work / "linear", baseline_dir)
        for family in families if families_dir else ():
            _copy_artifact(work / family, str(Path(str(families_dir)) / family))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary.update(
        candidate=pick,
        reason=reason,
        table=table,
        primary_metric=primary_of(tr.task, table[pick]["metrics"]),
        best_val_loss=table[pick]["val_loss"],
        baseline_val_loss=table["linear"]["val_loss"],
    )
    return summary


def _curves(summary: dict[str, Any], where: Path) -> Path | None:
    """The MLP's training curves as a PNG in ``where`` (None when no MLP was trained here)."""
    from shipyard import plots

    if not summary.get("history"):
        return None
    return plots.training_curves(summary["history"], where / "training_curves.png", summary.get("best_epoch"))


def _curves_html(png: Path | None, summary: dict[str, Any]) -> str:
    from shipyard import plots

    if png is None:
        why = "its weights were taken from tuning" if summary["table"].get("mlp", {}).get("reused") else "none"
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>MLP training</title></head><body>"
            f"<p>No MLP was trained in this step ({'not among the families' if why == 'none' else why}).</p>"
            "</body></html>"
        )
    rows = summary["history"]
    last = rows[-1]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>MLP training</title></head><body>"
        f"<h2>MLP training: {len(rows)} epochs, best epoch {int(summary.get('best_epoch', -1)) + 1}</h2>"
        f"<img alt='training and validation loss per epoch' src='{plots.data_uri(png)}'>"
        f"<p>last epoch: train loss {last['train_loss']:.4g}, validation loss {last['val_loss']:.4g}, "
        f"{last['rows_per_second']:,.0f} rows/s</p></body></html>"
    )


def _track(
    mlrun: tracking.StepRun,
    summary: dict[str, Any],
    train_dir: str,
    val_dir: str,
    curves: Path | None,
    comparison_md: str | None,
) -> None:
    """What the step's MLflow run gets once the families are fitted (the epochs went as they ended)."""
    metrics: dict[str, float] = {}
    for family, row in summary["table"].items():
        metrics.update({f"{family}_{k}": float(v) for k, v in row["metrics"].items()})
        metrics[f"{family}_fit_seconds"] = float(row["fit_seconds"])
    mlrun.log_metrics(metrics)
    mlrun.set_tags(
        {
            "shipyard.candidate": summary["candidate"],
            "shipyard.train_sha256": sha256_file(Path(train_dir) / DATA_FILE),
            "shipyard.val_sha256": sha256_file(Path(val_dir) / DATA_FILE),
        }
    )
    if curves is not None:
        mlrun.log_artifact(curves, "train")
    if comparison_md and Path(comparison_md).is_file():
        mlrun.log_artifact(comparison_md, "train")


def fit_scorer(
    train: TabularData, val: TabularData, family: str, config: TrainConfig
) -> Callable[[TabularData], np.ndarray]:
    """Fits one family as the step does (early-stopped on ``val``) and returns its scorer: a split's
    probabilities ``[rows, classes]`` or values ``[rows]`` (what cross-validation compares)."""
    if family == "keras":
        from components.train_model.keras_family import keras_scorer

        return keras_scorer(train, val, config)
    if family == "mlp":
        inputs = mlp_inputs(train, val)
        mlp, _ = fit_mlp(train, val, config, inputs=inputs)
        module = scoring_module(mlp, train.task)

        def score_mlp(data: TabularData) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(encode(inputs.prep, data, "held-out fold"))).numpy()

        return score_mlp
    prep = fit_preprocessing(train, family)
    x, xv = encode(prep, train, "train split"), encode(prep, val, "validation split")
    model = fit_gbdt(train, x, val, xv, prep, config) if family == "gbdt" else fit_baseline(train, config.seed, x)
    predict = model.predict if train.task == "regression" else model.predict_proba
    return lambda data: np.asarray(predict(encode(prep, data, "held-out fold")))


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())


def _family_params(config: TrainConfig, family: str) -> dict[str, Any]:
    values = config.to_dict()
    if family == "gbdt":
        return {k: v for k, v in values.items() if k.startswith("gbdt_") or k == "seed"}
    if family == "linear":
        return {"seed": config.seed}
    if family == "keras":
        from components.train_model.keras_family import keras_params

        return keras_params(config)
    return {k: values[k] for k in MLP_FIELDS}


def _train_keras(
    tr: TabularData, va: TabularData, config: TrainConfig, out: str, mlrun: tracking.StepRun | None
) -> dict[str, Any]:
    """Fits the Keras MLP (the tf extra) and writes its ``keras`` artifact to ``out``; returns its summary."""
    from components.train_model.keras_family import fit_keras

    def log(stats: dict[str, float]) -> None:
        if mlrun is not None:
            mlrun.log_metrics({f"keras_{k}": v for k, v in stats.items()}, int(stats["epoch"]))

    info = fit_keras(tr, va, config, out, epoch_log=log)
    progress(f"train: keras {info['epochs']} epochs, best epoch {info['best_epoch'] + 1} ({info['stopped']})")
    return info


def _train_mlp(
    tr: TabularData,
    va: TabularData,
    config: TrainConfig,
    out: str,
    train_dir: str,
    val_dir: str,
    device: str,
    tuned_dir: str | None,
    mlrun: tracking.StepRun | None = None,
) -> dict[str, Any]:
    """Fits the MLP (or takes tuning's identical fit) and writes it to ``out``; returns its summary."""
    key = reuse_key(data_digest(train_dir, val_dir), config, device)
    inputs = mlp_inputs(tr, va, config)
    why_not = _reuse_problem(tuned_dir, key, inputs.prep)
    if why_not is None:
        assert tuned_dir is not None
        manifest = read_model_manifest(tuned_dir)
        mlp = load_torch_weights(tuned_dir)
        info = {**manifest.details["training"], "architecture": manifest.details["architecture"], "reused": True}
        progress(f"train: mlp reused from tuning ({tuned_dir}): same data and parameters")
    else:
        if tuned_dir is not None:
            progress(f"train: mlp trained anew; tuning's model not reused: {why_not}")
        store = None
        # a PVC mounted by the compiled pipeline sets the default (shipyard.placement)
        root = config.checkpoint_uri or os.environ.get(CHECKPOINT_ENV, "")
        if root:  # one directory per data and parameters, removed once the step succeeds (train)
            store = CheckpointStore(f"{root.rstrip('/')}/mlp-{key[:16]}", config.checkpoint_keep)
            progress(f"train: mlp checkpoints in {store.uri}")
        line = ProgressLine(config.max_epochs)

        def log(stats: dict[str, float]) -> None:
            line(stats)
            if mlrun is not None:
                mlrun.log_metrics({f"mlp_{k}": v for k, v in stats.items()}, int(stats["epoch"]))

        mlp, info = fit_mlp(tr, va, config, inputs=inputs, checkpoints=store, epoch_log=log)
        if store is not None:
            info = {**info, "checkpoint_dir": store.uri}
    arch = info["architecture"]
    details = {
        "family": "mlp",
        "params": _family_params(config, "mlp"),
        "training": {k: v for k, v in info.items() if k not in ("architecture", "reused", "history", "checkpoint_dir")},
        "reuse_key": key,
    }
    save_torch_model(out, mlp, tr, arch, {"val_loss": float(info["best_val_loss"])}, details, inputs.prep)
    return info


def _reuse_problem(tuned_dir: str | None, key: str, prep: Preprocessing) -> str | None:
    """Why tuning's model cannot stand in for a new fit, or None when it can: the same data,
    parameters and device (``key``) and the same fitted preprocessing (``prep``: the weights
    only mean something over the codes and columns they were trained on)."""
    if not tuned_dir:
        return "no tuned model given"
    path = Path(tuned_dir)
    if not (path / "model.json").is_file():
        return f"{tuned_dir} holds no model (tuning wrote none)"
    try:
        manifest = read_model_manifest(path)
    except Exception as exc:  # a damaged artifact is retrained, not fatal
        return f"{tuned_dir} is unreadable ({exc})"
    if manifest.format != "torchscript" or "training" not in manifest.details:
        return f"{tuned_dir} is not a tuned MLP"
    if manifest.details.get("reuse_key") != key:
        return "its data, parameters or device differ from this step's"
    if (manifest.preprocessing or None) != (None if prep.identity else prep.to_dict()):
        return "its fitted preprocessing differs from this step's"
    return None


def _copy_artifact(source: Path, target: str) -> None:
    with atomic_dir(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)


def comparison_markdown(summary: dict[str, Any]) -> str:
    """The comparison of the families as Markdown (validation metrics, fit seconds, format)."""
    table = summary["table"]
    names = list(next(iter(table.values()))["metrics"])
    cv = all("cv_loss" in row for row in table.values())
    rows = [
        (
            family,
            row["format"],
            *[row["metrics"].get(n) for n in names],
            row["val_loss"],
            *([row["cv_loss"]] if cv else []),
            row["fit_seconds"],
            "✔" if family == summary["candidate"] else "",
        )
        for family, row in table.items()
    ]
    selection = summary.get("selection", {})
    if selection.get("method") == "cv":
        how = (
            f"Chosen on {selection['folds']}-fold cross-validation over {selection['rows']} rows of train + "
            f"validation ({selection['seconds']:.1f} s; cv loss: mean out-of-fold log loss or squared error); "
            "the metrics are the validation split's.\n\n"
        )
    elif selection.get("why"):
        how = f"Chosen on the validation split: {selection['why'].split(': ')[0]}.\n\n"
    else:
        how = ""
    header = ["family", "format", *names, "val loss", *(["cv loss"] if cv else []), "fit s", "candidate"]
    return (
        f"# Model families\n\nCandidate: **{summary['candidate']}** — {summary['reason']}.\n\n{how}"
        + markdown_table(header, rows)
    )
