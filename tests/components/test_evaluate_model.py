"""Tests for components.evaluate_model.core: the report, thresholds and the baseline comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.evaluate_model.core import EvalConfig, evaluate
from components.train_model.core import load_split, save_sklearn_model
from shipyard.artifacts import read_dataset
from shipyard.errors import ConfigError

FAST = {"n_bootstrap": 200}


def _evaluate(
    tmp_path: Path, model: Path, test: Path, baseline: Path | None = None, tag: str = "eval", **values
) -> tuple[dict, dict]:
    report = tmp_path / f"{tag}.json"
    result = evaluate(
        str(model),
        str(test),
        str(report),
        str(tmp_path / f"{tag}.md"),
        EvalConfig.from_dict({**FAST, **values}),
        str(baseline) if baseline else None,
    )
    return result, json.loads(report.read_text())


@pytest.fixture(scope="module")
def constant_model(baseline_artifacts, tmp_path_factory) -> Path:
    """A DummyClassifier artifact that predicts the class prior for every row."""
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import make_pipeline

    data = load_split(str(baseline_artifacts["train"]))
    model = make_pipeline(DummyClassifier(strategy="prior")).fit(data.x, data.y)
    path = tmp_path_factory.mktemp("dummy") / "model"
    save_sklearn_model(str(path), model, data, {}, {"role": "test-dummy"})
    return path


@pytest.fixture(scope="module")
def one_feature_model(baseline_artifacts, tmp_path_factory) -> Path:
    """A logistic regression on the first feature alone: its scores rank the rows as that feature does."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    data = load_split(str(baseline_artifacts["train"]))
    model = make_pipeline(ColumnTransformer([("one", "passthrough", [0])]), LogisticRegression()).fit(data.x, data.y)
    path = tmp_path_factory.mktemp("one-feature") / "model"
    save_sklearn_model(str(path), model, data, {}, {"role": "test-one-feature"})
    return path


def _baseline_check(result: dict) -> dict:
    (row,) = [c for c in result["checks"] if "vs baseline" in c["check"]]
    return row


@pytest.mark.slow
def test_report_has_metrics_checks_confusion_matrix_and_roc(tmp_path, artifacts):
    result, report = _evaluate(
        tmp_path,
        artifacts["quantized"],
        artifacts["test"],
        artifacts["baseline"],
        comparison="bootstrap",
        thresholds={"roc_auc": {"min": 0.8}},
    )

    rows = len(read_dataset(artifacts["test"])[0])
    assert report == json.loads(json.dumps(result))
    assert result["task"] == "binary" and result["primary_metric"] == "roc_auc" and result["rows"] == rows
    assert {"accuracy", "f1_macro", "log_loss", "roc_auc", "pr_auc", "brier", "ece"} <= set(result["metrics"])
    assert set(result["baseline_metrics"]) == set(result["metrics"])
    assert result["metrics"]["roc_auc"] > 0.9 and result["label_names"] == [0, 1]
    assert result["format"] in ("onnx", "torchscript")

    matrix = result["confusion_matrix"]
    assert len(matrix) == 2 and all(len(r) == 2 for r in matrix)
    assert sum(map(sum, matrix)) == rows
    assert (matrix[0][0] + matrix[1][1]) / rows == pytest.approx(result["metrics"]["accuracy"])

    roc = result["roc"]
    assert 2 <= len(roc) <= 50
    assert (roc[0]["fpr"], roc[-1]["fpr"], roc[-1]["tpr"]) == (0.0, 1.0, 1.0)
    assert all(0 <= p["fpr"] <= 1 and 0 <= p["tpr"] <= 1 for p in roc)
    assert [p["fpr"] for p in roc] == sorted(p["fpr"] for p in roc)

    checks = {c["check"]: c for c in result["checks"]}
    assert checks["roc_auc ≥ 0.8"]["passed"] is True
    baseline = _baseline_check(result)
    assert "upper end of 95% CI" in baseline["check"] and len(baseline["interval"]) == 2
    # The observed improvement, and an interval around it (a percentile interval need not contain the
    # observed value: whether it does depends on the trained models; test_storage_tasks_metrics checks that).
    primary = result["primary_metric"]
    assert baseline["value"] == pytest.approx(result["metrics"][primary] - result["baseline_metrics"][primary])
    assert baseline["interval"][0] <= baseline["interval"][1]
    assert result["blessed"] is all(c["passed"] for c in result["checks"] if c["gating"])
    assert baseline["gating"] is False and baseline["kind"] == "baseline"

    markdown = (tmp_path / "eval.md").read_text()
    assert markdown.startswith("# Evaluation: ") and f"{rows} test rows" in markdown and "roc_auc" in markdown


