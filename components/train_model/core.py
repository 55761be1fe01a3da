"""Training a PyTorch MLP for tabular data (CUDA when present) and a scikit-learn baseline.

The MLP carries its own input standardization (and, for regression, target scaling) as buffers,
so the exported TorchScript model takes raw feature values, exactly as the server receives them.
The artifact keeps both ``model.pt`` (TorchScript, what is served) and ``weights.pt`` (the
``state_dict``, loaded with ``weights_only=True`` by quantization to rebuild the module).
"""

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from serving import codec
from shipyard import attempts
from shipyard.artifacts import ModelManifest, read_dataset, write_model
from shipyard.config import Config, require
from shipyard.errors import ConfigError, DataValidationError
from shipyard.tasks import infer_task

TORCHSCRIPT_FILE = "model.pt"
STATE_DICT_FILE = "weights.pt"
#: Below this many training rows, CPU training runs on one thread unless num_threads says otherwise.
SMALL_DATA_ROWS = 100_000
SKOPS_FILE = "model.skops"


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """MLP hyperparameters and training options.

    Attributes:
        width: Units per hidden layer.
        depth: Number of hidden layers.
        dropout: Dropout after each hidden layer.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: Minibatch size.
        max_epochs: Upper bound on epochs.
        patience: Stop after this many epochs without a better validation loss.
        seed: Seed for initialization and shuffling.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        task: ``auto``, ``binary``, ``multiclass`` or ``regression``.
        num_threads: CPU threads for training; 0 picks 1 below ``SMALL_DATA_ROWS`` training rows
            (a small MLP is fastest single-threaded, and much faster on a busy machine) and
            torch's default above it.
    """

    section = "train"
    width: int = 64
    depth: int = 2
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 20
    seed: int = 0
    device: str = "auto"
    task: str = "auto"
    num_threads: int = 0

    def validate(self) -> None:
        require(self.num_threads >= 0, self.section, "num_threads must be >= 0 (0: automatic)")
        require(1 <= self.width <= 4096, self.section, "width must be in 1..4096")
        require(1 <= self.depth <= 16, self.section, "depth must be in 1..16")
        require(0 <= self.dropout < 1, self.section, "dropout must be in [0, 1)")
        require(self.lr > 0 and self.weight_decay >= 0, self.section, "lr must be > 0 and weight_decay >= 0")
        require(
            self.batch_size >= 1 and self.max_epochs >= 1 and self.patience >= 1,
            self.section,
            "batch_size, max_epochs and patience must be >= 1",
        )
        require(self.device in ("auto", "cpu", "cuda"), self.section, "device must be auto, cpu or cuda")
        require(
            self.task in ("auto", "binary", "multiclass", "regression"),
            self.section,
            "task must be auto, binary, multiclass or regression",
        )


@dataclasses.dataclass
class TabularData:
    """Features and encoded labels of one split."""

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    label: str
    label_names: list[Any]
    task: str
    input_schema: tuple

    def manifest(self, fmt: str, metrics: dict[str, float], details: dict[str, Any]) -> ModelManifest:
        """The manifest of a model trained on this data (files are filled in when written)."""
        return ModelManifest(
            format=fmt,
            task=self.task,
            input_schema=self.input_schema,
            label=self.label,
            label_names=tuple(self.label_names),
            metrics=metrics,
            details=details,
        )


def load_split(dataset_dir: str, task: str = "auto", label_names: list[Any] | None = None) -> TabularData:
    """Reads a Dataset artifact into a float32 feature matrix and encoded labels.

    Args:
        dataset_dir: The Dataset artifact.
        task: The task, or ``auto`` to infer it from the label.
        label_names: Class names from the training split; labels outside them are an error.

    Raises:
        DataValidationError: No label column, non-numeric features, NaN/Inf, unseen classes.
    """
    df, schema = read_dataset(dataset_dir)
    if schema.label is None:
        raise DataValidationError(f"{dataset_dir}: the dataset has no label column")
    features = schema.features
    if not features:
        raise DataValidationError(f"{dataset_dir}: no feature columns")
    if df[schema.label].isna().any():
        raise DataValidationError(f"{dataset_dir}: label {schema.label!r} has missing values")
    x = codec.from_frame(df, features, where=str(dataset_dir))
    raw_y = df[schema.label].to_numpy()
    task = infer_task(raw_y, task, schema.label) if label_names is None or task == "auto" else task
    if task == "regression":
        y = raw_y.astype(np.float32)
        names: list[Any] = []
    else:
        names = label_names if label_names is not None else sorted(np.unique(raw_y).tolist())
        index = {v: i for i, v in enumerate(names)}
        unseen = sorted({v for v in np.unique(raw_y).tolist() if v not in index}, key=str)
        if unseen:
            raise DataValidationError(
                f"{dataset_dir}: label {schema.label!r} has classes {unseen[:5]} not seen in training"
            )
        y = np.array([index[v] for v in raw_y.tolist()], dtype=np.int64)
    input_schema = tuple(schema.column(f) for f in features)
    return TabularData(x, y, features, schema.label, names, task, input_schema)


