"""Evaluation on the test split and the blessing decision (TFX Evaluator style).

A candidate is **blessed** when every metric threshold holds (``{"roc_auc": {"min": 0.9}}``) and,
when a baseline model is given, it is not worse than the baseline on the primary metric by more
than ``baseline_tolerance``. How "not worse" is judged is ``comparison``:

- ``bootstrap`` (default): a paired bootstrap over the test rows gives a confidence interval of
  the improvement; the candidate fails only when the whole interval lies below ``-tolerance``,
  i.e. when the data show it is worse. A small test set's noise does not block a model.
- ``noninferiority``: the candidate passes only when the whole interval lies above
  ``-tolerance``, i.e. when the data show it is no worse (a proper non-inferiority test; on a
  small test set it blocks most candidates).
- ``point``: the observed difference alone, as TFX's change thresholds do.

Models are loaded with :func:`serving.formats.load_model`, the loader the server uses, so what
is evaluated is exactly what will be served.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from serving.formats import WEIGHTS_FILE, LoadedModel, load_model
from shipyard import attempts
from shipyard import metrics as task_metrics
from shipyard.artifacts import read_dataset, write_json, write_text
from shipyard.config import Config, require
from shipyard.errors import ConfigError, DataValidationError
from shipyard.report import markdown_table
from shipyard.tasks import LOWER_IS_BETTER, PRIMARY_METRIC

COMPARISONS = ("bootstrap", "noninferiority", "point")
ALL_METRICS = ("accuracy", "f1_macro", "log_loss", "roc_auc", "rmse", "mae", "r2")
DEFAULT_THRESHOLDS = {
    "binary": {"roc_auc": {"min": 0.8}},
    "multiclass": {"accuracy": {"min": 0.7}},
    "regression": {"r2": {"min": 0.3}},
}


@dataclasses.dataclass(frozen=True)
class EvalConfig(Config):
    """Blessing policy.

    Attributes:
        thresholds: ``{metric: {"min": x, "max": y}}``; empty uses the task's default.
        baseline_tolerance: How much worse than the baseline the primary metric may be.
        primary_metric: Metric compared with the baseline; empty uses the task's default.
        comparison: ``bootstrap`` (default: block only a candidate shown to be worse),
            ``noninferiority`` (bless only a candidate shown to be no worse) or ``point``.
        confidence: Two-sided confidence of the bootstrap interval.
        n_bootstrap: Bootstrap resamples.
        seed: Bootstrap seed.
    """

    section = "evaluate"
    thresholds: dict = dataclasses.field(default_factory=dict)
    baseline_tolerance: float = 0.01
    primary_metric: str = ""
    comparison: str = "bootstrap"
    confidence: float = 0.95
    n_bootstrap: int = 1000
    seed: int = 0

    def validate(self) -> None:
        require(self.comparison in COMPARISONS, self.section, f"comparison must be one of {', '.join(COMPARISONS)}")
        require(0.5 <= self.confidence < 1, self.section, "confidence must be in [0.5, 1)")
        require(self.n_bootstrap >= 100, self.section, "n_bootstrap must be >= 100")
        for metric, bounds in self.thresholds.items():
            require(
                isinstance(bounds, dict) and bool(bounds) and not set(bounds) - {"min", "max"},
                self.section,
                f"thresholds.{metric}: expected {{'min': x}} and/or {{'max': y}}, got {bounds!r}",
            )
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds.values())
            require(numeric, self.section, f"thresholds.{metric}: bounds must be numbers, got {bounds!r}")
        known = set(ALL_METRICS)
        unknown = sorted(set(self.thresholds) - known)
        require(not unknown, self.section, f"thresholds: unknown metric(s) {unknown}; expected some of {sorted(known)}")
        require(
            not self.primary_metric or self.primary_metric in known,
            self.section,
            f"primary_metric {self.primary_metric!r} is not one of {sorted(known)}",
        )
        require(self.baseline_tolerance >= 0, self.section, "baseline_tolerance must be >= 0")


def labels_of(model: LoadedModel, df: Any, where: str) -> np.ndarray:
    """The test labels as the model's scores index them: class positions in ``label_names``, or
    float64 values for regression.

    Raises:
        DataValidationError: The label column is missing or has nulls, a class is unknown to the
            model, or a regression label is not a number.
    """
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    label = model.manifest.label
    if label not in df.columns:
        raise DataValidationError(f"{where}: label column {label!r} missing")
    column = df[label]
    nulls = column.isna().to_numpy()
    if nulls.any():
        first = int(np.flatnonzero(nulls)[0])
        raise DataValidationError(
            f"{where}: label {label!r} is null in {int(nulls.sum())} row(s), first row {first}; "
            "expected a label in every row"
        )
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    if model.is_classifier:
        index = {v: i for i, v in enumerate(model.manifest.label_names)}
        values = [v.item() if isinstance(v, np.generic) else v for v in column.tolist()]
        unseen = sorted({v for v in values if v not in index}, key=str)
        if unseen:
            raise DataValidationError(f"{where}: label {label!r} has classes {unseen[:5]} unknown to the model")
        return np.array([index[v] for v in values], dtype=np.int64)
    if not is_numeric_dtype(column.dtype) or is_bool_dtype(column.dtype):
        raise DataValidationError(
            f"{where}: label {label!r} has dtype {column.dtype}; a regression model needs numeric labels"
        )
    return column.to_numpy(dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class Scored:
    """One model's scores on a Dataset.

    Attributes:
        model: The loaded model (:func:`serving.formats.load_model`).
        y: The labels (:func:`labels_of`).
        scores: Probabilities ``[rows, classes]`` or values ``[rows]``.
        unknown: Per categorical feature, how many test values fell in the unknown bucket.
    """

    model: LoadedModel
    y: np.ndarray
    scores: np.ndarray
    unknown: dict[str, int]


def score_dataset(model_dir: str, dataset_dir: str) -> Scored:
    """Loads a model and scores a Dataset's raw rows through the model's own preprocessing
    (:meth:`serving.formats.LoadedModel.encode_frame`, then ``scores``: what ``score_frame`` does,
    keeping the unknown-category counts), exactly as the server scores them.

    Raises:
        ArtifactError: The model cannot be verified or loaded.
        DataValidationError: The labels are unusable (:func:`labels_of`), or a feature is missing,
            of the wrong type, or null where the model allows no nulls.
    """
    model = load_model(model_dir)
    df, _ = read_dataset(dataset_dir)
    where = str(dataset_dir)
    y = labels_of(model, df, where)
    encoded = model.encode_frame(df, where)
    return Scored(model, y, model.scores(encoded.x), dict(encoded.unknown))


def family_of(model: LoadedModel) -> str:
    """The model family (``mlp``, ``gbdt``, ``linear``) from ``details["family"]``, else ``""``."""
    family = model.manifest.details.get("family", "")
    return family if isinstance(family, str) else ""


def same_model(a: LoadedModel, b: LoadedModel) -> bool:
    """True when both artifacts hold the same weights (the same format and weights file sha256)."""
    if a.manifest.format != b.manifest.format:
        return False
    name = WEIGHTS_FILE[a.manifest.format]
    return a.manifest.files.get(name) is not None and a.manifest.files.get(name) == b.manifest.files.get(name)


def baseline_note(candidate: LoadedModel, baseline: LoadedModel) -> str:
    """A sentence for the report when the candidate and the baseline are one model or one family, else ``""``."""
    if same_model(candidate, baseline):
        return (
            "the candidate is the baseline itself (the same weights): the baseline check compares a model "
            "with itself and passes trivially; the thresholds alone decide the blessing"
        )
    family = family_of(candidate)
    if family and family == family_of(baseline):
        return (
            f"the candidate and the baseline are both of the {family} family: the baseline check compares "
            "two models of one family, not the candidate with a different kind of model"
        )
    return ""


def check_thresholds(values: dict[str, float], thresholds: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Returns one row per bound: metric, bound kind, bound, value, passed."""
    rows = []
    for metric, bounds in thresholds.items():
        value = values.get(metric)
        for kind, bound in bounds.items():
            ok = value is not None and (value >= bound if kind == "min" else value <= bound)
            rows.append(
                {
                    "check": f"{metric} {'≥' if kind == 'min' else '≤'} {bound:g}",
                    "metric": metric,
                    "value": value,
                    "passed": bool(ok),
                }
            )
    return rows