def test_unreachable_threshold_is_not_blessed(tmp_path, baseline_artifacts):
    result, _ = _evaluate(
        tmp_path, baseline_artifacts["baseline"], baseline_artifacts["test"], thresholds={"roc_auc": {"min": 1.01}}
    )

    assert result["blessed"] is False
    (check,) = result["checks"]
    assert check["check"] == "roc_auc ≥ 1.01" and check["passed"] is False
    assert check["value"] == result["metrics"]["roc_auc"]
    assert "NOT blessed" in (tmp_path / "eval.md").read_text()


def test_max_threshold(tmp_path, baseline_artifacts):
    result, _ = _evaluate(
        tmp_path,
        baseline_artifacts["baseline"],
        baseline_artifacts["test"],
        thresholds={"log_loss": {"max": 5.0}, "accuracy": {"min": 0.5}, "f1_macro": {"max": 0.1}},
    )
    checks = {c["check"]: c for c in result["checks"]}
    assert checks["log_loss ≤ 5"]["passed"] is True
    assert checks["accuracy ≥ 0.5"]["passed"] is True and checks["f1_macro ≤ 0.1"]["passed"] is False
    assert result["blessed"] is False


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"thresholds": {"r2": {"min": 0.0}}}, "thresholds: metric(s) ['r2'] do not apply to a binary task; available"),
        ({"change_thresholds": {"mape": {"min_absolute_change": 0}}}, "change_thresholds: metric(s) ['mape']"),
        ({"slices": ["mean radius"], "fairness": {"rmse": {"max_gap": 1}}}, "fairness: metric(s) ['rmse']"),
        ({"primary_metric": "rmse"}, "primary_metric 'rmse' is not a binary metric; available: ['accuracy',"),
    ],
)
def test_metrics_of_another_task_are_config_errors(tmp_path, baseline_artifacts, values, fragment):
    with pytest.raises(ConfigError) as exc:
        _evaluate(tmp_path, baseline_artifacts["baseline"], baseline_artifacts["test"], **values)
    assert fragment in str(exc.value)
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize("comparison", ["point", "bootstrap", "noninferiority"])
def test_clearly_worse_candidate_is_not_blessed(tmp_path, baseline_artifacts, constant_model, comparison):
    result, _ = _evaluate(
        tmp_path,
        constant_model,
        baseline_artifacts["test"],
        baseline_artifacts["baseline"],
        comparison=comparison,
        thresholds={"accuracy": {"min": 0.0}},
        gate_on_baseline=True,
    )

    assert result["metrics"]["roc_auc"] == pytest.approx(0.5)
    assert result["blessed"] is False
    threshold, baseline = result["checks"]
    assert threshold["passed"] is True
    assert baseline["passed"] is False and baseline["value"] < -0.3
    if comparison == "point":
        assert "interval" not in baseline and "CI" not in baseline["check"]
    else:
        assert baseline["interval"][1] < -0.01


def test_noninferiority_is_stricter_than_bootstrap(tmp_path, baseline_artifacts, constant_model, one_feature_model):
    """With the tolerance inside the improvement's interval, only the lenient mode passes.

    The class prior against a one-feature model: their scores order the rows as nothing / one feature
    does, so every resample's ROC AUC, and the interval, come out the same on every machine. The
    tolerance is read off that interval (its midpoint), not tuned to one trained model.
    """

    def check(mode: str, tolerance: float) -> dict:
        result, _ = _evaluate(
            tmp_path,
            constant_model,
            baseline_artifacts["test"],
            one_feature_model,
            tag=f"{mode}-{tolerance}",
            comparison=mode,
            baseline_tolerance=tolerance,
        )
        return _baseline_check(result)

    low, high = check("bootstrap", 0.0)["interval"]
    assert low < high < 0, "a worse candidate and an interval with a width: the premise of this test"
    tolerance = -(low + high) / 2
    lenient, strict = check("bootstrap", tolerance), check("noninferiority", tolerance)
    assert lenient["interval"] == strict["interval"] == [low, high]
    assert low < -tolerance <= high
    assert lenient["passed"] is True and strict["passed"] is False


@pytest.mark.parametrize("comparison", ["point", "bootstrap", "noninferiority"])
def test_identical_models_are_blessed(tmp_path, baseline_artifacts, comparison):
    result, _ = _evaluate(
        tmp_path,
        baseline_artifacts["baseline"],
        baseline_artifacts["test"],
        baseline_artifacts["baseline"],
        comparison=comparison,
    )

    assert result["blessed"] is True
    baseline = _baseline_check(result)
    assert baseline["passed"] is True and baseline["value"] == 0.0
    assert result["metrics"] == result["baseline_metrics"]


