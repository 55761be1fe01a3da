"""Choosing the candidate family: per-row losses, cross-validation on small tables, the rule.

The families are compared by their per-row losses (log loss of the true class, or squared
error) on rows none of them was fitted or early-stopped on:

- On a table of more than ``cv_max_rows`` rows (train + validation), the validation split's rows,
  scored by the models the step writes.
- On a smaller table, a validation split of a few dozen rows cannot tell the families apart, and
  the GBDT and the MLP are early-stopped on those very rows, which makes their validation loss
  optimistic. There the families are compared by k-fold cross-validation over train +
  validation: in each fold every family is fitted on the other folds (early-stopped on an inner
  split of them, the pipeline's own validation fraction) and scores the held-out fold, so every
  row gets one out-of-fold loss per family. The models written are still those fitted on the
  train split; cross-validation only chooses among them.

The rule (:func:`choose_candidate`): the linear baseline, unless the family with the lowest mean
loss beats it by more than one standard error of their paired per-row difference; then that
family. A more complex model must show that it is better than the baseline on these rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.tasks import LOWER_IS_BETTER, PRIMARY_METRIC

if TYPE_CHECKING:
    from components.train_model.core import TabularData, TrainConfig

#: Order of preference when two families tie: the simpler one wins.
TIE_ORDER = ("linear", "gbdt", "mlp", "keras")


def row_losses(task: str, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each row's loss: the log loss of its true class, or the squared error."""
    if task == "regression":
        return (np.asarray(scores, dtype=np.float64).reshape(-1) - y) ** 2
    p = np.asarray(scores, dtype=np.float64)[np.arange(len(y)), y]
    return -np.log(np.clip(p, 1e-15, 1.0))


def primary_of(task: str, metrics: dict[str, float]) -> str:
    """The task's primary metric, or ``accuracy`` where it is undefined on the split."""
    primary = PRIMARY_METRIC[task]
    return primary if primary in metrics else "accuracy"


def paired_se(diff: np.ndarray) -> float:
    """The standard error of the mean of a paired per-row difference."""
    return float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else 0.0


def choose_candidate(
    table: dict[str, dict[str, Any]],
    task: str,
    forced: str = "best",
    losses: dict[str, np.ndarray] | None = None,
    where: str = "validation",
) -> tuple[str, str]:
    """The candidate family and why: the forced one, else the rule in the module docstring.

    With ``losses`` (per family, per-row losses on the same rows in the same order): the linear
    baseline when the lowest mean loss is within one standard error of the paired difference from
    it; else the family with the lowest mean loss (ties to the earlier family in
    :data:`TIE_ORDER`). Without ``losses``: the best validation primary metric, a tie (within
    1e-12) going to the lower validation loss, then to the earlier family in :data:`TIE_ORDER`.

    Args:
        table: ``{family: {"metrics": {...}, "val_loss": ...}}`` of the families trained.
        task: The task (its primary metric; ``accuracy`` when ``roc_auc`` is undefined on the split).
        forced: ``best`` or the family to take.
        losses: Per-row losses per family.
        where: Which rows the losses are on, for the reason (``validation`` or ``5-fold CV``).

    Returns:
        ``(family, reason)``.
    """
    if forced != "best":
        return forced, f"forced by candidate={forced!r}"
    metric = primary_of(task, next(iter(table.values()))["metrics"])
    if losses:
        families = [f for f in TIE_ORDER if f in losses]
        means = {f: float(losses[f].mean()) for f in families}
        best = min(families, key=lambda f: (round(means[f], 12), families.index(f)))
        value = table[best]["metrics"][metric]
        if best == "linear" or "linear" not in losses:
            return best, f"lowest {where} loss ({means[best]:.4g}); validation {metric} {value:.4g}"
        gain = means["linear"] - means[best]
        se = paired_se(losses["linear"] - losses[best])
        if gain <= se:
            value = table["linear"]["metrics"][metric]
            return "linear", (
                f"the linear baseline: {best}'s {where} loss ({means[best]:.4g}) is lower than the baseline's "
                f"({means['linear']:.4g}) by {gain:.3g}, within one standard error ({se:.3g}); "
                f"validation {metric} {value:.4g}"
            )
        return best, (
            f"lowest {where} loss ({best}: {means[best]:.4g}, the baseline {means['linear']:.4g}: "
            f"better by {gain:.3g} > one standard error {se:.3g}); validation {metric} {value:.4g}"
        )
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    order = sorted(
        table,
        key=lambda f: (
            round(sign * table[f]["metrics"][metric], 12),
            round(float(table[f].get("val_loss", 0.0)), 12),
            TIE_ORDER.index(f),
        ),
    )
    best = order[0]
    return best, f"best validation {metric} ({table[best]['metrics'][metric]:.4g}) among {', '.join(order)}"