def compare_to_baseline(
    task: str, metric: str, y: np.ndarray, candidate: np.ndarray, baseline: np.ndarray, config: EvalConfig
) -> dict[str, Any]:
    """The baseline check: ``value`` is the improvement (positive = better than the baseline).

    ``point`` compares the observed improvement with ``-baseline_tolerance``. The two bootstrap
    modes compare an end of its confidence interval: ``bootstrap`` the upper end (fails only when
    the candidate is shown to be worse), ``noninferiority`` the lower end (passes only when the
    candidate is shown to be no worse).

    Returns:
        A check row; the bootstrap modes also give ``interval`` (the improvement's CI).
    """
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    if config.comparison == "point":
        fn = task_metrics.metric_functions(task)[metric]
        delta = low = high = fn(y, candidate) - fn(y, baseline)
    else:
        delta, low, high = task_metrics.bootstrap_delta(
            task, metric, y, candidate, baseline, config.n_bootstrap, config.confidence, config.seed
        )
    interval = sorted([sign * low, sign * high])
    judged = {"point": sign * delta, "bootstrap": interval[1], "noninferiority": interval[0]}[config.comparison]
    label = {
        "point": "",
        "bootstrap": f" (upper end of {config.confidence:.0%} CI)",
        "noninferiority": f" (lower end of {config.confidence:.0%} CI)",
    }[config.comparison]
    row = {
        "check": f"{metric} vs baseline not worse by > {config.baseline_tolerance:g}{label}",
        "metric": metric,
        "value": sign * delta,
        "passed": bool(judged >= -config.baseline_tolerance),
    }
    if config.comparison != "point":
        row["interval"] = interval
    return row


