"""The pictures as PNG files: calibration, ROC, precision-recall, residuals and training curves.

matplotlib is imported inside each function, and figures are drawn on an ``Agg`` canvas of their
own (``matplotlib.figure.Figure``, not pyplot), so that importing this module costs nothing, no
display is needed and the process's pyplot backend is left alone (a notebook calling evaluate).
Every function writes one PNG atomically (a temporary file, then a rename) and returns its path.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Figure size (inches) and resolution of every picture.
SIZE = (4.5, 4.0)
DPI = 100


def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def calibration_curve(bins: Sequence[dict[str, Any]], path: str | Path, title: str = "Calibration") -> Path:
    """The reliability diagram of :func:`shipyard.metrics.calibration_bins`: observed rate against
    mean confidence per bin (marker area by rows), with the diagonal of perfect calibration."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    if bins:
        conf = [b["confidence"] for b in bins]
        observed = [b["observed"] for b in bins]
        rows = np.array([b["rows"] for b in bins], dtype=float)
        ax.plot(conf, observed, color="C0", linewidth=1)
        ax.scatter(conf, observed, s=20 + 180 * rows / rows.max(), color="C0", label="model", zorder=3)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted probability", ylabel="observed rate", title=title)
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def roc_curve(y: np.ndarray, positive: np.ndarray, path: str | Path, auc: float | None = None) -> Path:
    """The ROC curve of binary labels ``y`` and class 1's scores ``positive``."""
    from sklearn.metrics import roc_curve as curve

    fpr, tpr, _ = curve(y, positive)
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.plot(fpr, tpr, color="C0", label=f"AUC {auc:.3f}" if auc is not None else "model")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def pr_curve(y: np.ndarray, positive: np.ndarray, path: str | Path, ap: float | None = None) -> Path:
    """The precision-recall curve of binary labels ``y`` and class 1's scores, with the base rate."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, positive)
    fig, ax = _figure()
    ax.axhline(float(np.mean(y == 1)), linestyle="--", color="grey", linewidth=1, label="base rate")
    ax.step(recall, precision, where="post", color="C0", label=f"AP {ap:.3f}" if ap is not None else "model")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="recall", ylabel="precision", title="Precision-recall")
    ax.legend(loc="lower left", fontsize="small")
    return _save(fig, path)


def residuals(y: np.ndarray, pred: np.ndarray, path: str | Path) -> Path:
    """Residuals ``y - prediction`` against the prediction, with the zero line."""
    fig, ax = _figure()
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.scatter(pred, y - pred, s=8, alpha=0.6, color="C0")
    ax.set(xlabel="prediction", ylabel="residual (y − prediction)", title="Residuals")
    return _save(fig, path)


def training_curves(history: Sequence[dict[str, float]], path: str | Path, best_epoch: int | None = None) -> Path:
    """Training and validation loss per epoch (the best epoch marked) for the MLP's ``history``."""
    fig, ax = _figure()
    epochs = [int(h["epoch"]) + 1 for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], color="C0", label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], color="C1", label="validation loss")
    if best_epoch is not None and best_epoch >= 0:
        ax.axvline(best_epoch + 1, linestyle="--", color="grey", linewidth=1, label=f"best epoch {best_epoch + 1}")
    ax.set(xlabel="epoch", ylabel="loss", title="MLP training")
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def data_uri(path: str | Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI, for an ``<img>`` in a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
