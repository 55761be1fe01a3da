"""Evaluation on the test split and the blessing decision (TFX Evaluator style).

The candidate, and the registry's champion when one is given (``champion_dir``), score the test
split's raw rows through the loader the server uses (:func:`serving.formats.load_model`), so what
is evaluated is exactly what will be served. The blessing is a list of checks, each a pure rule of
:mod:`components.evaluate_model.policy`:

- **value thresholds** ``{"roc_auc": {"min": 0.9}, "log_loss": {"max": 0.4}}``;
- **change thresholds** against the champion, MLflow ``MetricThreshold`` semantics
  (``{"roc_auc": {"min_absolute_change": 0.0, "min_relative_change": 0.01}}``);
- **the champion rule** (always, when there is a champion): the candidate is not worse than the
  champion on the primary metric by more than ``champion_tolerance`` (default 0). ``comparison``
  says how "worse" is judged: ``point`` (default: the observed values, whatever the interval
  says), ``bootstrap`` (opt-in: fails only when the paired bootstrap interval shows it is worse)
  or ``noninferiority`` (passes only when the interval shows it is no worse);
- **fairness** ``{"f1_macro": {"max_gap": 0.1}}``: the largest gap of a metric between slices;
- **the in-run baseline** (the linear model trained in the same run): reported, and gating only
  with ``gate_on_baseline``.

No champion: value and fairness thresholds only, said in the report. No thresholds configured:
blessed, with a recorded warning. ``force_bless: {"reason": ...}`` blesses whatever the checks
say and records the reason. The paired bootstrap always gives the reported uncertainty of the
primary metric and of the deltas.

For a binary task the decision threshold is chosen on the validation split (``val_dir``) for
``threshold_objective``, and the test metrics at that threshold are reported as
``*_at_threshold``.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from components.evaluate_model import policy
from components.evaluate_model import slices as slicing
from serving.formats import WEIGHTS_FILE, LoadedModel, load_model
from shipyard import attempts
from shipyard import metrics as task_metrics
from shipyard.artifacts import ModelManifest, read_dataset, write_json, write_text
from shipyard.config import Config, require
from shipyard.errors import ConfigError, DataValidationError, SchemaMismatchError
from shipyard.report import fmt, html_table, markdown_table

COMPARISONS = policy.COMPARISONS
#: Every metric name an option may refer to (each task has a subset: :data:`shipyard.metrics.EVALUATION_METRICS`).
ALL_METRICS = tuple(sorted({m for names in task_metrics.EVALUATION_METRICS.values() for m in names}))
#: The primary metric of each task when ``primary_metric`` is empty.
PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "accuracy", "regression": "rmse"}
#: What evaluation.json's ``format`` key is (bumped when the contract changes incompatibly).
EVALUATION_FORMAT = "shipyard.evaluation/v2"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: The registry alias the candidate is compared with by default.
CHAMPION_ALIAS = "champion"


def fetch_champion(
    tracking_uri: str, model_name: str, source: str, alias: str, dst: str
) -> tuple[str | None, str | None, str]:
    """The registry's ``alias`` version of the model, downloaded to ``dst``.

    Args:
        tracking_uri: The MLflow registry (empty: as register_model resolves it).
        model_name: The registered model name; empty derives it from ``source``.
        source: The run's data source.
        alias: The alias (``champion``); empty: no lookup.
        dst: Where to download the version.

    Returns:
        ``(directory, version, where)``: directory and version are None when the alias is empty
        or there is no such store, model or alias yet; ``where`` says what was looked up (for the
        report's warning when nothing was found).

    Raises:
        ConfigError: No usable tracking URI (see register_model).
        ArtifactError / IntegrityError: The registered artifact is malformed or altered.
    """
    if not alias:
        return None, None, ""
    from components.register_model.core import resolve_tracking_uri
    from shipyard import names, rdb, registry

    name = names.resolve_model_name(model_name, source)
    uri = resolve_tracking_uri(tracking_uri)
    fetched = registry.fetch_model(uri, name, f"@{alias}", dst)
    where = f"@{alias} of {name!r} in {rdb.redact(uri)}"
    return (None, None, where) if fetched is None else (fetched.path, str(fetched.version), where)


@dataclasses.dataclass(frozen=True)
class EvalConfig(Config):
    """Blessing policy, slices and the decision threshold.

    Attributes:
        thresholds: Value thresholds ``{metric: {"min": x, "max": y}}``.
        change_thresholds: ``{metric: {"min_absolute_change": a, "min_relative_change": r,
            "greater_is_better": bool}}`` against the champion (MLflow ``MetricThreshold``).
        primary_metric: The metric of the champion rule and the uncertainty; empty: ``roc_auc`` /
            ``accuracy`` / ``rmse``.
        comparison: The champion (and baseline) rule: ``point``, ``bootstrap`` or ``noninferiority``.
        champion_tolerance: How much worse than the champion the primary metric may be.
        baseline_tolerance: How much worse than the in-run baseline the primary metric may be.
        gate_on_baseline: Whether the in-run baseline comparison takes part in the verdict.
        compare_on_common_features: Compare with a champion whose input schema differs (each model
            scores the test rows with its own features).
        force_bless: ``{"reason": "..."}`` blesses whatever the checks say; ``{}``: not forced.
        threshold_objective: ``f1``, ``balanced_accuracy``, ``youden``, ``min_precision`` or ``min_recall``.
        threshold_target: The precision (``min_precision``) or recall (``min_recall``) to reach.
        slices: Test-split columns to slice by.
        min_slice_rows: Slices with fewer rows are not scored.
        slice_buckets: Quantile buckets of a numeric slice column.
        fairness: ``{metric: {"max_gap": x}}``: the largest gap between slices of a column.
        confidence: Two-sided confidence of the bootstrap intervals.
        n_bootstrap: Bootstrap resamples.
        seed: Bootstrap seed.
        champion_alias: The registry alias the candidate is compared with (``champion``); empty:
            no registry lookup, value thresholds (and the in-run baseline) only.
    """

    section = "evaluate"
    thresholds: dict = dataclasses.field(default_factory=dict)
    change_thresholds: dict = dataclasses.field(default_factory=dict)
    primary_metric: str = ""
    comparison: str = "point"
    champion_tolerance: float = 0.0
    baseline_tolerance: float = 0.01
    gate_on_baseline: bool = False
    compare_on_common_features: bool = False
    force_bless: dict = dataclasses.field(default_factory=dict)
    threshold_objective: str = "f1"
    threshold_target: float = 0.0
    slices: tuple = ()
    min_slice_rows: int = 30
    slice_buckets: int = 4
    fairness: dict = dataclasses.field(default_factory=dict)
    confidence: float = 0.95
    n_bootstrap: int = 1000
    seed: int = 0
    champion_alias: str = CHAMPION_ALIAS

    def validate(self) -> None:
        s = self.section
        require(self.comparison in COMPARISONS, s, f"comparison must be one of {', '.join(COMPARISONS)}")
        require(0.5 <= self.confidence < 1, s, "confidence must be in [0.5, 1)")
        require(self.n_bootstrap >= 100, s, "n_bootstrap must be >= 100")
        require(self.baseline_tolerance >= 0, s, "baseline_tolerance must be >= 0")
        require(self.champion_tolerance >= 0, s, "champion_tolerance must be >= 0")
        known = set(ALL_METRICS)
        for metric, bounds in self.thresholds.items():
            require(
                isinstance(bounds, dict) and bool(bounds) and not set(bounds) - {"min", "max"},
                s,
                f"thresholds.{metric}: expected {{'min': x}} and/or {{'max': y}}, got {bounds!r}",
            )
            require(
                all(map(_number, bounds.values())), s, f"thresholds.{metric}: bounds must be numbers, got {bounds!r}"
            )
            require(
                bounds.get("min", -math.inf) <= bounds.get("max", math.inf),
                s,
                f"thresholds.{metric}: min {bounds.get('min')} is above max {bounds.get('max')}: no value could pass",
            )
        for metric, rule in self.change_thresholds.items():
            keys = {"min_absolute_change", "min_relative_change"}
            require(
                isinstance(rule, dict) and bool(set(rule) & keys) and not set(rule) - keys - {"greater_is_better"},
                s,
                f"change_thresholds.{metric}: expected min_absolute_change and/or min_relative_change "
                f"(and optionally greater_is_better), got {rule!r}",
            )
            require(
                all(_number(rule[k]) and rule[k] >= 0 for k in keys & set(rule)),
                s,
                f"change_thresholds.{metric}: changes must be numbers >= 0, got {rule!r}",
            )
            require(
                rule.get("min_relative_change", 0) <= 1,
                s,
                f"change_thresholds.{metric}: min_relative_change must be in [0, 1] (as MLflow's), got {rule!r}",
            )
            require(
                isinstance(rule.get("greater_is_better", True), bool),
                s,
                f"change_thresholds.{metric}: greater_is_better must be true or false",
            )
        for metric, rule in self.fairness.items():
            require(
                isinstance(rule, dict)
                and set(rule) == {"max_gap"}
                and _number(rule["max_gap"])
                and rule["max_gap"] >= 0,
                s,
                f"fairness.{metric}: expected {{'max_gap': x}} with x >= 0, got {rule!r}",
            )
        require(not self.fairness or bool(self.slices), s, "fairness needs slices (the columns to compare across)")
        for option, names in (
            ("thresholds", self.thresholds),
            ("change_thresholds", self.change_thresholds),
            ("fairness", self.fairness),
        ):
            unknown = sorted(set(names) - known)
            require(not unknown, s, f"{option}: unknown metric(s) {unknown}; expected some of {sorted(known)}")
        require(
            not self.primary_metric or self.primary_metric in known,
            s,
            f"primary_metric {self.primary_metric!r} is not one of {sorted(known)}",
        )
        require(
            not self.primary_metric.endswith("_at_threshold"),
            s,
            f"primary_metric {self.primary_metric!r}: the primary metric must not depend on the decision threshold",
        )
        require(
            self.threshold_objective in task_metrics.THRESHOLD_OBJECTIVES,
            s,
            f"threshold_objective must be one of {', '.join(task_metrics.THRESHOLD_OBJECTIVES)}",
        )
        if self.threshold_objective in ("min_precision", "min_recall"):
            require(
                0 < self.threshold_target <= 1, s, f"threshold_target must be in (0, 1] for {self.threshold_objective}"
            )
        require(all(isinstance(c, str) and c for c in self.slices), s, "slices must be column names")
        require(self.min_slice_rows >= 1, s, "min_slice_rows must be >= 1")
        require(self.slice_buckets >= 2, s, "slice_buckets must be >= 2")
        if self.force_bless:
            require(
                set(self.force_bless) == {"reason"},
                s,
                f"force_bless: expected {{'reason': '...'}}, got keys {sorted(self.force_bless)}",
            )
            reason = self.force_bless["reason"]
            require(
                isinstance(reason, str) and bool(reason.strip()),
                s,
                "force_bless.reason must be a non-empty text saying why the checks are overridden",
            )

    @property
    def forced_reason(self) -> str:
        """The force-bless reason, ``""`` when not forced."""
        return str(self.force_bless.get("reason", "")).strip()

    @property
    def thresholds_configured(self) -> bool:
        """Whether any value, change or fairness threshold is configured."""
        return bool(self.thresholds or self.change_thresholds or self.fairness)


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
        frame: The Dataset's rows (a pandas DataFrame).
    """

    model: LoadedModel
    y: np.ndarray
    scores: np.ndarray
    unknown: dict[str, int]
    frame: Any = None


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
    return Scored(model, y, model.scores(encoded.x), dict(encoded.unknown), df)


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


def schema_difference(candidate: ModelManifest, champion: ModelManifest) -> dict[str, list[str]]:
    """How two models' input schemas differ: features only one has, and common features of another kind."""
    a = {c.name: c.kind for c in candidate.input_schema}
    b = {c.name: c.kind for c in champion.input_schema}
    return {
        "candidate_only": sorted(set(a) - set(b)),
        "champion_only": sorted(set(b) - set(a)),
        "kind_changed": sorted(n for n in set(a) & set(b) if a[n] != b[n]),
    }


def check_task_metrics(task: str, config: EvalConfig) -> None:
    """Raises ConfigError for an option naming a metric the task does not have, listing the task's metrics."""
    available = list(task_metrics.EVALUATION_METRICS[task])
    for option, names in (
        ("thresholds", config.thresholds),
        ("change_thresholds", config.change_thresholds),
        ("fairness", config.fairness),
    ):
        foreign = sorted(set(names) - set(available))
        if foreign:
            raise ConfigError(
                f"evaluate: {option}: metric(s) {foreign} do not apply to a {task} task; available: {available}"
            )
    if config.primary_metric and config.primary_metric not in available:
        raise ConfigError(
            f"evaluate: primary_metric {config.primary_metric!r} is not a {task} metric; available: {available}"
        )


def _comparable(candidate: LoadedModel, other: LoadedModel, where: str, what: str) -> None:
    cm, om = candidate.manifest, other.manifest
    if om.task != cm.task or tuple(om.label_names) != tuple(cm.label_names) or om.label != cm.label:
        raise DataValidationError(
            f"{where}: the {what} is a {om.task} model of label {om.label!r} with classes {list(om.label_names)}; "
            f"the candidate is {cm.task} of {cm.label!r} with {list(cm.label_names)}: they cannot be compared"
        )


def _score_frame(model: LoadedModel, df: Any, where: str) -> Scored:
    y = labels_of(model, df, where)
    encoded = model.encode_frame(df, where)
    return Scored(model, y, model.scores(encoded.x), dict(encoded.unknown), df)


def choose_decision_threshold(
    model: LoadedModel, val: Any, val_dir: str, config: EvalConfig, warnings: list[str]
) -> dict[str, Any] | None:
    """The binary decision threshold chosen on the validation split for ``threshold_objective``.

    Returns:
        ``{"value", "objective", "target", "chosen_on": "validation", "validation_value",
        "validation_rows"}``, or None (not binary, no validation split, a single class in it, or
        no threshold reaching ``threshold_target``; the last two with a warning).
    """
    if model.manifest.task != "binary" or val is None:
        return None
    scored = _score_frame(model, val, val_dir)
    if len(np.unique(scored.y)) < 2:
        warnings.append(f"{val_dir}: the validation split holds one class: no decision threshold was chosen")
        return None
    objective, target = config.threshold_objective, config.threshold_target
    chosen = task_metrics.choose_threshold(scored.y, scored.scores[:, 1], objective, target)
    if chosen is None:
        warnings.append(
            f"no decision threshold reaches {objective} {target:g} on validation: decisions stay at the most "
            "probable class"
        )
        return None
    return {
        "value": chosen[0],
        "objective": objective,
        "target": target if objective in ("min_precision", "min_recall") else None,
        "chosen_on": "validation",
        "validation_value": chosen[1],
        "validation_rows": int(len(scored.y)),
    }


def _delta(task: str, metric: str, y: np.ndarray, a: np.ndarray, b: np.ndarray, config: EvalConfig) -> dict[str, Any]:
    """The paired bootstrap of the improvement ``a`` over ``b`` (positive is better)."""
    sign = 1.0 if task_metrics.greater_is_better(metric) else -1.0
    delta, low, high = task_metrics.bootstrap_delta(
        task, metric, y, a, b, config.n_bootstrap, config.confidence, config.seed
    )
    return {"metric": metric, "value": sign * delta, "interval": sorted([sign * low, sign * high])}


@attempts.step
def evaluate(
    model_dir: str,
    test_dir: str,
    report_json: str,
    report_md: str,
    config: EvalConfig,
    baseline_dir: str | None = None,
    *,
    val_dir: str | None = None,
    champion_dir: str | None = None,
    champion_version: str | None = None,
    champion_lookup: str = "",
    report_html: str | None = None,
    images_dir: str | None = None,
) -> dict[str, Any]:
    """Evaluates the candidate (against the champion and the in-run baseline) and decides the blessing.

    Every model scores the test split's raw rows through its own fitted preprocessing
    (:func:`score_dataset`), so each is judged on what it would serve. Nothing is written until
    every input has been checked.

    Args:
        model_dir: The candidate Model artifact.
        test_dir: The test split.
        report_json: Where ``evaluation.json`` goes (the result below).
        report_md: Where the Markdown report goes.
        config: The policy.
        baseline_dir: The in-run baseline model (a reported row; gating with ``gate_on_baseline``).
        val_dir: The validation split (binary: the decision threshold is chosen on it).
        champion_dir: The registry's current champion, fetched to a directory; None: no champion.
        champion_version: The champion's registry version (for the report).
        champion_lookup: What the registry was asked for (:func:`fetch_champion`); when it found no
            champion, a warning names it (a wrong name or store would otherwise pass unnoticed).
        report_html: Where the HTML report (pictures inline) goes; None: not written.
        images_dir: Where the PNG pictures go; None: pictures only inline in the HTML, if any.

    Returns:
        The evaluation (also written to ``report_json``): ``blessed``, ``forced``, ``warnings``,
        ``notes``, ``task``, ``primary_metric``, ``metrics``, ``per_class`` / ``residual_quantiles``,
        ``calibration``, ``threshold``, ``checks``, ``champion``, ``baseline_metrics``, ``slices``,
        ``fairness_gaps``, ``uncertainty``, ``rows``, ``label_names``, ``format``, ``family``,
        ``model_sha256``, ``images``, ``confusion_matrix`` and ``roc`` (classification), ...

    Raises:
        ConfigError: An option names a metric the task does not have, or a slice column the test
            split lacks.
        DataValidationError: The test split cannot be scored (no label, a missing feature, ...);
            the champion or the baseline is of another task, label or classes.
        SchemaMismatchError: The champion's input schema differs from the candidate's and
            ``compare_on_common_features`` is off.
    """
    candidate = score_dataset(model_dir, test_dir)
    model, y, scores, df = candidate.model, candidate.y, candidate.scores, candidate.frame
    task = model.manifest.task
    check_task_metrics(task, config)
    slicing.check_columns(list(config.slices), [str(c) for c in df.columns], str(test_dir))
    warnings: list[str] = []
    notes: list[str] = []
    val = read_dataset(val_dir)[0] if val_dir and task == "binary" else None

    threshold = choose_decision_threshold(model, val, str(val_dir), config, warnings)
    cut = threshold["value"] if threshold else None
    values, metric_notes = task_metrics.evaluation_metrics(task, y, scores, cut)
    notes += metric_notes
    if task == "binary" and threshold is None and not val_dir:
        notes.append("no validation split given: binary decisions are the most probable class (0.5)")
    if threshold is not None:
        threshold["test_metrics"] = {
            k[: -len("_at_threshold")]: v for k, v in values.items() if k.endswith("_at_threshold")
        }
    primary = config.primary_metric or PRIMARY_METRIC[task]
    if primary not in values:
        if config.primary_metric:
            raise ConfigError(
                f"evaluate: primary_metric {primary!r} was not computed on this test split; have {sorted(values)}"
            )
        notes.append("roc_auc is undefined (a class is missing from the test split): the primary metric is accuracy")
        primary = "accuracy"

    checks = policy.value_checks(values, config.thresholds)
    value, low, high = task_metrics.bootstrap_interval(
        task, primary, y, scores, config.n_bootstrap, config.confidence, config.seed
    )
    uncertainty: dict[str, Any] = {
        "method": "percentile bootstrap over the test rows (paired for deltas)",
        "confidence": config.confidence,
        "n_bootstrap": config.n_bootstrap,
        "seed": config.seed,
        "primary": {"metric": primary, "value": value, "interval": [low, high]},
        "champion_delta": None,
        "baseline_delta": None,
    }

    champion: dict[str, Any] | None = None
    if not champion_dir and champion_lookup:
        warnings.append(f"no champion found ({champion_lookup}): judged by the value thresholds alone")
    if champion_dir:
        champ_model = load_model(champion_dir)
        name = f"champion v{champion_version}" if champion_version else "champion"
        _comparable(model, champ_model, str(champion_dir), name)
        diff = schema_difference(model.manifest, champ_model.manifest)
        differs = any(diff.values())
        if differs and not config.compare_on_common_features:
            raise SchemaMismatchError(
                f"{champion_dir}: the {name}'s input schema differs from the candidate's: candidate only "
                f"{diff['candidate_only']}, champion only {diff['champion_only']}, other kind {diff['kind_changed']}; "
                "set compare_on_common_features to compare them anyway (each model scores with its own features)"
            )
        try:
            champ = _score_frame(champ_model, df, str(test_dir))
        except DataValidationError as exc:
            raise DataValidationError(f"{name} ({champion_dir}) cannot score the test split: {exc}") from exc
        champ_threshold = choose_decision_threshold(champ_model, val, str(val_dir), config, [])
        champ_values, _ = task_metrics.evaluation_metrics(
            task, y, champ.scores, champ_threshold["value"] if champ_threshold else None
        )
        if differs:
            notes.append(
                f"the {name} has another input schema ({diff}); compared on the common features: each model "
                "scored the same test rows with its own features"
            )
        delta = _delta(task, primary, y, scores, champ.scores, config)
        uncertainty["champion_delta"] = delta
        checks += policy.change_checks(values, champ_values, config.change_thresholds, "champion")
        if primary in champ_values:
            checks.append(
                policy.comparison_check(
                    primary,
                    values[primary],
                    champ_values[primary],
                    config.champion_tolerance,
                    config.comparison,
                    delta["interval"] if config.comparison != "point" else None,
                    config.confidence,
                    kind="champion",
                    reference_name=name,
                )
            )
        champion = {
            "version": champion_version,
            "metrics": champ_values,
            "threshold": champ_threshold["value"] if champ_threshold else None,
            "format": champ_model.manifest.format,
            "family": family_of(champ_model),
            "schema_difference": diff,
            "compared_on": "common features" if differs else "all features",
            "same_model": same_model(model, champ_model),
        }
    else:
        notes.append("no champion: value thresholds only (no champion to compare with)")
        if config.change_thresholds:
            warnings.append(
                f"no champion: the change thresholds on {sorted(config.change_thresholds)} were not applied"
            )

    slice_result: dict[str, Any] = {}
    gaps: list[dict[str, Any]] = []
    if config.slices:
        slice_result = slicing.slice_metrics(
            task, y, scores, df, list(config.slices), config.min_slice_rows, config.slice_buckets, cut
        )
        gaps = slicing.fairness_gaps(slice_result, sorted({primary, *config.fairness}))
        checks += policy.fairness_checks(gaps, config.fairness)

    baseline_values, note, baseline_family = None, "", None
    if baseline_dir:
        base = score_dataset(baseline_dir, test_dir)
        _comparable(model, base.model, str(baseline_dir), "baseline")
        base_threshold = choose_decision_threshold(base.model, val, str(val_dir), config, [])
        baseline_values, _ = task_metrics.evaluation_metrics(
            task, base.y, base.scores, base_threshold["value"] if base_threshold else None
        )
        delta = _delta(task, primary, y, scores, base.scores, config)
        uncertainty["baseline_delta"] = delta
        checks.append(
            policy.comparison_check(
                primary,
                values[primary],
                baseline_values[primary],
                config.baseline_tolerance,
                config.comparison,
                delta["interval"] if config.comparison != "point" else None,
                config.confidence,
                kind="baseline",
                reference_name="baseline",
                gating=config.gate_on_baseline,
            )
        )
        note, baseline_family = baseline_note(model, base.model), family_of(base.model)

    blessed, decision_warnings = policy.decide(checks, config.forced_reason, config.thresholds_configured)
    warnings += decision_warnings
    weights = WEIGHTS_FILE.get(model.manifest.format, "")
    result: dict[str, Any] = {
        "format_version": EVALUATION_FORMAT,
        "blessed": blessed,
        "forced": {"reason": config.forced_reason} if config.forced_reason else None,
        "warnings": warnings,
        "notes": notes,
        "task": task,
        "primary_metric": primary,
        "metrics": values,
        "threshold": threshold,
        "checks": checks,
        "champion": champion,
        "baseline_metrics": baseline_values,
        "slices": slice_result,
        "fairness_gaps": gaps,
        "uncertainty": uncertainty,
        "rows": int(len(y)),
        "label_names": list(model.manifest.label_names),
        "format": model.manifest.format,
        "family": family_of(model),
        "model_sha256": model.manifest.files.get(weights),
        "baseline_family": baseline_family,
        "baseline_note": note,
        "unknown_categories": candidate.unknown,
        "images": [],
    }
    if task == "regression":
        result["residual_quantiles"] = task_metrics.residual_quantiles(y, scores)
    else:
        result["per_class"] = task_metrics.per_class(y, scores, list(model.manifest.label_names))
        result["calibration"] = task_metrics.calibration_bins(y, scores)
        result["confusion_matrix"] = task_metrics.confusion(y, scores, scores.shape[1])
        if scores.shape[1] == 2 and len(np.unique(y)) == 2:
            result["roc"] = task_metrics.roc_points(y, scores[:, 1])
    result = _jsonable(result)
    with tempfile.TemporaryDirectory() as scratch:
        pictures = Path(images_dir or scratch)
        if images_dir or report_html:
            result["images"] = draw_pictures(result, y, scores, pictures)
        if report_html:
            write_text(report_html, html_report(result, pictures))
    if not images_dir:
        result["images"] = []
    write_json(report_json, result)
    write_text(report_md, markdown_report(result))
    return result


def _jsonable(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON has no NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def draw_pictures(result: dict[str, Any], y: np.ndarray, scores: np.ndarray, out_dir: Path) -> list[str]:
    """Writes the evaluation's PNG pictures into ``out_dir`` (:mod:`shipyard.plots`).

    Returns:
        The file names: ``calibration.png`` (classification), ``roc.png`` and ``pr.png`` (binary,
        both classes present), ``residuals.png`` (regression).
    """
    from shipyard import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    values = result["metrics"]
    if result["task"] == "regression":
        plots.residuals(y, scores, out_dir / "residuals.png")
        return ["residuals.png"]
    kind = "positive-class probability" if scores.shape[1] == 2 else "top-class confidence"
    plots.calibration_curve(result["calibration"], out_dir / "calibration.png", f"Calibration ({kind})")
    names = ["calibration.png"]
    if "roc" in result:
        plots.roc_curve(y, scores[:, 1], out_dir / "roc.png", values.get("roc_auc"))
        plots.pr_curve(y, scores[:, 1], out_dir / "pr.png", values.get("pr_auc"))
        names += ["roc.png", "pr.png"]
    return names


def _check_rows(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows = []
    for c in result["checks"]:
        interval = " … ".join(f"{v:.4g}" for v in c.get("interval", [])) or None
        outcome = "pass" if c["passed"] else "FAIL"
        if not c["gating"]:
            outcome += " (reported, not gating)"
        rows.append((c["check"], c["kind"], c["value"], c["threshold"], interval, outcome, c.get("note", "")))
    return rows


CHECK_HEADERS = ("check", "kind", "value", "threshold", "interval", "outcome", "note")


def _summary_lines(result: dict[str, Any]) -> list[str]:
    family = f" ({result['family']})" if result["family"] else ""
    base_family = f" ({result['baseline_family']})" if result["baseline_family"] else ""
    champion = result["champion"]
    lines = [
        f"{result['rows']} test rows, task {result['task']}, model format {result['format']}{family}"
        + (f", baseline{base_family}" if result["baseline_metrics"] is not None else "")
        + (
            f", champion v{champion['version']}"
            if champion and champion["version"]
            else ", champion"
            if champion
            else ""
        )
        + f"; primary metric {result['primary_metric']}."
    ]
    if result["forced"]:
        lines.append(f"FORCE-BLESSED: {result['forced']['reason']}")
    lines += [f"Warning: {w}" for w in result["warnings"]]
    lines += [f"Note: {n}." for n in result["notes"]]
    if result["baseline_note"]:
        lines.append(f"Note: {result['baseline_note']}.")
    if result["unknown_categories"]:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(result["unknown_categories"].items()))
        lines.append(f"Test values outside the training vocabulary (scored as the unknown category): {counts}.")
    t = result["threshold"]
    if t:
        target = f" {t['target']:g}" if t.get("target") is not None else ""
        lines.append(
            f"Decision threshold {t['value']:.4g}, chosen on validation ({t['validation_rows']} rows) for "
            f"{t['objective']}{target} (validation value {t['validation_value']:.4g})."
        )
    u = result["uncertainty"]
    p = u["primary"]
    ci = f"{u['confidence']:.0%} CI"
    lines.append(f"Test {p['metric']} {fmt(p['value'])}, {ci} {fmt(p['interval'][0])} … {fmt(p['interval'][1])}.")
    for key, who in (("champion_delta", "the champion"), ("baseline_delta", "the baseline")):
        d = u[key]
        if d:
            lines.append(
                f"Improvement over {who} in {d['metric']}: {fmt(d['value'])}, {ci} "
                f"{fmt(d['interval'][0])} … {fmt(d['interval'][1])}."
            )
    return lines


def _metric_rows(result: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    champion = (result["champion"] or {}).get("metrics")
    baseline = result["baseline_metrics"]
    headers = ["metric", "candidate"] + (["champion"] if champion is not None else [])
    headers += ["baseline"] if baseline is not None else []
    rows = []
    for k, v in result["metrics"].items():
        row: list[Any] = [k, v]
        if champion is not None:
            row.append(champion.get(k))
        if baseline is not None:
            row.append(baseline.get(k))
        rows.append(tuple(row))
    return headers, rows


def _slice_rows(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    primary = result["primary_metric"]
    rows = []
    for column, entry in result["slices"].items():
        for s in entry["slices"]:
            value = s["metrics"].get(primary) if s["metrics"] else None
            rows.append((column, s["value"], s["rows"], value, s.get("note", "")))
    return rows


def markdown_report(result: dict[str, Any]) -> str:
    """The human report of :func:`evaluate`'s result: the verdict, every check, metrics, slices."""
    out = [f"# Evaluation: {'BLESSED' if result['blessed'] else 'NOT blessed'}\n", "\n\n".join(_summary_lines(result))]
    out += ["\n## Checks\n", markdown_table(CHECK_HEADERS, _check_rows(result)) if result["checks"] else "No checks.\n"]
    headers, rows = _metric_rows(result)
    out += ["\n## Metrics\n", markdown_table(headers, rows)]
    if result.get("per_class"):
        out += [
            "\n## Per class\n",
            markdown_table(
                ["class", "precision", "recall", "f1", "support"],
                [(k, v["precision"], v["recall"], v["f1"], v["support"]) for k, v in result["per_class"].items()],
            ),
        ]
    if result.get("residual_quantiles"):
        out += [
            "\n## Residual quantiles (y − prediction)\n",
            markdown_table(["quantile", "residual"], result["residual_quantiles"].items()),
        ]
    if result["slices"]:
        out += [
            f"\n## Slices ({result['primary_metric']})\n",
            markdown_table(["column", "slice", "rows", result["primary_metric"], "note"], _slice_rows(result)),
            markdown_table(*_gap_table(result)),
        ]
    if result["images"]:
        out += ["\n## Pictures\n", ", ".join(result["images"]) + "\n"]
    return "\n".join(out)


def _gap_table(result: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The fairness gaps as ``(headers, rows)``, for both reports."""
    rows = [(g["column"], g["metric"], g["gap"], g["highest"], g["lowest"]) for g in result["fairness_gaps"]]
    return ["column", "metric", "gap", "highest", "lowest"], rows


def html_report(result: dict[str, Any], pictures: Path) -> str:
    """A self-contained HTML page of the evaluation, its pictures inline (base64 PNG)."""
    import html

    from shipyard import plots

    verdict = "BLESSED" if result["blessed"] else "NOT blessed"
    color = "#2a7" if result["blessed"] else "#c33"
    parts = [
        "<!doctype html><meta charset='utf-8'><title>Evaluation</title>",
        "<style>body{font-family:sans-serif;max-width:1100px}td,th{padding:2px 8px;text-align:left}"
        "table{border-collapse:collapse;margin:8px 0}tr{border-bottom:1px solid #ddd}img{margin:4px}</style>",
        f"<h1>Evaluation: <span style='color:{color}'>{verdict}</span></h1>",
        "".join(f"<p>{html.escape(line)}</p>" for line in _summary_lines(result)),
        "<h2>Checks</h2>",
        html_table(CHECK_HEADERS, _check_rows(result)) if result["checks"] else "<p>No checks.</p>",
        "<h2>Metrics</h2>",
        html_table(*_metric_rows(result)),
    ]
    if result["slices"]:
        parts += [
            f"<h2>Slices ({html.escape(result['primary_metric'])})</h2>",
            html_table(["column", "slice", "rows", result["primary_metric"], "note"], _slice_rows(result)),
            html_table(*_gap_table(result)),
        ]
    if result["images"]:
        parts.append("<h2>Pictures</h2>")
        parts += [
            f"<img alt='{html.escape(name)}' src='{plots.data_uri(pictures / name)}'>" for name in result["images"]
        ]
    return "".join(parts) + "\n"
