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
    result, report = _evaluate(tmp_path, artifacts["quantized"], artifacts["test"], artifacts["baseline"])

    rows = len(read_dataset(artifacts["test"])[0])
    assert report == json.loads(json.dumps(result))
    assert result["task"] == "binary" and result["primary_metric"] == "roc_auc" and result["rows"] == rows
    assert set(result["metrics"]) == {"accuracy", "f1_macro", "log_loss", "roc_auc"}
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
    assert result["blessed"] is all(c["passed"] for c in result["checks"])

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
        thresholds={"log_loss": {"max": 5.0}, "accuracy": {"min": 0.5, "max": 0.1}},
    )
    checks = {c["check"]: c for c in result["checks"]}
    assert checks["log_loss ≤ 5"]["passed"] is True
    assert checks["accuracy ≥ 0.5"]["passed"] is True and checks["accuracy ≤ 0.1"]["passed"] is False
    assert result["blessed"] is False


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"thresholds": {"r2": {"min": 0.0}}}, "threshold metric(s) ['r2'] do not apply to a binary task"),
        ({"primary_metric": "rmse"}, "primary_metric 'rmse' is not a binary metric"),
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
        ({"comparison": "ttest"}, "comparison must be one of bootstrap, noninferiority, point"),
        ({"confidence": 1.0}, "confidence must be in [0.5, 1)"),
        ({"n_bootstrap": 10}, "n_bootstrap must be >= 100"),
        ({"baseline_tolerance": -0.1}, "baseline_tolerance must be >= 0"),
        ({"tolerance": 0.1}, "unknown key(s) 'tolerance'"),
        ({"thresholds": {"roc-auc": {"min": 0.9}}}, "thresholds: unknown metric(s) ['roc-auc']"),
        ({"thresholds": {"roc_auc": {"min": "0.9"}}}, "thresholds.roc_auc: bounds must be numbers"),
        ({"thresholds": {"roc_auc": {"min": True}}}, "thresholds.roc_auc: bounds must be numbers"),
        ({"primary_metric": "auc"}, "primary_metric 'auc' is not one of"),
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

    result, _ = _evaluate(tmp_path, tmp_path / "baseline", tmp_path / "test", tmp_path / "mlp", comparison="point")

    assert result["task"] == "multiclass" and result["primary_metric"] == "accuracy"
    assert result["label_names"] == [0, 1, 2] and "roc" not in result
    matrix = result["confusion_matrix"]
    assert len(matrix) == 3 and all(len(r) == 3 for r in matrix)
    assert sum(map(sum, matrix)) == result["rows"] == len(read_dataset(tmp_path / "test")[0])
    assert [c["check"] for c in result["checks"]][0] == "accuracy ≥ 0.7"