class TabularMLP(nn.Module):
    """Standardize → [Linear → ReLU → Dropout] × depth → Linear (logits or scaled value)."""

    mean: torch.Tensor
    std: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor

    def __init__(self, n_features: int, n_outputs: int, width: int, depth: int, dropout: float):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("y_mean", torch.zeros(1))
        self.register_buffer("y_std", torch.ones(1))
        layers: list[nn.Module] = []
        size = n_features
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
            size = width
        layers.append(nn.Linear(size, n_outputs))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


class ClassifierScores(nn.Module):
    """Serving head: class probabilities from the MLP's logits."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.mlp(x), dim=-1)


class RegressorScores(nn.Module):
    """Serving head: the prediction in the label's own units."""

    y_mean: torch.Tensor
    y_std: torch.Tensor

    def __init__(self, mlp: TabularMLP):
        super().__init__()
        self.mlp = mlp
        self.register_buffer("y_mean", mlp.y_mean.clone())
        self.register_buffer("y_std", mlp.y_std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).squeeze(-1) * self.y_std + self.y_mean


def architecture(n_features: int, task: str, n_classes: int, config: TrainConfig) -> dict[str, Any]:
    """The constructor arguments recorded in ``model.json`` to rebuild the module."""
    n_outputs = 1 if task == "regression" else n_classes
    return {
        "n_features": n_features,
        "n_outputs": n_outputs,
        "width": config.width,
        "depth": config.depth,
        "dropout": config.dropout,
    }


def build_module(arch: dict[str, Any]) -> TabularMLP:
    """Builds an untrained TabularMLP from :func:`architecture`'s dict."""
    return TabularMLP(arch["n_features"], arch["n_outputs"], arch["width"], arch["depth"], arch["dropout"])


def scoring_module(mlp: nn.Module, task: str) -> nn.Module:
    """Wraps the MLP with the head that turns its output into what is served."""
    return RegressorScores(mlp) if task == "regression" else ClassifierScores(mlp)  # type: ignore[arg-type]


def pick_device(requested: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a ConfigError."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train: device 'cuda' requested but no CUDA device is available")
    if requested == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def fit_mlp(
    train: TabularData, val: TabularData, config: TrainConfig, on_epoch: Callable[[int, float], None] | None = None
) -> tuple[TabularMLP, dict[str, Any]]:
    """Trains the MLP with AdamW and early stopping on validation loss.

    Args:
        train: Training split.
        val: Validation split (labels encoded with the training classes).
        config: Hyperparameters.
        on_epoch: Called as ``on_epoch(epoch, val_loss)`` after every epoch (Optuna pruning
            raises from it to stop a trial).

    Returns:
        The module with the best epoch's weights (on CPU, eval mode) and a summary dict.
    """
    device = pick_device(config.device)
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(config.num_threads or (1 if len(train.x) < SMALL_DATA_ROWS else threads))
    try:
        return _fit(train, val, config, device, on_epoch)
    finally:
        torch.set_num_threads(threads)