def test_baseline_comparison_is_reversed_for_the_dummy_as_baseline(tmp_path, baseline_artifacts, constant_model):
    result, _ = _evaluate(
        tmp_path, baseline_artifacts["baseline"], baseline_artifacts["test"], constant_model, comparison="point"
    )
    baseline = _baseline_check(result)
    assert baseline["passed"] is True and baseline["value"] > 0.3


def test_lower_is_better_primary_metric(tmp_path, baseline_artifacts, constant_model):
    result, _ = _evaluate(
        tmp_path,
        constant_model,
        baseline_artifacts["test"],
        baseline_artifacts["baseline"],
        comparison="point",
        primary_metric="log_loss",
        thresholds={"accuracy": {"min": 0.0}},
    )
    baseline = _baseline_check(result)
    assert result["primary_metric"] == "log_loss"
    assert baseline["value"] == pytest.approx(result["baseline_metrics"]["log_loss"] - result["metrics"]["log_loss"])
    assert baseline["value"] < 0 and baseline["passed"] is False


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"thresholds": {"roc_auc": {"minimum": 0.9}}}, "thresholds.roc_auc: expected {'min': x}"),
        ({"thresholds": {"roc_auc": 0.9}}, "thresholds.roc_auc"),
        ({"thresholds": {"roc_auc": {}}}, "thresholds.roc_auc"),
        ({"thresholds": ["roc_auc"]}, "'thresholds' must be dict"),
        ({"comparison": "ttest"}, "comparison must be one of point, bootstrap, noninferiority"),
        ({"confidence": 1.0}, "confidence must be in [0.5, 1)"),
        ({"n_bootstrap": 10}, "n_bootstrap must be >= 100"),
        ({"baseline_tolerance": -0.1}, "baseline_tolerance must be >= 0"),
        ({"tolerance": 0.1}, "unknown key(s) 'tolerance'"),
        ({"thresholds": {"roc-auc": {"min": 0.9}}}, "thresholds: unknown metric(s) ['roc-auc']"),
        ({"thresholds": {"roc_auc": {"min": "0.9"}}}, "thresholds.roc_auc: bounds must be numbers"),
        ({"thresholds": {"roc_auc": {"min": True}}}, "thresholds.roc_auc: bounds must be numbers"),
        ({"primary_metric": "auc"}, "primary_metric 'auc' is not one of"),
        ({"thresholds": {"roc_auc": {"min": 0.9, "max": 0.1}}}, "min 0.9 is above max 0.1: no value could pass"),
        ({"change_thresholds": {"r2": {"min_relative_change": 1.5}}}, "min_relative_change must be in [0, 1]"),
    ],
)
def test_eval_config_rejects_bad_values(values, fragment):
    with pytest.raises(ConfigError) as exc:
        EvalConfig.from_dict(values)
    assert fragment in str(exc.value)


def test_multiclass_report_has_a_square_confusion_matrix_and_no_roc(tmp_path):
    from components.ingest_data.core import IngestConfig, ingest
    from components.split_data.core import SplitConfig, split
    from components.train_model.core import TrainConfig, train

    ingest("sklearn:wine", str(tmp_path / "ds"), IngestConfig())
    parts = [str(tmp_path / p) for p in ("train", "val", "test")]
    split(str(tmp_path / "ds"), *parts, SplitConfig())
    train(parts[0], parts[1], str(tmp_path / "mlp"), str(tmp_path / "baseline"), TrainConfig(max_epochs=2, width=8))

    result, _ = _evaluate(
        tmp_path,
        tmp_path / "baseline",
        tmp_path / "test",
        tmp_path / "mlp",
        comparison="point",
        thresholds={"accuracy": {"min": 0.7}},
    )

    assert result["task"] == "multiclass" and result["primary_metric"] == "accuracy"
    assert result["label_names"] == [0, 1, 2] and "roc" not in result
    matrix = result["confusion_matrix"]
    assert len(matrix) == 3 and all(len(r) == 3 for r in matrix)
    assert sum(map(sum, matrix)) == result["rows"] == len(read_dataset(tmp_path / "test")[0])
    assert [c["check"] for c in result["checks"]][0] == "accuracy ≥ 0.7"


# --- a mixed-type table: raw rows through each model's own preprocessing -----------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict[str, Path]:
    from mixed_artifacts import build_mixed

    return build_mixed(tmp_path_factory.mktemp("mixed"))


