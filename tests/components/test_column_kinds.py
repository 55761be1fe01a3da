"""Column roles and kinds from ingest to validation: inference, the user's declarations, real tables.

The Dataset ``schema.json`` ingest writes is the contract training reads (every ``feature`` with its
``kind``), so these tests pin what it says for each kind of column, and that validate_data accepts
what training can use and names what it cannot.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import tables

from components.ingest_data.core import IngestConfig, ingest, write_frame
from components.validate_data.core import ValidateConfig, check_dataset, load_schema, validate
from shipyard.artifacts import infer_columns, read_dataset, read_json
from shipyard.errors import ConfigError, DataValidationError

# --- inference, one column at a time -----------------------------------------------------------

N = 400
rng = np.random.default_rng(3)
WORDS = np.array(["the", "order", "arrived", "late", "again", "and", "support", "never", "answered"])

COLUMNS = {
    # case: (values, expected (role, kind), a fragment of the note or "" for none)
    "float with nulls": (np.where(rng.random(N) < 0.2, np.nan, rng.normal(size=N)), ("feature", "numeric"), ""),
    "small integers stay numeric": (rng.integers(0, 4, N), ("feature", "numeric"), ""),
    "row numbers: numeric, with a warning": (np.arange(N), ("feature", "numeric"), "counts the rows"),
    "bool": (rng.random(N) < 0.5, ("feature", "categorical"), ""),
    "bool with nulls (object)": (
        pd.Series(rng.random(N) < 0.5, dtype=object).where(rng.random(N) > 0.1, None),
        ("feature", "categorical"),
        "",
    ),
    "numbers with None (object)": (
        pd.Series(rng.normal(size=N), dtype=object).where(rng.random(N) > 0.1, None),
        ("feature", "numeric"),
        "",
    ),
    "pandas categorical": (pd.Categorical(rng.choice(["a", "b"], N)), ("feature", "categorical"), ""),
    "few strings": (rng.choice(["red", "green", "blue"], N), ("feature", "categorical"), ""),
    "few strings with nulls": (
        pd.Series(rng.choice(["x", "y"], N), dtype=object).where(rng.random(N) > 0.3, None),
        ("feature", "categorical"),
        "",
    ),
    "a string per row: id": ([f"u-{i:04d}" for i in range(N)], ("id", ""), "looks like an identifier"),
    "nearly a string per row: id": (
        [f"u-{i:04d}" for i in range(N - 10)] + ["u-0000"] * 10,
        ("id", ""),
        "looks like an identifier",
    ),
    "sentences: text": (
        [" ".join(rng.choice(WORDS, 6)) + f" {i}" for i in range(N)],
        ("text", ""),
        "reads as free text",
    ),
    "high cardinality, repeated: categorical with a warning": (
        [f"city-{i % 150}" for i in range(N)],
        ("feature", "categorical"),
        "high-cardinality categorical",
    ),
    "datetime64": (pd.date_range("2024-01-01", periods=N, freq="h"), ("time", ""), "holds datetimes"),
    "ISO dates as text": (
        pd.date_range("2021-03-01", periods=N).strftime("%Y-%m-%d"),
        ("time", ""),
        "holds dates as text",
    ),
    "timestamps as text": (
        pd.date_range("2021-03-01", periods=N, freq="min").strftime("%Y-%m-%dT%H:%M:%SZ"),
        ("time", ""),
        "holds dates as text",
    ),
    "day-first dates as text": (
        pd.date_range("2021-03-01", periods=N).strftime("%d/%m/%Y"),
        ("time", ""),
        "holds dates as text",
    ),
    "month 13 is no date": (["2021-13-01", "2021-12-01"] * (N // 2), ("feature", "categorical"), ""),
    "complex numbers: no kind, a warning": (np.ones(N) * (1 + 2j), ("feature", ""), "training cannot use"),
    "all null strings": (pd.Series([None] * N, dtype=object), ("feature", "categorical"), "no values"),
}


@pytest.mark.parametrize("case", list(COLUMNS))
def test_each_kind_of_column_gets_its_role_and_kind(case):
    values, (role, kind), note = COLUMNS[case]
    df = pd.DataFrame({"c": values, "target": np.arange(N) % 2})
    schema, notes = infer_columns(df, "target")
    assert (schema.column("c").role, schema.column("c").kind) == (role, kind)
    assert (note in notes.get("c", "")) if note else "c" not in notes, notes
    assert schema.column("target").role == "label" and schema.column("target").kind == ""


def test_a_small_table_keeps_its_distinct_strings_as_a_category():
    """Below ID_MIN_VALUES non-null values, a distinct string per row is not yet an id."""
    df = pd.DataFrame({"name": [f"n{i}" for i in range(19)], "target": [0, 1] * 9 + [0]})
    assert infer_columns(df, "target")[0].column("name").kind == "categorical"
    df = pd.DataFrame({"name": [f"n{i}" for i in range(20)], "target": [0, 1] * 10})
    assert infer_columns(df, "target")[0].column("name").role == "id"


# --- the user's declarations --------------------------------------------------------------------


def _ingest(tmp_path, df, options, tag="ds", suffix=".parquet"):
    src = tmp_path / f"{tag}{suffix}"
    if suffix == ".parquet":
        df.to_parquet(src, index=False)
    else:
        df.to_csv(src, index=False)
    out = tmp_path / tag
    summary = ingest(str(src), str(out), IngestConfig.from_dict(options), str(tmp_path / f"{tag}.md"))
    return summary, read_dataset(out)[1]


def test_declarations_override_inference(tmp_path):
    df = tables.mixed_table()
    options = {
        "categorical": ["tenure"],
        "numeric": ["autopay"],
        "roles": {"customer_id": "feature", "region": "slice", "notes": "id"},
        "id_columns": ["age"],
    }
    summary, schema = _ingest(tmp_path, df, options)
    got = {c.name: (c.role, c.kind) for c in schema.columns}
    assert got == {
        "customer_id": ("feature", "categorical"),
        "age": ("id", ""),
        "tenure": ("feature", "categorical"),
        "plan": ("feature", "categorical"),
        "region": ("slice", ""),
        "autopay": ("feature", "numeric"),
        "notes": ("id", ""),
        "signup": ("time", ""),
        "target": ("label", ""),
    }
    assert summary["warnings"] == [
        "column 'signup' holds datetimes (datetime64[ns]): role time, kept but not used as a feature"
    ]


def test_a_column_declared_numeric_must_hold_numbers(tmp_path):
    with pytest.raises(DataValidationError) as exc:
        _ingest(tmp_path, tables.mixed_table(), {"numeric": ["plan"]})
    message = str(exc.value)
    assert "column 'plan' is declared numeric but has dtype object" in message and "declare it categorical" in message
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"categorical": ["plan"], "numeric": ["plan"]}, "['plan'] are in both categorical and numeric"),
        ({"id_columns": ["a"], "roles": {"a": "id"}}, "['a'] are in both id_columns and roles"),
        ({"categorical": ["target"]}, "categorical: names the label 'target'"),
        ({"roles": {"plan": "label"}}, "roles: {'plan': 'label'} is not a role; expected one of feature, id"),
        ({"roles": {"plan": "weight"}}, "is not a role"),
        ({"categorical": [""]}, "categorical: expected column names"),
    ],
)
def test_contradictory_declarations_are_config_errors(options, fragment):
    with pytest.raises(ConfigError) as exc:
        IngestConfig.from_dict(options)
    assert str(exc.value).startswith("ingest: ") and fragment in str(exc.value), str(exc.value)


@pytest.mark.parametrize("key", ["categorical", "numeric", "roles", "id_columns"])
def test_a_declared_column_the_data_lacks_is_named_with_the_columns_there_are(tmp_path, key):
    value = {"nope": "id"} if key == "roles" else ["nope"]
    with pytest.raises(DataValidationError) as exc:
        _ingest(tmp_path, tables.mixed_table(40), {key: value})
    assert "column(s) ['nope'] not found; the columns are: customer_id, age, tenure" in str(exc.value)


def _validate(tmp_path, dataset="ds", config=None):
    """validate_data on ``tmp_path/dataset``, its schema to ``tmp_path/schema``; returns the summary."""
    args = (str(tmp_path / "schema"), str(tmp_path / "a.json"), str(tmp_path / "a.md"))
    return validate(str(tmp_path / dataset), *args, config or ValidateConfig())


# --- the mixed-type table end to end (ingest, then validate) -------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_the_mixed_table_is_ingested_with_its_kinds_and_the_exclusions_are_warned(tmp_path, suffix, caplog):
    df = tables.mixed_table(as_text=suffix == ".csv")
    with caplog.at_level(logging.WARNING, logger="components.ingest_data.core"):
        summary, schema = _ingest(tmp_path, df, {}, suffix=suffix)
    assert {c.name: c.kind for c in schema.columns if c.role == "feature"} == tables.FEATURE_KINDS
    assert {c.name: c.role for c in schema.columns if c.role not in ("feature", "label")} == tables.EXCLUDED_ROLES
    assert schema.label == "target"
    warned = [w.split("'")[1] for w in summary["warnings"]]
    assert warned == list(tables.EXCLUDED_ROLES)
    assert [r.getMessage() for r in caplog.records] == [f"ingest: {w}" for w in summary["warnings"]]
    report = (tmp_path / "ds.md").read_text()
    assert "5 feature(s), 3 kept but not used as features (customer_id, notes, signup)" in report
    assert "| notes | object | text |  | column 'notes' reads as free text" in report
    written = read_json(tmp_path / "ds" / "schema.json", "schema")
    assert written["columns"][3] == {"name": "plan", "dtype": "object", "role": "feature", "kind": "categorical"}
    assert written["columns"][0] == {"name": "customer_id", "dtype": "object", "role": "id"}


def test_the_mixed_table_passes_validation_and_an_unseen_category_is_a_warning(tmp_path):
    df = tables.mixed_table()
    _ingest(tmp_path, df, {})
    summary = _validate(tmp_path)
    assert summary["errors"] == 0 and summary["profile"], json.loads((tmp_path / "a.json").read_text())
    schema = load_schema(tmp_path / "schema")
    plan = schema["columns"]["plan"]
    assert plan["feature_kind"] == "categorical" and plan["domain"] == sorted([*tables.PLANS, tables.RARE_PLAN])
    assert schema["columns"]["age"]["feature_kind"] == "numeric" and schema["columns"]["age"]["nullable"] is True
    assert schema["columns"]["autopay"] == {
        "kind": "bool",
        "role": "feature",
        "feature_kind": "categorical",
        "nullable": False,
        "max_null_fraction": 0.0,
        "domain": ["False", "True"],
    }
    assert {n: schema["columns"][n]["role"] for n in tables.EXCLUDED_ROLES} == tables.EXCLUDED_ROLES
    assert schema["columns"]["customer_id"]["unique"] is True

    _ingest(tmp_path, tables.with_unseen_category(tables.mixed_table(seed=1)), {}, tag="later")
    summary, anomalies = check_dataset(
        str(tmp_path / "later"), str(tmp_path / "s2"), ValidateConfig(), str(tmp_path / "schema")
    )
    unseen = [a for a in anomalies if a.type == "unseen_category"]
    assert [(a.column, a.severity, a.count, a.examples) for a in unseen] == [
        ("plan", "warning", 5, (tables.UNSEEN_PLAN,))
    ]
    assert summary["errors"] == 0, anomalies


def test_penguins_from_the_csv_in_the_package_ingest_and_validate(tmp_path):
    out = tmp_path / "penguins"
    summary = ingest(tables.penguins_csv(), str(out), IngestConfig(label="species"))
    assert summary == {"rows": 344, "columns": 8, "label": "species", "warnings": []}
    df, schema = read_dataset(out)
    kinds = {c.name: c.kind for c in schema.columns if c.role == "feature"}
    assert kinds == {
        "island": "categorical",
        "bill_length_mm": "numeric",
        "bill_depth_mm": "numeric",
        "flipper_length_mm": "numeric",
        "body_mass_g": "numeric",
        "sex": "categorical",
        "year": "numeric",
    }
    assert df["sex"].isna().sum() == 11 and df["bill_length_mm"].isna().sum() == 2
    assert _validate(tmp_path, "penguins")["errors"] == 0
    columns = load_schema(tmp_path / "schema")["columns"]
    assert columns["island"]["domain"] == ["Biscoe", "Dream", "Torgersen"]
    assert columns["sex"]["nullable"] is True and columns["sex"]["domain"] == ["female", "male"]
    assert columns["species"]["role"] == "label" and "feature_kind" not in columns["species"]


def test_penguins_load_penguins_frame_gives_the_same_schema_as_its_csv(tmp_path):
    write_frame(tables.penguins(), "penguins", str(tmp_path / "frame"), "species")
    ingest(tables.penguins_csv(), str(tmp_path / "csv"), IngestConfig(label="species"))
    assert read_dataset(tmp_path / "frame")[1] == read_dataset(tmp_path / "csv")[1]


# --- the validation schema can say how a feature is used ----------------------------------------


def test_integer_codes_declared_categorical_get_a_domain_and_unseen_codes_are_reported(tmp_path):
    df = pd.DataFrame({"store": np.arange(120) % 4 + 10, "x": np.linspace(0, 1, 120), "target": np.arange(120) % 2})
    _ingest(tmp_path, df, {"categorical": ["store"]})
    _validate(tmp_path)
    spec = load_schema(tmp_path / "schema")["columns"]["store"]
    assert spec["kind"] == "int" and spec["feature_kind"] == "categorical"
    assert spec["domain"] == ["10", "11", "12", "13"] and "min" not in spec and "quantiles" not in spec
    _ingest(tmp_path, df.assign(store=df["store"].where(df.index > 2, 99)), {"categorical": ["store"]}, tag="new")
    _, anomalies = check_dataset(
        str(tmp_path / "new"), str(tmp_path / "s2"), ValidateConfig(), str(tmp_path / "schema")
    )
    assert [(a.type, a.column, a.count, a.examples) for a in anomalies] == [("unseen_category", "store", 3, ("99",))]


def test_a_hand_edited_domain_of_numbers_matches_integer_codes(tmp_path):
    df = pd.DataFrame({"store": np.arange(60) % 3, "x": np.arange(60.0), "target": np.arange(60) % 2})
    _ingest(tmp_path, df, {"categorical": ["store"]})
    schema = {
        "version": 1,
        "columns": {
            "store": {"kind": "int", "feature_kind": "categorical", "domain": [0, 1.0, "2"]},
            "x": {"kind": "float"},
            "target": {"kind": "int", "role": "label"},
        },
    }
    (tmp_path / "hand.json").write_text(json.dumps(schema))
    summary, anomalies = check_dataset(
        str(tmp_path / "ds"), str(tmp_path / "s"), ValidateConfig(), str(tmp_path / "hand.json")
    )
    assert anomalies == [] and summary["errors"] == 0


def test_a_validation_schema_kind_that_training_would_not_use_is_a_kind_mismatch(tmp_path):
    df = tables.mixed_table(120)
    _ingest(tmp_path, df, {})
    _validate(tmp_path)
    schema = json.loads((tmp_path / "schema" / "schema.json").read_text())
    schema["columns"]["tenure"]["feature_kind"] = "categorical"
    (tmp_path / "edited.json").write_text(json.dumps(schema))
    _, anomalies = check_dataset(
        str(tmp_path / "ds"), str(tmp_path / "s"), ValidateConfig(), str(tmp_path / "edited.json")
    )
    (mismatch,) = [a for a in anomalies if a.severity == "error"]
    assert mismatch.type == "kind_mismatch" and mismatch.column == "tenure"
    assert "categorical in the validation schema but numeric in the Dataset" in mismatch.message
    assert '{"categorical": ["tenure"]}' in mismatch.message
    _ingest(tmp_path, df, {"categorical": ["tenure"]}, tag="declared")
    _, anomalies = check_dataset(
        str(tmp_path / "declared"), str(tmp_path / "s3"), ValidateConfig(), str(tmp_path / "edited.json")
    )
    assert not [a for a in anomalies if a.type == "kind_mismatch"]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"feature_kind": "ordinal"}, "feature_kind 'ordinal' is not one of ['numeric', 'categorical']"),
        ({"kind": "categorical"}, "feature_kind how a feature is used (\"feature_kind\": 'categorical')"),
        ({"role": "id", "feature_kind": "numeric"}, "feature_kind is for features; this column has role 'id'"),
    ],
)
def test_load_schema_checks_feature_kind(tmp_path, entry, fragment):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"version": 1, "columns": {"c": entry}}))
    with pytest.raises(DataValidationError) as exc:
        load_schema(path)
    assert "column 'c'" in str(exc.value) and fragment in str(exc.value), str(exc.value)