def _fit(
    train: TabularData,
    val: TabularData,
    config: TrainConfig,
    device: torch.device,
    on_epoch: Callable[[int, float], None] | None,
) -> tuple[TabularMLP, dict[str, Any]]:
    torch.manual_seed(config.seed)
    task = train.task
    mlp = build_module(architecture(train.x.shape[1], task, len(train.label_names), config))
    mean = train.x.mean(axis=0)
    std = train.x.std(axis=0)
    std[std < 1e-12] = 1.0
    mlp.mean.copy_(torch.from_numpy(mean))
    mlp.std.copy_(torch.from_numpy(std))
    if task == "regression":
        mlp.y_mean.fill_(float(train.y.mean()))
        mlp.y_std.fill_(float(train.y.std()) or 1.0)
    mlp.to(device)

    def targets(data: TabularData) -> torch.Tensor:
        if task == "regression":
            return ((torch.from_numpy(data.y) - mlp.y_mean.cpu()) / mlp.y_std.cpu()).unsqueeze(-1).to(device)
        return torch.from_numpy(data.y).to(device)

    loss_fn: nn.Module = nn.MSELoss() if task == "regression" else nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(train.x).to(device), targets(train)
    xv, yv = torch.from_numpy(val.x).to(device), targets(val)
    opt = torch.optim.AdamW(mlp.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    best_loss, best_epoch, best_state = math.inf, -1, None
    start = time.perf_counter()
    epoch = 0
    for epoch in range(config.max_epochs):
        mlp.train()
        for idx in torch.randperm(len(xt), generator=gen).split(config.batch_size):
            idx = idx.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(mlp(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        mlp.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(mlp(xv), yv))
        if not math.isfinite(val_loss):
            raise DataValidationError(f"train: validation loss became {val_loss} at epoch {epoch}; lower lr")
        if val_loss < best_loss - 1e-7:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in mlp.state_dict().items()}
        if on_epoch is not None:
            on_epoch(epoch, val_loss)
        if epoch - best_epoch >= config.patience:
            break
    mlp = mlp.cpu()
    if best_state is not None:
        mlp.load_state_dict(best_state)
    mlp.eval()
    return mlp, {
        "best_val_loss": best_loss,
        "best_epoch": best_epoch,
        "epochs": epoch + 1,
        "device": device.type,
        "train_seconds": round(time.perf_counter() - start, 3),
    }


def save_torch_model(
    model_dir: str,
    mlp: TabularMLP,
    data: TabularData,
    arch: dict[str, Any],
    metrics: dict[str, float],
    details: dict[str, Any],
) -> ModelManifest:
    """Writes a ``torchscript`` Model artifact (TorchScript + state_dict) atomically."""
    scripted = torch.jit.script(scoring_module(mlp, data.task).eval())

    def build(tmp: Path) -> None:
        scripted.save(str(tmp / TORCHSCRIPT_FILE))
        torch.save(mlp.state_dict(), tmp / STATE_DICT_FILE)

    manifest = data.manifest(
        "torchscript", metrics, {**details, "architecture": arch, "framework": {"torch": torch.__version__}}
    )
    return write_model(model_dir, manifest, build)


def fit_baseline(train: TabularData, seed: int = 0) -> Any:
    """A scikit-learn baseline: standardized logistic regression or ridge regression."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    estimator = Ridge() if train.task == "regression" else LogisticRegression(max_iter=2000, random_state=seed)
    # Classification labels are class indices, so predict_proba's columns follow label_names.
    return make_pipeline(StandardScaler(), estimator).fit(train.x, train.y)


def save_sklearn_model(
    model_dir: str, model: Any, data: TabularData, metrics: dict[str, float], details: dict[str, Any]
) -> ModelManifest:
    """Writes a ``sklearn-skops`` Model artifact atomically."""
    import sklearn
    import skops.io as sio

    manifest = data.manifest(
        "sklearn-skops",
        metrics,
        {**details, "estimator": type(model[-1]).__name__, "framework": {"scikit-learn": sklearn.__version__}},
    )
    return write_model(model_dir, manifest, lambda tmp: sio.dump(model, tmp / SKOPS_FILE))


@attempts.step
def train(train_dir: str, val_dir: str, model_dir: str, baseline_dir: str, config: TrainConfig) -> dict[str, Any]:
    """Trains the MLP and the baseline and writes both Model artifacts.

    Args:
        train_dir: Training Dataset artifact.
        val_dir: Validation Dataset artifact (early stopping).
        model_dir: Output Model artifact for the MLP (format ``torchscript``).
        baseline_dir: Output Model artifact for the baseline (format ``sklearn-skops``).
        config: Hyperparameters.

    Returns:
        Summary: best validation loss, epochs, device and the baseline's validation loss.

    Raises:
        DataValidationError: The splits are unusable (see :func:`load_split`).
        ConfigError: ``device='cuda'`` without a GPU.
    """
    tr = load_split(train_dir, config.task)
    va = load_split(val_dir, tr.task, tr.label_names)
    mlp, info = fit_mlp(tr, va, config)
    arch = architecture(tr.x.shape[1], tr.task, len(tr.label_names), config)
    save_torch_model(
        model_dir, mlp, tr, arch, {"val_loss": info["best_val_loss"]}, {"params": config.to_dict(), "training": info}
    )
    baseline = fit_baseline(tr, config.seed)
    base_loss = validation_loss(baseline, va, float(mlp.y_std))
    save_sklearn_model(baseline_dir, baseline, tr, {"val_loss": base_loss}, {"role": "baseline"})
    return {**info, "baseline_val_loss": base_loss, "task": tr.task}


def validation_loss(model: Any, data: TabularData, y_std: float = 1.0) -> float:
    """The MLP's training loss for a scikit-learn model: log loss, or MSE in units of ``y_std``."""
    from sklearn.metrics import log_loss, mean_squared_error

    if data.task == "regression":
        return float(mean_squared_error(data.y, model.predict(data.x)) / max(y_std**2, 1e-12))
    return float(log_loss(data.y, model.predict_proba(data.x), labels=list(range(len(data.label_names)))))
