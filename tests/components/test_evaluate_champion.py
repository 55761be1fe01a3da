"""evaluate_model against a champion directory: the champion rule, change thresholds, schemas,
force-bless, thresholds on validation, slices, pictures and the evaluation.json contract.

The champions are real Model artifacts: the mixed-table models of ``mixed_artifacts`` and a linear
model trained by ``train_model``'s own ``train`` on a copy of the splits without one column.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.evaluate_model.core import EvalConfig, evaluate
from shipyard.artifacts import read_dataset, write_dataset
from shipyard.errors import ConfigError, DataValidationError, SchemaMismatchError

FAST = {"n_bootstrap": 200}


def _run(tmp_path: Path, model: Path, test: Path, tag: str = "eval", **kw) -> dict:
    options = {**FAST, **kw.pop("options", {})}
    result = evaluate(
        str(model),
        str(test),
        str(tmp_path / f"{tag}.json"),
        str(tmp_path / f"{tag}.md"),
        EvalConfig.from_dict(options),
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in kw.items()},
    )
    assert json.loads((tmp_path / f"{tag}.json").read_text()) == json.loads(json.dumps(result))
    return result


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict[str, Path]:
    from mixed_artifacts import build_mixed

    return build_mixed(tmp_path_factory.mktemp("mixed"))


def _drop(src: Path, dst: Path, column: str) -> Path:
    df, schema = read_dataset(src)
    from shipyard.artifacts import DatasetSchema

    write_dataset(dst, df.drop(columns=[column]), DatasetSchema(tuple(c for c in schema.columns if c.name != column)))
    return dst


@pytest.fixture(scope="module")
def no_region(mixed, tmp_path_factory) -> dict[str, Path]:
    """Splits without ``region`` and a linear model trained by train_model on them (another input schema)."""
    from components.train_model.core import TrainConfig, train

    root = tmp_path_factory.mktemp("no-region")
    out = {name: _drop(mixed[name], root / name, "region") for name in ("train", "val", "test")}
    train(
        str(out["train"]),
        str(out["val"]),
        str(root / "model"),
        str(root / "baseline"),
        TrainConfig(families=("linear",), candidate="linear"),
    )
    out["linear"] = root / "model"
    return out


def _worse_and_better(tmp_path: Path, mixed) -> tuple[str, str, dict]:
    """The mixed models ordered by test roc_auc: (worse, better, evaluation of worse vs better)."""
    r = _run(tmp_path, mixed["gbdt"], mixed["test"], "order", champion_dir=mixed["linear"])
    worse, better = ("gbdt", "linear") if r["uncertainty"]["champion_delta"]["value"] < 0 else ("linear", "gbdt")
    return worse, better, r


def test_a_candidate_worse_than_the_champion_is_not_blessed_whatever_the_interval(tmp_path, mixed):
    worse, better, _ = _worse_and_better(tmp_path, mixed)
    point = _run(tmp_path, mixed[worse], mixed["test"], "point", champion_dir=mixed[better], champion_version="4")

    (rule,) = [c for c in point["checks"] if c["kind"] == "champion"]
    assert rule["value"] < 0 and rule["passed"] is False and point["blessed"] is False
    assert rule["check"] == "roc_auc vs champion v4 not worse by > 0"
    assert point["champion"]["version"] == "4" and point["champion"]["compared_on"] == "all features"
    assert point["champion"]["metrics"]["roc_auc"] == pytest.approx(rule["reference"])
    low, high = point["uncertainty"]["champion_delta"]["interval"]
    assert low <= high
    # the opt-in bootstrap rule judges the interval's upper end instead
    boot = _run(
        tmp_path,
        mixed[worse],
        mixed["test"],
        "boot",
        champion_dir=mixed[better],
        options={"comparison": "bootstrap"},
    )
    (brule,) = [c for c in boot["checks"] if c["kind"] == "champion"]
    assert brule["interval"] == [low, high] and brule["passed"] is (high >= 0)
    # the better model against the worse one as champion passes the default rule
    better_run = _run(tmp_path, mixed[better], mixed["test"], "better", champion_dir=mixed[worse])
    assert better_run["blessed"] is True and "no thresholds configured" in better_run["warnings"][0]


@pytest.mark.parametrize(
    ("rule", "passed"),
    [
        ({"min_absolute_change": 0.0}, True),
        ({"min_absolute_change": 0.01}, False),
        ({"min_relative_change": 0.0}, True),
        ({"min_relative_change": 0.5}, False),
    ],
)
def test_change_thresholds_against_the_same_model_as_champion(tmp_path, mixed, rule, passed):
    r = _run(
        tmp_path,
        mixed["gbdt"],
        mixed["test"],
        champion_dir=mixed["gbdt"],
        options={"change_thresholds": {"roc_auc": rule}},
    )
    (change,) = [c for c in r["checks"] if c["kind"] == "change"]
    assert change["value"] == 0.0 and change["passed"] is passed and r["blessed"] is passed
    assert r["champion"]["same_model"] is True and r["warnings"] == []


def test_no_champion_means_value_thresholds_only_and_says_so(tmp_path, mixed):
    r = _run(
        tmp_path,
        mixed["gbdt"],
        mixed["test"],
        options={"thresholds": {"roc_auc": {"min": 0.5}}, "change_thresholds": {"roc_auc": {"min_absolute_change": 0}}},
    )
    assert r["champion"] is None and r["blessed"] is True
    assert [c["kind"] for c in r["checks"]] == ["value"]
    assert any("no champion: value thresholds only" in n for n in r["notes"])
    assert any("change thresholds on ['roc_auc'] were not applied" in w for w in r["warnings"])
    assert "no champion: value thresholds only" in (tmp_path / "eval.md").read_text()


def test_force_bless_overrides_failed_checks_and_is_recorded(tmp_path, mixed):
    r = _run(
        tmp_path,
        mixed["gbdt"],
        mixed["test"],
        options={"thresholds": {"roc_auc": {"min": 1.01}}, "force_bless": {"reason": "hotfix INC-42"}},
    )
    assert r["blessed"] is True and r["forced"] == {"reason": "hotfix INC-42"}
    assert r["checks"][0]["passed"] is False
    assert any("force-blessed despite failed check(s) ['roc_auc ≥ 1.01']: hotfix INC-42" in w for w in r["warnings"])
    assert "FORCE-BLESSED: hotfix INC-42" in (tmp_path / "eval.md").read_text()


@pytest.mark.parametrize(
    ("force", "fragment"),
    [
        ({"reason": ""}, "force_bless.reason must be a non-empty text"),
        ({"reason": "   "}, "force_bless.reason must be a non-empty text"),
        ({"why": "x"}, "force_bless: expected {'reason': '...'}"),
    ],
)
def test_force_bless_needs_a_reason(force, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("{", r"\{")):
        EvalConfig.from_dict({"force_bless": force})


def test_a_champion_with_another_schema_is_a_typed_error_or_compared_on_common_features(tmp_path, mixed, no_region):
    with pytest.raises(SchemaMismatchError, match=r"candidate only \['region'\], champion only \[\]") as exc:
        _run(tmp_path, mixed["gbdt"], mixed["test"], champion_dir=no_region["linear"], champion_version="2")
    assert "compare_on_common_features" in str(exc.value) and "champion v2" in str(exc.value)
    assert not (tmp_path / "eval.json").exists()

    r = _run(
        tmp_path,
        mixed["gbdt"],
        mixed["test"],
        champion_dir=no_region["linear"],
        options={"compare_on_common_features": True},
    )
    assert r["champion"]["compared_on"] == "common features"
    assert r["champion"]["schema_difference"]["champion_only"] == []
    assert r["champion"]["schema_difference"]["candidate_only"] == ["region"]
    assert any("compared on the common features" in n for n in r["notes"])
    # each model scores with its own features: the champion's metrics are its own
    from serving.formats import load_model
    from shipyard import metrics as task_metrics

    df, _ = read_dataset(mixed["test"])
    own = task_metrics.compute("binary", df["target"].to_numpy(), load_model(no_region["linear"]).score_frame(df))
    assert {k: r["champion"]["metrics"][k] for k in own} == pytest.approx(own)


def test_a_test_split_missing_a_feature_of_the_champion_is_refused(tmp_path, mixed, no_region):
    with pytest.raises(DataValidationError, match=r"champion .* cannot score the test split: .*\['region'\]"):
        _run(
            tmp_path,
            no_region["linear"],
            no_region["test"],
            champion_dir=mixed["linear"],
            options={"compare_on_common_features": True},
        )


def test_a_test_split_without_the_label_is_a_data_validation_error(tmp_path, mixed):
    broken = _drop(mixed["test"], tmp_path / "nolabel", "target")
    with pytest.raises(DataValidationError, match=r"label column 'target' missing"):
        _run(tmp_path, mixed["gbdt"], broken)


def test_the_binary_threshold_is_chosen_on_validation(tmp_path, mixed):
    from serving.formats import load_model
    from shipyard import metrics as task_metrics

    r = _run(tmp_path, mixed["linear"], mixed["test"], val_dir=mixed["val"], options={"threshold_objective": "f1"})
    t = r["threshold"]
    assert t["chosen_on"] == "validation" and t["objective"] == "f1" and 0 < t["value"] < 1
    model = load_model(mixed["linear"])
    val, _ = read_dataset(mixed["val"])
    best = task_metrics.choose_threshold(val["target"].to_numpy(), model.score_frame(val)[:, 1], "f1")
    assert t["value"] == best[0] and t["validation_value"] == pytest.approx(best[1])
    test, _ = read_dataset(mixed["test"])
    at = task_metrics.threshold_metrics(test["target"].to_numpy(), model.score_frame(test)[:, 1], t["value"])
    assert t["test_metrics"] == pytest.approx(at)
    assert r["metrics"]["f1_at_threshold"] == pytest.approx(at["f1"])

    strict = _run(
        tmp_path,
        mixed["linear"],
        mixed["test"],
        "strict",
        val_dir=mixed["val"],
        options={"threshold_objective": "min_precision", "threshold_target": 0.9},
    )
    if strict["threshold"] is not None:
        assert strict["threshold"]["value"] >= t["value"] - 1e-12  # a precision target moves the cut up or keeps it

    no_val = _run(tmp_path, mixed["linear"], mixed["test"], "noval")
    assert no_val["threshold"] is None and "f1_at_threshold" not in no_val["metrics"]


def test_slices_fairness_gaps_and_their_gate(tmp_path, mixed):
    r = _run(
        tmp_path,
        mixed["gbdt"],
        mixed["test"],
        options={"slices": ["region", "age"], "min_slice_rows": 15, "fairness": {"accuracy": {"max_gap": 0.0}}},
    )
    region, age = r["slices"]["region"], r["slices"]["age"]
    df, _ = read_dataset(mixed["test"])
    assert region["kind"] == "categorical" and age["kind"] == "numeric"
    assert sum(s["rows"] for s in region["slices"]) == len(df) == sum(s["rows"] for s in age["slices"])
    assert "null" in [s["value"] for s in region["slices"]]
    for s in region["slices"] + age["slices"]:
        assert (s["metrics"] is None) is (s["rows"] < 15)
    gaps = {(g["column"], g["metric"]): g for g in r["fairness_gaps"]}
    scored = [s["metrics"]["accuracy"] for s in region["slices"] if s["metrics"]]
    assert gaps[("region", "accuracy")]["gap"] == pytest.approx(max(scored) - min(scored))
    fairness = [c for c in r["checks"] if c["kind"] == "fairness"]
    assert len(fairness) == 2 and r["blessed"] is (all(c["passed"] for c in fairness))
    assert any(not c["passed"] for c in fairness)  # a zero gap allowed: real slices differ


def test_an_unknown_slice_column_names_it_and_the_available_columns(tmp_path, mixed):
    with pytest.raises(
        ConfigError, match=r"slices: column\(s\) \['regoin'\] not in the test split .*available columns: \[.*'region'"
    ):
        _run(tmp_path, mixed["gbdt"], mixed["test"], options={"slices": ["regoin"]})
    assert not (tmp_path / "eval.json").exists()


def test_pictures_and_the_html_report(tmp_path, mixed):
    r = _run(
        tmp_path,
        mixed["gbdt"],
        mixed["test"],
        val_dir=mixed["val"],
        report_html=tmp_path / "eval.html",
        images_dir=tmp_path / "figures",
    )
    assert r["images"] == ["calibration.png", "roc.png", "pr.png"]
    for name in r["images"]:
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "eval.html").read_text()
    assert page.count("src='data:image/png;base64,") == 3 and "Evaluation: " in page and "<h2>Checks</h2>" in page


def test_evaluation_json_carries_the_contract_keys(tmp_path, mixed):
    r = _run(
        tmp_path,
        mixed["gbdt"],
        mixed["test"],
        baseline_dir=mixed["linear"],
        champion_dir=mixed["linear"],
        champion_version="1",
        val_dir=mixed["val"],
        options={"thresholds": {"roc_auc": {"min": 0.5}}},
    )
    for key in (
        "blessed", "forced", "warnings", "task", "primary_metric", "metrics", "threshold", "checks", "champion",
        "baseline_metrics", "slices", "uncertainty", "rows", "label_names", "format", "family", "images",
        "model_sha256",
    ):  # fmt: skip
        assert key in r, key
    for check in r["checks"]:
        assert {"check", "metric", "value", "threshold", "passed", "kind", "gating"} <= set(check)
    assert {c["kind"] for c in r["checks"]} == {"value", "champion", "baseline"}
    assert set(r["uncertainty"]) >= {"primary", "champion_delta", "baseline_delta", "confidence"}
    markdown = (tmp_path / "eval.md").read_text()
    for check in r["checks"]:
        assert check["check"] in markdown


def test_regression_metrics_residuals_and_picture(tmp_path):
    from components.ingest_data.core import IngestConfig, ingest
    from components.reference import _baseline_only
    from components.split_data.core import SplitConfig, split

    ingest("sklearn:diabetes", str(tmp_path / "ds"), IngestConfig())
    parts = [tmp_path / p for p in ("train", "val", "test")]
    split(str(tmp_path / "ds"), *map(str, parts), SplitConfig())
    _baseline_only(parts[0], parts[1], tmp_path / "model")

    r = _run(
        tmp_path,
        tmp_path / "model",
        parts[2],
        images_dir=tmp_path / "figures",
        options={"thresholds": {"mape": {"max": 1.0}, "r2": {"min": 0.0}}},
    )
    assert r["task"] == "regression" and r["primary_metric"] == "rmse"
    assert {"rmse", "mae", "r2", "mape"} <= set(r["metrics"]) and r["threshold"] is None
    q = r["residual_quantiles"]
    assert list(q) == ["q05", "q25", "q50", "q75", "q95"] and list(q.values()) == sorted(q.values())
    assert r["images"] == ["residuals.png"] and (tmp_path / "figures" / "residuals.png").stat().st_size > 0
    assert np.isfinite(r["uncertainty"]["primary"]["interval"]).all()


def test_a_lookup_that_found_no_champion_is_a_warning_naming_it(baseline_artifacts, tmp_path):
    looked = "@champion of 'bc' in sqlite:///nowhere/mlflow.db"
    result = evaluate(
        str(baseline_artifacts["baseline"]),
        str(baseline_artifacts["test"]),
        str(tmp_path / "e.json"),
        str(tmp_path / "e.md"),
        EvalConfig(),
        champion_lookup=looked,
    )
    assert result["champion"] is None
    assert any(looked in w and "value thresholds alone" in w for w in result["warnings"])