@attempts.step
def evaluate(
    model_dir: str, test_dir: str, report_json: str, report_md: str, config: EvalConfig, baseline_dir: str | None = None
) -> dict[str, Any]:
    """Evaluates the candidate (and baseline) on the test split and decides the blessing.

    Both models score the test split's raw rows through their own fitted preprocessing
    (:func:`score_dataset`), so each is judged on what it would serve.

    Returns:
        ``{"blessed", "task", "primary_metric", "metrics", "baseline_metrics", "checks",
        "confusion_matrix", "roc", "label_names", "format", "family", "baseline_family",
        "baseline_note", "unknown_categories"}``.

    Raises:
        ConfigError: A threshold or primary metric that does not apply to the task.
        DataValidationError: The test split cannot be scored by a model (:func:`score_dataset`),
            or the baseline is of another task or has other classes.
    """
    candidate = score_dataset(model_dir, test_dir)
    model, y, scores = candidate.model, candidate.y, candidate.scores
    task = model.manifest.task
    values = task_metrics.compute(task, y, scores)
    primary = config.primary_metric or PRIMARY_METRIC[task]
    if primary not in values:
        if config.primary_metric:
            raise ConfigError(f"evaluate: primary_metric {primary!r} is not a {task} metric; have {sorted(values)}")
        primary = "accuracy"  # roc_auc is undefined when a class is missing from the test split
    thresholds = config.thresholds or DEFAULT_THRESHOLDS[task]
    foreign = sorted(set(thresholds) - set(task_metrics.metric_functions(task)))
    if foreign:
        raise ConfigError(f"evaluate: threshold metric(s) {foreign} do not apply to a {task} task")
    checks = check_thresholds(values, thresholds)
    baseline_values, note, baseline_family = None, "", None
    if baseline_dir:
        base = score_dataset(baseline_dir, test_dir)
        bm = base.model.manifest
        if bm.task != task or tuple(bm.label_names) != tuple(model.manifest.label_names):
            raise DataValidationError(
                f"{baseline_dir}: the baseline is a {bm.task} model with classes {list(bm.label_names)}; "
                f"the candidate is {task} with {list(model.manifest.label_names)}: they cannot be compared"
            )
        baseline_values = task_metrics.compute(task, base.y, base.scores)
        checks.append(compare_to_baseline(task, primary, y, scores, base.scores, config))
        note, baseline_family = baseline_note(model, base.model), family_of(base.model)
    blessed = all(c["passed"] for c in checks)
    result: dict[str, Any] = {
        "blessed": blessed,
        "task": task,
        "primary_metric": primary,
        "metrics": values,
        "baseline_metrics": baseline_values,
        "checks": checks,
        "rows": int(len(y)),
        "label_names": list(model.manifest.label_names),
        "format": model.manifest.format,
        "family": family_of(model),
        "baseline_family": baseline_family,
        "baseline_note": note,
        "unknown_categories": candidate.unknown,
    }
    if task != "regression":
        result["confusion_matrix"] = task_metrics.confusion(y, scores, scores.shape[1])
        if scores.shape[1] == 2 and len(np.unique(y)) == 2:
            result["roc"] = task_metrics.roc_points(y, scores[:, 1])
    write_json(report_json, result)
    write_text(report_md, _markdown(result))
    return result


def _markdown(result: dict[str, Any]) -> str:
    """The human report of :func:`evaluate`'s result."""
    values, baseline_values = result["metrics"], result["baseline_metrics"] or {}
    family = f" ({result['family']})" if result["family"] else ""
    base_family = f" ({result['baseline_family']})" if result["baseline_family"] else ""
    lines = [
        f"# Evaluation: {'BLESSED' if result['blessed'] else 'NOT blessed'}\n",
        f"{result['rows']} test rows, task {result['task']}, model format {result['format']}{family}"
        + (f", baseline{base_family}" if result["baseline_metrics"] is not None else "")
        + ".\n",
    ]
    if result["baseline_note"]:
        lines.append(f"Note: {result['baseline_note']}.\n")
    if result["unknown_categories"]:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(result["unknown_categories"].items()))
        lines.append(f"Test values outside the training vocabulary (scored as the unknown category): {counts}.\n")
    checks = result["checks"]
    metric_rows = [(k, v, baseline_values.get(k)) for k, v in values.items()]
    return (
        "\n".join(lines)
        + "\n"
        + markdown_table(["metric", "candidate", "baseline"], metric_rows)
        + "\n"
        + markdown_table(
            ["check", "value", "interval", "passed"],
            [
                (c["check"], c["value"], " … ".join(f"{v:.4g}" for v in c.get("interval", [])) or None, c["passed"])
                for c in checks
            ],
        )
    )