@dataclasses.dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold losses of each family over train + validation.

    Attributes:
        losses: ``{family: per-row out-of-fold loss}`` (rows in pooled order: train, then validation).
        folds: The number of folds.
        rows: The pooled rows.
        seconds: Wall time of all the fits.
    """

    losses: dict[str, np.ndarray]
    folds: int
    rows: int
    seconds: float


def cv_problem(train: TabularData, val: TabularData, folds: int, max_rows: float) -> str | None:
    """Why the families are not cross-validated on this table, or None when they are."""
    rows = len(train) + len(val)
    if rows > max_rows:
        return f"{rows} rows in train + validation > cv_max_rows {max_rows}: the validation split decides"
    if train.task != "regression":
        counts = np.bincount(np.concatenate([train.y, val.y]), minlength=len(train.label_names))
        low = int(np.argmin(counts))
        if counts[low] < 2 * folds:
            return (
                f"class {train.label_names[low]!r} has {int(counts[low])} rows, fewer than 2 × {folds} folds: "
                "the validation split decides"
            )
    return None


def subset(data: TabularData, index: np.ndarray) -> TabularData:
    """The rows ``index`` of a split (positions)."""
    return dataclasses.replace(
        data,
        x=None if data.x is None else data.x[index],
        y=data.y[index],
        frame=data.frame.iloc[index].reset_index(drop=True),
        source="",  # the file holds all rows, not these
    )


def pool(train: TabularData, val: TabularData) -> TabularData:
    """Train and validation as one split (train's rows first)."""
    import pandas as pd

    x = None if train.x is None or val.x is None else np.concatenate([train.x, val.x])
    frame = pd.concat([train.frame, val.frame], ignore_index=True)
    return dataclasses.replace(train, x=x, y=np.concatenate([train.y, val.y]), frame=frame, source="")


#: ``fit(train, val, family, config) -> scorer``: a scorer maps a split to its scores.
FitFamily = Callable[["TabularData", "TabularData", str, "TrainConfig"], Callable[["TabularData"], np.ndarray]]


def cross_validate(
    train: TabularData,
    val: TabularData,
    families: list[str],
    config: TrainConfig,
    fit: FitFamily,
    folds: int,
    progress: Callable[[str], None] = lambda _m: None,
) -> CrossValidation:
    """Every family's out-of-fold losses over train + validation (module docstring).

    Folds are stratified by class for classification and seeded with ``config.seed``; each fold's
    training part is split again (stratified, the same seed) into an inner train and an inner
    validation split of the pipeline's validation fraction, for early stopping.
    """
    import time

    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    start = time.perf_counter()
    data = pool(train, val)
    classify = data.task != "regression"
    splitter = (StratifiedKFold if classify else KFold)(folds, shuffle=True, random_state=config.seed)
    fraction = len(val) / len(data)
    out = {f: np.zeros(len(data)) for f in families}
    for k, (fit_rows, held_rows) in enumerate(splitter.split(np.zeros(len(data)), data.y)):
        try:
            inner, early = train_test_split(
                fit_rows, test_size=fraction, random_state=config.seed, stratify=data.y[fit_rows] if classify else None
            )
        except ValueError:  # an inner validation split too small to hold every class: unstratified
            inner, early = train_test_split(fit_rows, test_size=fraction, random_state=config.seed)
        part_train, part_val, held = subset(data, inner), subset(data, early), subset(data, held_rows)
        for family in families:
            scorer = fit(part_train, part_val, family, config)
            out[family][held_rows] = row_losses(data.task, held.y, scorer(held))
        progress(f"train: cross-validation fold {k + 1}/{folds} done")
    return CrossValidation(out, folds, len(data), round(time.perf_counter() - start, 3))