def test_a_mixed_type_candidate_is_scored_on_raw_rows_as_it_is_served(tmp_path, mixed):
    import numpy as np

    from serving.formats import load_model
    from shipyard import metrics as task_metrics

    result, _ = _evaluate(tmp_path, mixed["gbdt"], mixed["test"], mixed["linear"])

    df, _ = read_dataset(mixed["test"])
    assert df["age"].isna().any() and df["region"].isna().any() and (df["plan"] == "enterprise").any()
    for key, metrics in (("gbdt", result["metrics"]), ("linear", result["baseline_metrics"])):
        model = load_model(mixed[key])
        scores = model.score_frame(df)  # the server's path: the model's own fitted preprocessing
        expected = task_metrics.compute("binary", df["target"].to_numpy(), scores)
        assert {k: metrics[k] for k in expected} == expected
        assert np.isfinite(scores).all()
    assert result["metrics"]["roc_auc"] > 0.8 and result["baseline_metrics"]["roc_auc"] > 0.8
    assert (result["family"], result["baseline_family"], result["baseline_note"]) == ("gbdt", "linear", "")
    unseen = int((df["plan"] == "enterprise").sum()) + int((df["plan"] == "legacy").sum())
    assert result["unknown_categories"] == {"plan": unseen}
    markdown = (tmp_path / "eval.md").read_text()
    assert "model format sklearn-skops (gbdt), baseline (linear)" in markdown
    assert f"unknown category): plan: {unseen}" in markdown


def test_the_baseline_as_candidate_gets_a_note_and_a_sane_comparison(tmp_path, mixed):
    result, report = _evaluate(tmp_path, mixed["linear"], mixed["test"], mixed["linear"])

    check = _baseline_check(result)
    assert check["value"] == 0.0 and check["passed"] is True
    assert result["uncertainty"]["baseline_delta"]["interval"] == [0.0, 0.0]
    assert result["metrics"] == result["baseline_metrics"]
    assert "the candidate is the baseline itself" in result["baseline_note"]
    assert report["baseline_note"] == result["baseline_note"]
    assert "Note: the candidate is the baseline itself" in (tmp_path / "eval.md").read_text()
    # the thresholds still decide
    result, _ = _evaluate(
        tmp_path, mixed["linear"], mixed["test"], mixed["linear"], tag="strict", thresholds={"roc_auc": {"min": 0.999}}
    )
    assert result["blessed"] is False and _baseline_check(result)["passed"] is True


def test_two_models_of_one_family_are_compared_with_a_note(tmp_path, mixed):
    from mixed_artifacts import KINDS, LABEL, write_model
    from sklearn.linear_model import LogisticRegression

    from serving.preprocess import Preprocessing

    train, schema = read_dataset(mixed["train"])
    prep = Preprocessing.fit(train, KINDS, numeric="standard", categorical="onehot")
    weak = LogisticRegression(C=0.001).fit(prep.transform_frame(train).x, train[LABEL].to_numpy())
    other = write_model(tmp_path / "other-linear", weak, prep, schema, "linear")

    result, _ = _evaluate(tmp_path, other, mixed["test"], mixed["linear"], comparison="point")

    assert "both of the linear family" in result["baseline_note"]
    assert result["metrics"] != result["baseline_metrics"]


def _broken_test_split(tmp_path: Path, mixed: dict[str, Path], change) -> Path:
    from shipyard.artifacts import write_dataset

    df, schema = read_dataset(mixed["test"])
    change(df)
    write_dataset(tmp_path / "broken", df, schema)
    return tmp_path / "broken"


def _set(column: str, row: int, value):
    def change(df):
        if value is None or isinstance(value, str):
            df[column] = df[column].astype(object)
        df.loc[row, column] = value

    return change


def _as_text(column: str):
    """The column as text, as a CSV export without types gives it (nulls stay null)."""

    def change(df):
        df[column] = df[column].map(lambda v: None if v != v else f"{v:.1f}" if isinstance(v, float) else str(v))

    return change


def _text_with(column: str, row: int, value: str):
    """The column as text, with ``value`` in ``row``."""

    def change(df):
        _as_text(column)(df)
        df.loc[row, column] = value

    return change


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (_as_text("age"), r"feature 'age' is '[0-9.]+' in row \d+; expected a number"),
        (_set("tenure", 2, None), r"feature 'tenure' is null in row 2; expected a number"),
        # "True"/"false" text is a boolean (V2 BYTES carry booleans so); other text is not
        (_text_with("autopay", 3, "yes"), r"feature 'autopay' is 'yes' in row 3; expected true or false"),
        (lambda df: df.drop(columns=["plan"], inplace=True), r"missing feature column\(s\) \['plan'\]"),
        (_set("target", 6, None), r"label 'target' is null in 1 row\(s\), first row 6"),
        (_set("target", 7, 2), r"label 'target' has classes \[2\] unknown to the model"),
    ],
)
def test_bad_test_data_is_a_typed_error_naming_the_column(tmp_path, mixed, change, pattern):
    from shipyard.errors import DataValidationError

    broken = _broken_test_split(tmp_path, mixed, change)
    with pytest.raises(DataValidationError, match=pattern) as exc:
        _evaluate(tmp_path, mixed["linear"], broken)
    assert str(exc.value).startswith(f"{broken}: ")
    assert not (tmp_path / "eval.json").exists()
