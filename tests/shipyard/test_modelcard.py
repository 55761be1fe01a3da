"""Tests for shipyard.modelcard: facts gathered from real artifacts, both renderings, the automatic limitations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.evaluate_model import core as evaluate
from shipyard import modelcard
from shipyard.errors import ConfigError, IntegrityError


@pytest.fixture(scope="module")
def evaluated(baseline_artifacts, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("card")
    evaluate.evaluate(
        str(baseline_artifacts["baseline"]),
        str(baseline_artifacts["test"]),
        str(root / "evaluation.json"),
        str(root / "evaluation.md"),
        evaluate.EvalConfig(),
    )
    return {**baseline_artifacts, "evaluation": root / "evaluation.json"}


def _facts(evaluated, **kwargs):
    return modelcard.gather(
        str(evaluated["baseline"]),
        name="reference",
        version=3,
        evaluation_json=str(evaluated["evaluation"]),
        dataset_dir=str(evaluated["dataset"]),
        test_dir=str(evaluated["test"]),
        **kwargs,
    )


def test_the_card_holds_the_data_hash_the_verdict_and_the_lineage(evaluated):
    from shipyard.artifacts import sha256_file

    lineage = {
        "kfp_run": "run-42",
        "git_commit": "abc123",
        "image": "shipyard:1",
        "parent_version": 2,
        "mlflow_run": "",
    }
    facts = _facts(evaluated, lineage=lineage)
    report = json.loads(Path(evaluated["evaluation"]).read_text())
    assert facts["data"]["sha256"] == sha256_file(Path(evaluated["dataset"]) / "data.parquet")
    assert facts["lineage"] == {"kfp_run": "run-42", "git_commit": "abc123", "image": "shipyard:1", "parent_version": 2}
    md = modelcard.render_markdown(facts)
    assert md.startswith("# Model card: reference version 3\n")
    for heading in ("Model details", "Intended use", "Data", "Evaluation", "Limitations", "Lineage"):
        assert f"## {heading}" in md
    assert facts["data"]["sha256"] in md and "run-42" in md and "abc123" in md
    assert ("BLESSED" if report["blessed"] else "NOT blessed") in md
    primary = report["primary_metric"]
    assert f"| {primary} | {report['metrics'][primary]:.4g} |" in md  # the test metric, as evaluated
    assert "Not stated (model_card.intended_use)" in md


def test_automatic_limitations_follow_the_artifacts(evaluated, tmp_path):
    facts = _facts(evaluated, config=modelcard.CardConfig(min_test_rows=10_000, min_class_share=0.45))
    limits = " ".join(facts["limitations"])
    rows = facts["test"]["rows"]
    assert f"Small test set: {rows} rows" in limits
    assert "Class imbalance" in limits  # the minority class is under 45% of the test rows
    assert "No champion to compare with" in limits  # today's evaluation has no champion
    quiet = _facts(evaluated, config=modelcard.CardConfig(min_test_rows=0, min_class_share=0.0))
    assert not any(s.startswith(("Small test set", "Class imbalance")) for s in quiet["limitations"])

    validation = {
        "summary": {"rows": 10, "errors": 0, "warnings": 1},
        "anomalies": [{"type": "out_of_range", "column": "mean radius", "severity": "warning", "message": "x"}],
    }
    (tmp_path / "validation.json").write_text(json.dumps(validation))
    report = json.loads(Path(evaluated["evaluation"]).read_text())
    report.update(forced={"reason": "hotfix for incident 7"}, champion={"version": 1, "metrics": {}})
    (tmp_path / "evaluation.json").write_text(json.dumps(report))
    facts = modelcard.gather(
        str(evaluated["baseline"]),
        evaluation_json=str(tmp_path / "evaluation.json"),
        validation_json=str(tmp_path / "validation.json"),
        config=modelcard.CardConfig(limitations=("Trained on one hospital's data",)),
    )
    assert facts["limitations"][0] == "Trained on one hospital's data"  # stated first, then automatic
    limits = " ".join(facts["limitations"])
    assert "Drifted columns: mean radius" in limits and "hotfix for incident 7" in limits
    assert "No champion" not in limits


def test_html_escapes_every_value(evaluated):
    facts = _facts(evaluated, config=modelcard.CardConfig(intended_use="<script>alert(1)</script> triage"))
    page = modelcard.render_html(facts)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; triage" in page
    assert page.count("<h2>") == modelcard.render_markdown(facts).count("\n## ")  # the same sections


def test_missing_reports_leave_their_sections_saying_so(evaluated, tmp_path):
    facts = modelcard.gather(str(evaluated["baseline"]), evaluation_json=str(tmp_path / "absent.json"))
    md = modelcard.render_markdown(facts)
    assert "No evaluation report was given." in md and "No dataset artifact was given." in md
    assert "No lineage recorded." in md


def test_write_card_writes_both(evaluated, tmp_path):
    modelcard.write_card(_facts(evaluated), str(tmp_path / "card.md"), str(tmp_path / "card.html"))
    assert (tmp_path / "card.md").read_text().startswith("# Model card")
    assert (tmp_path / "card.html").read_text().startswith("<!doctype html>")


def test_an_altered_model_is_refused(evaluated, copy_artifact):
    model = copy_artifact(evaluated["baseline"])
    weights = next(p for p in model.iterdir() if p.name != "model.json")
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(IntegrityError):
        modelcard.gather(str(model))


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"limitations": ["", "x"]}, "limitations must be a list of non-empty strings"),
        ({"min_class_share": 1.5}, "min_class_share must be in [0, 1)"),
        ({"intended": "x"}, "unknown key(s) 'intended'"),
    ],
)
def test_card_options_are_checked(values, fragment):
    with pytest.raises(ConfigError) as exc:
        modelcard.CardConfig.from_dict(values)
    assert fragment in str(exc.value)


def test_the_card_shows_how_the_candidate_was_chosen_and_quantized(evaluated, tmp_path):
    from components.quantize_model import core as quantize
    from components.train_model import core as train

    summary = train.train(
        str(evaluated["train"]),
        str(evaluated["val"]),
        str(tmp_path / "model"),
        str(tmp_path / "baseline"),
        train.TrainConfig.from_dict({"families": ["gbdt"], "gbdt_max_iter": 20}),
        comparison_json=str(tmp_path / "comparison.json"),
    )
    quantize.quantize(
        str(tmp_path / "model"),
        str(evaluated["val"]),
        str(tmp_path / "quantized"),
        str(tmp_path / "quantize.json"),
        str(tmp_path / "quantize.md"),
        quantize.QuantizeConfig(),
    )
    facts = modelcard.gather(
        str(tmp_path / "quantized"),
        comparison_json=str(tmp_path / "comparison.json"),
        quantize_json=str(tmp_path / "quantize.json"),
    )
    md = modelcard.render_markdown(facts)
    assert "## Candidate selection" in md and f"{summary['candidate']}: {summary['reason']}." in md
    assert "## Quantization" in md and "has no quantized variants; passed through unchanged" in md
    assert "cv loss" in md  # the reference data (400 rows) is cross-validated
