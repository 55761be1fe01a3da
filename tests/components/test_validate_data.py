"""Tests for components.validate_data.core: infer/enforce, the anomaly table, severities, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.validate_data.core import ANOMALY_SEVERITY, ValidateConfig, load_schema, validate
from shipyard.artifacts import infer_schema, write_dataset
from shipyard.errors import ConfigError, DataValidationError

N = 60


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": np.arange(N),
            "x": rng.normal(size=N),
            "count": rng.integers(0, 10, size=N),
            "color": rng.choice(["red", "green", "blue"], size=N),
            "target": np.arange(N) % 2,
        }
    )


def _write(path: Path, df: pd.DataFrame) -> str:
    write_dataset(path, df, infer_schema(df, "target", ("id",)))
    return str(path)


def _run(
    tmp_path: Path,
    df: pd.DataFrame,
    config: ValidateConfig | None = None,
    schema_in: str | None = None,
    tag: str = "run",
) -> tuple[dict, dict]:
    dataset = _write(tmp_path / f"{tag}-data", df)
    report = tmp_path / f"{tag}.json"
    summary = validate(
        dataset,
        str(tmp_path / f"{tag}-schema"),
        str(report),
        str(tmp_path / f"{tag}.md"),
        config or ValidateConfig(model_ready=False),
        schema_in,
    )
    return summary, json.loads(report.read_text())


@pytest.fixture
def inferred(tmp_path) -> str:
    """The schema artifact inferred from the unmodified frame."""
    summary, _ = _run(tmp_path, _frame(), tag="reference")
    assert summary["anomalies"] == 0
    return str(tmp_path / "reference-schema")


def test_infer_then_enforce_round_trip_has_no_anomalies(tmp_path, inferred):
    schema = load_schema(inferred)
    assert set(schema["columns"]) == {"id", "x", "count", "color", "target"}
    assert schema["columns"]["color"] == {
        "kind": "string",
        "role": "feature",
        "feature_kind": "categorical",
        "nullable": False,
        "max_null_fraction": 0.0,
        "domain": ["blue", "green", "red"],
    }
    assert schema["columns"]["id"]["role"] == "id" and schema["columns"]["target"]["role"] == "label"
    assert schema["columns"]["x"]["kind"] == "float" and schema["columns"]["count"]["kind"] == "int"
    assert schema["columns"]["x"]["feature_kind"] == "numeric" and "feature_kind" not in schema["columns"]["id"]

    summary, report = _run(tmp_path, _frame(), ValidateConfig(model_ready=False), inferred, tag="enforce")

    assert summary == {"rows": N, "columns": 5, "anomalies": 0, "errors": 0, "warnings": 0, "profile": True}
    assert report["anomalies"] == []
    assert json.loads((tmp_path / "enforce-schema" / "schema.json").read_text()) == schema
    assert "No anomalies." in (tmp_path / "enforce.md").read_text()


def _strings_in_x(df):
    df["x"] = df["x"].map(lambda v: f"{v:.3f}")
    df.loc[0, "x"] = "n/a"
    return df


def _set(column, row, value):
    def modify(df):
        df.loc[row, column] = value
        return df

    return modify


ANOMALY_CASES = {
    # case: (modify the frame, expected {(type, column, severity, count)})
    "missing column": (lambda df: df.drop(columns="x"), {("missing_column", "x", "error", N)}),
    "unexpected column": (lambda df: df.assign(extra=1.0), {("unexpected_column", "extra", "warning", N)}),
    "strings in numeric column": (_strings_in_x, {("wrong_dtype", "x", "error", N)}),
    "all-NaN column": (lambda df: df.assign(x=np.nan), {("null_fraction", "x", "error", N)}),
    "+Inf": (_set("x", 3, np.inf), {("non_finite", "x", "error", 1)}),
    "out of range": (_set("x", 3, 1e6), {("out_of_range", "x", "warning", 1)}),
    "unseen category": (_set("color", 3, "purple"), {("unseen_category", "color", "warning", 1)}),
    "constant label": (lambda df: df.assign(target=0), {("constant_label", "target", "error", N)}),
    "duplicate rows": (
        lambda df: pd.concat([df, df.head(3)], ignore_index=True),
        {("duplicate_rows", None, "warning", 3), ("duplicate_id", "id", "error", 6)},  # repeated rows repeat ids
    ),
    "too few rows": (lambda df: df.head(5), {("too_few_rows", None, "error", 5)}),
    "empty dataset": (lambda df: df.head(0), {("empty_dataset", None, "error", 0)}),
}


@pytest.mark.parametrize("case", list(ANOMALY_CASES))
def test_enforcing_the_inferred_schema_finds_the_anomaly(tmp_path, inferred, case):
    modify, expected = ANOMALY_CASES[case]

    summary, report = _run(tmp_path, modify(_frame()), ValidateConfig(model_ready=False, fail_on_error=False), inferred)

    found = {(a["type"], a["column"], a["severity"], a["count"]) for a in report["anomalies"]}
    assert found == expected
    errors = sum(1 for a in expected if a[2] == "error")
    assert (summary["errors"], summary["warnings"]) == (errors, len(expected) - errors)
    for anomaly in report["anomalies"]:
        if anomaly["column"]:
            assert repr(anomaly["column"]) in anomaly["message"]


def test_a_nullable_column_passes_its_own_inferred_limit(tmp_path):
    df = _frame()
    df.loc[df.index % 3 == 0, "x"] = np.nan  # a null fraction of exactly 1/3

    _run(tmp_path, df, tag="nullable")
    spec = load_schema(tmp_path / "nullable-schema")["columns"]["x"]
    assert spec["nullable"] is True and spec["max_null_fraction"] >= 1 / 3

    _, report = _run(tmp_path, df, ValidateConfig(model_ready=False), str(tmp_path / "nullable-schema"), tag="again")
    assert report["anomalies"] == []
    more = df.copy()
    more.loc[1, "x"] = np.nan
    _, report = _run(
        tmp_path,
        more,
        ValidateConfig(model_ready=False, fail_on_error=False),
        str(tmp_path / "nullable-schema"),
        tag="more",
    )
    assert [(a["type"], a["column"], a["count"]) for a in report["anomalies"]] == [("null_fraction", "x", 21)]


def test_anomaly_examples_show_the_offending_values(tmp_path, inferred):
    _, report = _run(
        tmp_path, _strings_in_x(_frame()), ValidateConfig(model_ready=False, fail_on_error=False), inferred
    )
    (anomaly,) = report["anomalies"]
    assert anomaly["examples"][0] == "n/a" and "is string; expected float" in anomaly["message"]
    _, report = _run(
        tmp_path,
        _set("color", 3, "purple")(_frame()),
        ValidateConfig(model_ready=False, fail_on_error=False),
        inferred,
        tag="unseen",
    )
    assert report["anomalies"][0]["examples"] == ["purple"]


def test_error_anomaly_raises_naming_type_and_column(tmp_path, inferred):
    with pytest.raises(DataValidationError) as exc:
        _run(tmp_path, _frame().assign(x=np.nan), ValidateConfig(model_ready=False), inferred)
    assert "1 error-severity anomaly" in str(exc.value)
    assert "null_fraction in x" in str(exc.value) and "100.0% null" in str(exc.value)


def test_warnings_alone_do_not_raise(tmp_path, inferred):
    summary, _ = _run(tmp_path, _set("x", 3, 1e6)(_frame()), ValidateConfig(model_ready=False), inferred)
    assert (summary["errors"], summary["warnings"]) == (0, 1)


def test_severity_override_turns_error_into_warning(tmp_path, inferred):
    config = ValidateConfig.from_dict({"severity": {"null_fraction": "warning"}, "model_ready": False})

    summary, report = _run(tmp_path, _frame().assign(x=np.nan), config, inferred)

    assert (summary["errors"], summary["warnings"]) == (0, 1)
    assert [(a["type"], a["severity"]) for a in report["anomalies"]] == [("null_fraction", "warning")]


def test_severity_override_turns_warning_into_error(tmp_path, inferred):
    config = ValidateConfig.from_dict(
        {"severity": {"duplicate_rows": "error", "duplicate_id": "warning"}, "model_ready": False}
    )
    with pytest.raises(DataValidationError, match="duplicate_rows in dataset"):
        _run(tmp_path, pd.concat([_frame(), _frame().head(2)], ignore_index=True), config, inferred)


def test_reports_are_written_even_when_validation_raises(tmp_path, inferred):
    with pytest.raises(DataValidationError):
        _run(tmp_path, _frame().assign(target=0), ValidateConfig(model_ready=False), inferred, tag="failed")

    report = json.loads((tmp_path / "failed.json").read_text())
    assert report["summary"]["errors"] == 1
    assert report["anomalies"][0]["type"] == "constant_label"
    markdown = (tmp_path / "failed.md").read_text()
    assert "1 error(s), 0 warning(s)" in markdown and "constant_label" in markdown and "target" in markdown
    assert (tmp_path / "failed-schema" / "schema.json").is_file()


def test_html_report_colours_severities_and_escapes_examples(tmp_path, inferred):
    df = _set("color", 3, "<b>purple</b>")(_frame().assign(x=np.nan))
    html_path = tmp_path / "report.html"
    with pytest.raises(DataValidationError):
        validate(
            _write(tmp_path / "html-data", df),
            str(tmp_path / "html-schema"),
            str(tmp_path / "html.json"),
            str(tmp_path / "html.md"),
            ValidateConfig(model_ready=False),
            inferred,
            str(html_path),
        )
    page = html_path.read_text()
    assert page.startswith("<!doctype html>") and "<h1>Data validation failed</h1>" in page
    assert "1 error(s), 1 warning(s)" in page
    assert "background:#f5c6c0'><td>error</td><td>null_fraction</td><td>x</td>" in page
    assert "background:#fcefc7'><td>warning</td><td>unseen_category</td><td>color</td>" in page
    assert "&lt;b&gt;purple&lt;/b&gt;" in page and "<b>purple" not in page, "example values are escaped"


def test_min_rows_is_taken_from_the_config_when_inferring(tmp_path):
    with pytest.raises(DataValidationError, match="too_few_rows.*60 rows; expected at least 100"):
        _run(tmp_path, _frame(), ValidateConfig(model_ready=False, min_rows=100))


def test_max_domain_size_drops_large_domains(tmp_path):
    _run(tmp_path, _frame(), ValidateConfig(model_ready=False, max_domain_size=2))
    schema = load_schema(tmp_path / "run-schema")
    assert "domain" not in schema["columns"]["color"]


# --- load_schema ---------------------------------------------------------------------------------


def _schema_file(tmp_path: Path, inferred: str, edit) -> Path:
    data = json.loads((Path(inferred) / "schema.json").read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


def test_load_schema_rejects_a_typo_key_naming_column_and_key(tmp_path, inferred):
    path = _schema_file(tmp_path, inferred, lambda d: d["columns"]["x"].update({"maxx": 3.0}))
    with pytest.raises(DataValidationError) as exc:
        load_schema(path)
    assert "column 'x'" in str(exc.value) and "'maxx'" in str(exc.value) and str(path) in str(exc.value)


def test_load_schema_rejects_a_wrong_version(tmp_path, inferred):
    path = _schema_file(tmp_path, inferred, lambda d: d.update(version=2))
    with pytest.raises(DataValidationError, match=r"version 2 is not supported; expected 1"):
        load_schema(path)


def test_load_schema_rejects_unknown_top_level_key(tmp_path, inferred):
    path = _schema_file(tmp_path, inferred, lambda d: d.update(min_row=3))
    with pytest.raises(DataValidationError, match="min_row"):
        load_schema(path)


def test_validate_with_bad_schema_in_raises_before_writing_reports(tmp_path, inferred):
    path = _schema_file(tmp_path, inferred, lambda d: d["columns"]["x"].update({"knd": "float"}))
    with pytest.raises(DataValidationError, match="knd"):
        _run(tmp_path, _frame(), ValidateConfig(model_ready=False), str(path), tag="bad")
    assert not (tmp_path / "bad.json").exists()


def test_load_schema_rejects_an_unknown_kind_value(tmp_path, inferred):
    path = _schema_file(tmp_path, inferred, lambda d: d["columns"]["x"].update({"kind": "flaot"}))
    with pytest.raises(DataValidationError, match="'x'.*flaot"):
        load_schema(path)


def test_load_schema_rejects_columns_given_as_a_list(tmp_path, inferred):
    path = _schema_file(tmp_path, inferred, lambda d: d.update(columns=[{"kind": "float"}]))
    with pytest.raises(DataValidationError, match="columns"):
        load_schema(path)


# --- ValidateConfig ------------------------------------------------------------------------------


def test_validate_config_rejects_unknown_anomaly_type_in_severity():
    with pytest.raises(ConfigError) as exc:
        ValidateConfig.from_dict({"severity": {"nul_fraction": "warning"}})
    assert "nul_fraction" in str(exc.value) and "null_fraction" in str(exc.value)


def test_validate_config_rejects_unknown_severity_value():
    with pytest.raises(ConfigError, match="'error' or 'warning'.*fatal"):
        ValidateConfig.from_dict({"severity": {"null_fraction": "fatal"}})


def test_validate_config_rejects_min_rows_zero():
    with pytest.raises(ConfigError, match="min_rows must be >= 1"):
        ValidateConfig.from_dict({"min_rows": 0})


def test_every_anomaly_type_has_a_valid_default_severity():
    assert set(ANOMALY_SEVERITY.values()) == {"error", "warning"}
    assert ValidateConfig.from_dict({"severity": {k: "warning" for k in ANOMALY_SEVERITY}}).severity


def test_model_ready_accepts_string_and_nullable_features_and_flags_what_training_cannot_use(tmp_path):
    """Strings are categorical features and nulls are imputed: neither is unusable any more; a
    feature with no values at all, or a datetime feature, is."""
    df = _frame()
    df.loc[2, "x"] = np.nan
    summary, report = _run(tmp_path, df, ValidateConfig(fail_on_error=False))
    assert summary["errors"] == 0, report["anomalies"]
    assert not [a for a in report["anomalies"] if a["type"] == "unusable_feature"]
    bad = df.assign(empty=np.nan, when=pd.date_range("2024-01-01", periods=N))
    dataset = tmp_path / "bad-data"
    write_dataset(dataset, bad, infer_schema(bad, "target", ("id",), roles={"when": "feature"}))
    args = (str(dataset), str(tmp_path / "bad-schema"), str(tmp_path / "bad.json"), str(tmp_path / "bad.md"))
    with pytest.raises(DataValidationError, match="2 error-severity anomalies; first: unusable_feature in empty"):
        validate(*args, ValidateConfig())
    unusable = {a["column"]: a for a in json.loads((tmp_path / "bad.json").read_text())["anomalies"]}
    assert set(unusable) == {"empty", "when"}
    assert "no values (all null)" in unusable["empty"]["message"] and unusable["empty"]["count"] == N
    assert "is datetime" in unusable["when"]["message"] and "'time'" in unusable["when"]["message"]
    assert validate(*args, ValidateConfig(model_ready=False))["errors"] == 0


def test_inferred_schema_never_lets_the_label_be_null(tmp_path):
    df = _frame().astype({"target": "float64"})
    df.loc[[1, 4], "target"] = np.nan
    with pytest.raises(DataValidationError, match=r"null_fraction in target"):
        _run(tmp_path, df, ValidateConfig(model_ready=False))


def test_profile_is_written_beside_the_schema_and_drift_reads_it(tmp_path):
    from components.drift_check import core as drift

    summary, _ = _run(tmp_path, _frame(), ValidateConfig(model_ready=False), tag="p")
    schema_dir = tmp_path / "p-schema"
    assert summary["profile"] and (schema_dir / "profile" / "profile.json").is_file()
    profile = drift.load_reference(schema_dir, drift.DriftConfig())
    assert set(profile.columns) == {"x", "count", "color", "target"}  # the id column is not profiled
    same = drift.check(profile, _frame(), drift.DriftConfig())
    assert not same["dataset_drift"] and same["drifted_columns"] == []


def test_no_profile_when_validation_found_errors(tmp_path):
    summary, _ = _run(
        tmp_path, _frame().assign(x=np.inf), ValidateConfig(model_ready=False, fail_on_error=False), tag="e"
    )
    assert summary["profile"] is False and not (tmp_path / "e-schema" / "profile").exists()


def test_id_columns_are_unique_in_the_inferred_schema_and_repeats_are_flagged(tmp_path, inferred):
    assert load_schema(inferred)["columns"]["id"]["unique"] is True
    df = _frame()
    df.loc[5, "id"] = df.loc[4, "id"]
    summary, report = _run(tmp_path, df, ValidateConfig(model_ready=False, fail_on_error=False), inferred, tag="dup")
    dup = [a for a in report["anomalies"] if a["type"] == "duplicate_id"]
    assert len(dup) == 1 and dup[0]["column"] == "id" and dup[0]["count"] == 2 and dup[0]["severity"] == "error"


def test_severity_can_be_set_per_column(tmp_path, inferred):
    df = _set("x", 3, 1e6)(_frame())
    config = ValidateConfig.from_dict({"model_ready": False, "column_severity": {"x": {"out_of_range": "error"}}})
    with pytest.raises(DataValidationError, match="out_of_range in x"):
        _run(tmp_path, df, config, inferred, tag="col")
    relaxed = ValidateConfig.from_dict({"model_ready": False, "column_severity": {"count": {"out_of_range": "error"}}})
    summary, _ = _run(tmp_path, df, relaxed, inferred, tag="other")
    assert (summary["errors"], summary["warnings"]) == (0, 1)


def test_column_severity_is_checked():
    with pytest.raises(ConfigError, match=r"column_severity.x: unknown anomaly type\(s\) \['nope'\]"):
        ValidateConfig.from_dict({"column_severity": {"x": {"nope": "error"}}})


def test_inferred_schema_records_quantiles_of_numeric_columns(tmp_path, inferred):
    schema = load_schema(inferred)
    quantiles = schema["columns"]["x"]["quantiles"]
    assert list(quantiles) == ["p01", "p05", "p25", "p50", "p75", "p95", "p99"]
    assert quantiles["p50"] == pytest.approx(float(np.median(_frame()["x"])))
    assert "quantiles" not in schema["columns"]["color"]
    path = _schema_file(tmp_path, inferred, lambda s: s["columns"]["x"].update(quantiles={"p50": "mid"}))
    with pytest.raises(DataValidationError, match="column 'x': quantiles must map names"):
        load_schema(path)


def test_an_all_nan_numeric_column_does_not_break_the_profile(tmp_path):
    df = _frame().assign(empty=np.nan)
    summary, _ = _run(tmp_path, df, ValidateConfig(model_ready=False), tag="nan")
    schema = load_schema(tmp_path / "nan-schema")
    assert summary["profile"] and "quantiles" not in schema["columns"]["empty"]


def test_column_severity_must_name_real_columns(tmp_path):
    with pytest.raises(ConfigError, match=r"column_severity names column\(s\) \['xx'\]"):
        _run(tmp_path, _frame(), ValidateConfig.from_dict({"model_ready": False, "column_severity": {"xx": {}}}))


def test_config_errors_name_the_pipeline_parameter_validation():
    with pytest.raises(ConfigError, match=r"^validation: unknown key\(s\) 'min_row'"):
        ValidateConfig.from_dict({"min_row": 3})


def test_a_schema_uri_with_an_unsupported_scheme_is_named_before_any_report(tmp_path):
    from shipyard.errors import UnsupportedSchemeError

    with pytest.raises(UnsupportedSchemeError, match=r"s3://b/schema.json: the s3:// scheme is not supported"):
        _run(tmp_path, _frame(), schema_in="s3://b/schema.json", tag="s3")
    assert not (tmp_path / "s3.json").exists() and not (tmp_path / "s3-schema").exists()


def test_check_dataset_is_what_validate_runs_and_returns_error_anomalies_instead_of_raising(tmp_path):
    from components.validate_data.core import check_dataset

    df = _frame()
    df.loc[3, "target"] = None  # the label may never be null: an error anomaly
    dataset = _write(tmp_path / "data", df)
    config = ValidateConfig(model_ready=False)  # the string column 'color' is no model input
    summary, anomalies = check_dataset(dataset, str(tmp_path / "checked"), config)
    assert summary["errors"] == 1 and [(a.type, a.column) for a in anomalies] == [("null_fraction", "target")]
    with pytest.raises(DataValidationError, match="null_fraction in target"):
        validate(dataset, str(tmp_path / "validated"), str(tmp_path / "r.json"), str(tmp_path / "r.md"), config)
    written = json.loads((tmp_path / "checked" / "schema.json").read_text())
    assert written == json.loads((tmp_path / "validated" / "schema.json").read_text())
    assert json.loads((tmp_path / "r.json").read_text())["anomalies"][0]["type"] == "null_fraction"
