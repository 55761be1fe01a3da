"""Tests for components.ingest_data.core: sources, schema roles and the bad-input matrix."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.ingest_data.core import SKLEARN_DATASETS, IngestConfig, ingest
from components.validate_data.core import ValidateConfig, validate
from shipyard import storage
from shipyard.artifacts import read_dataset
from shipyard.errors import ConfigError, DataValidationError, StorageError


def _frame(n: int = 20) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.arange(100, 100 + n),
            "x": np.linspace(0.0, 1.0, n),
            "color": (["red", "green"] * n)[:n],
            "target": np.arange(n) % 2,
        }
    )


def _roles(schema) -> dict[str, str]:
    return {c.name: c.role for c in schema.columns}


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


# --- scikit-learn sources ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "rows", "columns"),
    [("breast_cancer", 569, 31), ("wine", 178, 14), ("diabetes", 442, 11)],
)
def test_sklearn_dataset_is_ingested_with_label_role(tmp_path, name, rows, columns):
    out = tmp_path / "dataset"

    summary = ingest(f"sklearn:{name}", str(out), IngestConfig())

    assert summary == {"rows": rows, "columns": columns, "label": "target", "warnings": []}
    df, schema = read_dataset(out)
    assert df.shape == (rows, columns)
    roles = _roles(schema)
    assert schema.label == "target" and roles["target"] == "label"
    assert [r for c, r in roles.items() if c != "target"] == ["feature"] * (columns - 1)
    assert schema.features == [c for c in df.columns if c != "target"]
    assert {c.name: c.dtype for c in schema.columns} == {c: str(t) for c, t in df.dtypes.items()}
    assert {c.kind for c in schema.columns if c.role == "feature"} == {"numeric"}


def test_unknown_sklearn_dataset_names_it_and_the_known_ones(tmp_path):
    out = tmp_path / "dataset"
    with pytest.raises(DataValidationError) as exc:
        ingest("sklearn:mnist", str(out), IngestConfig())
    assert "sklearn:mnist" in str(exc.value) and "unknown dataset" in str(exc.value)
    assert all(name in str(exc.value) for name in SKLEARN_DATASETS)
    _assert_nothing_written(out)


# --- files ---------------------------------------------------------------------------------------


def test_csv_with_id_column_gets_role_id(tmp_path):
    src = tmp_path / "raw.csv"
    _frame().to_csv(src, index=False)
    out = tmp_path / "dataset"

    summary = ingest(str(src), str(out), IngestConfig.from_dict({"id_columns": ["id"]}))

    assert summary == {"rows": 20, "columns": 4, "label": "target", "warnings": []}
    df, schema = read_dataset(out)
    assert _roles(schema) == {"id": "id", "x": "feature", "color": "feature", "target": "label"}
    assert [(c.name, c.kind) for c in schema.columns] == [
        ("id", ""),
        ("x", "numeric"),
        ("color", "categorical"),
        ("target", ""),
    ]
    assert schema.features == ["x", "color"]
    pd.testing.assert_frame_equal(df, _frame())


def test_gzipped_csv_is_read(tmp_path):
    src = tmp_path / "raw.csv.gz"
    with gzip.open(src, "wt") as f:
        _frame().to_csv(f, index=False)
    out = tmp_path / "dataset"
    assert ingest(str(src), str(out), IngestConfig())["rows"] == 20
    pd.testing.assert_frame_equal(read_dataset(out)[0], _frame())


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_is_read_with_dtypes_kept(tmp_path, suffix):
    src = tmp_path / f"raw{suffix}"
    frame = _frame().astype({"x": "float32", "id": "int32"})
    frame.to_parquet(src, index=False)
    out = tmp_path / "dataset"

    ingest(str(src), str(out), IngestConfig(label="target", id_columns=("id",)))

    df, schema = read_dataset(out)
    pd.testing.assert_frame_equal(df, frame)
    assert schema.column("x").dtype == "float32" and schema.column("id").role == "id"


@pytest.mark.serving
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_gs_source_is_downloaded_and_ingested(gcs, tmp_path, suffix):
    local = tmp_path / f"raw{suffix}"
    if suffix == ".csv":
        _frame().to_csv(local, index=False)
    else:
        _frame().to_parquet(local, index=False)
    storage.upload(local, f"{gcs}/tables/raw{suffix}")
    out = tmp_path / "dataset"
    assert ingest(f"{gcs}/tables/raw{suffix}", str(out), IngestConfig(id_columns=("id",)))["rows"] == 20
    pd.testing.assert_frame_equal(read_dataset(out)[0], _frame())


@pytest.mark.serving
def test_a_missing_gs_object_is_a_storage_error_naming_it_and_writes_nothing(gcs, tmp_path):
    out = tmp_path / "dataset"
    with pytest.raises(StorageError, match=rf"^{gcs}/tables/absent.csv: cannot download \(NotFound"):
        ingest(f"{gcs}/tables/absent.csv", str(out), IngestConfig())
    _assert_nothing_written(out)


def test_csv_semicolon_delimiter_option(tmp_path):
    src = tmp_path / "raw.csv"
    src.write_text("a;b;target\n1.5;2;0\n3.5;4;1\n")
    out = tmp_path / "dataset"

    ingest(str(src), str(out), IngestConfig(csv_delimiter=";"))

    df, schema = read_dataset(out)
    assert list(df.columns) == ["a", "b", "target"]
    assert df["a"].tolist() == [1.5, 3.5] and schema.label == "target"


def test_semicolon_file_read_with_default_delimiter_shows_the_single_column(tmp_path):
    src = tmp_path / "raw.csv"
    src.write_text("a;b;target\n1.5;2;0\n3.5;4;1\n")
    with pytest.raises(DataValidationError) as exc:
        ingest(str(src), str(tmp_path / "dataset"), IngestConfig())
    assert "one column 'a;b;target'" in str(exc.value) and "looks ';'-delimited" in str(exc.value)


def test_ingest_config_rejects_multi_character_delimiter_and_unknown_key():
    with pytest.raises(ConfigError, match="csv_delimiter must be one character"):
        IngestConfig.from_dict({"csv_delimiter": ";;"})
    with pytest.raises(ConfigError, match="'delimiter'"):
        IngestConfig.from_dict({"delimiter": ";"})


# --- the bad-input matrix ------------------------------------------------------------------------


def _write_truncated_parquet(path: Path) -> None:
    whole = path.with_name("whole.parquet")
    _frame(200).to_parquet(whole, index=False)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_INPUTS = {
    # case: (file name, writer or None for "no file", error type, message fragments)
    "missing file": ("absent.csv", None, StorageError, ["absent.csv", "no such file"]),
    "unknown extension": (
        "raw.txt",
        lambda p: p.write_text("a,target\n1,0\n"),
        DataValidationError,
        ["raw.txt", "unknown file type", "expected .csv"],
    ),
    "empty csv": (
        "empty.csv",
        lambda p: p.write_bytes(b""),
        DataValidationError,
        ["empty.csv", "empty", "expected a header and rows"],
    ),
    "empty parquet": (
        "empty.parquet",
        lambda p: p.write_bytes(b""),
        DataValidationError,
        ["empty.parquet", "cannot be read as parquet"],
    ),
    "latin-1 csv": (
        "latin.csv",
        lambda p: p.write_bytes(b"name,target\ncaf\xe9,1\nbar,0\n"),
        DataValidationError,
        ["latin.csv", "not UTF-8", "byte"],
    ),
    "truncated parquet": (
        "cut.parquet",
        _write_truncated_parquet,
        DataValidationError,
        ["cut.parquet", "cannot be read as parquet"],
    ),
    "missing label": (
        "nolabel.csv",
        lambda p: _frame().drop(columns="target").to_csv(p, index=False),
        DataValidationError,
        ["nolabel.csv", "['target'] not found", "id, x, color"],
    ),
    "missing id column": (
        "noid.csv",
        lambda p: _frame().drop(columns="id").to_csv(p, index=False),
        DataValidationError,
        ["noid.csv", "['id'] not found", "x, color, target"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_typed_error_naming_the_file_and_writes_nothing(tmp_path, case):
    name, writer, error, fragments = BAD_INPUTS[case]
    src = tmp_path / "in" / name
    src.parent.mkdir()
    if writer is not None:
        writer(src)
    out = tmp_path / "out" / "dataset"
    out.parent.mkdir()

    with pytest.raises(error) as exc:
        ingest(str(src), str(out), IngestConfig(id_columns=("id",) if case == "missing id column" else ()))

    for fragment in fragments:
        assert fragment in str(exc.value), (fragment, str(exc.value))
    assert isinstance(exc.value, (StorageError, DataValidationError))
    _assert_nothing_written(out)
    assert list(out.parent.iterdir()) == []


def test_missing_label_message_lists_only_ten_columns_for_wide_files(tmp_path):
    src = tmp_path / "wide.csv"
    pd.DataFrame({f"c{i}": [1, 2] for i in range(15)}).to_csv(src, index=False)
    with pytest.raises(DataValidationError) as exc:
        ingest(str(src), str(tmp_path / "dataset"), IngestConfig())
    message = str(exc.value)
    assert "c0, c1" in message and "c9, ..." in message and "c10" not in message


def test_existing_output_is_kept_when_ingest_fails(tmp_path):
    out = tmp_path / "dataset"
    ingest("sklearn:wine", str(out), IngestConfig())
    before = sorted(p.name for p in out.iterdir())
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"")
    with pytest.raises(DataValidationError):
        ingest(str(bad), str(out), IngestConfig())
    assert sorted(p.name for p in out.iterdir()) == before
    assert len(read_dataset(out)[0]) == 178


# --- header-only CSV: ingest accepts it, validation flags it ------------------------------------


def test_header_only_csv_is_ingested_with_zero_rows_and_validation_flags_empty_dataset(tmp_path):
    src = tmp_path / "header.csv"
    src.write_text("a,b,target\n")
    out = tmp_path / "dataset"

    summary = ingest(str(src), str(out), IngestConfig())

    assert summary["rows"] == 0 and summary["columns"] == 3 and summary["label"] == "target"
    assert summary["warnings"] == ["column 'a' has no values (all null)", "column 'b' has no values (all null)"]
    report = tmp_path / "report.json"
    with pytest.raises(DataValidationError) as exc:
        validate(str(out), str(tmp_path / "schema"), str(report), str(tmp_path / "report.md"), ValidateConfig())
    assert "empty_dataset" in str(exc.value) and "no rows" in str(exc.value)
    anomalies = json.loads(report.read_text())["anomalies"]
    assert [(a["type"], a["severity"]) for a in anomalies] == [("empty_dataset", "error")]


def test_wrong_delimiter_is_named(tmp_path):
    from components.ingest_data.core import IngestConfig, ingest
    from shipyard.errors import DataValidationError

    data = tmp_path / "semi.csv"
    data.write_text("a;b;target\n1;2;0\n3;4;1\n")
    with pytest.raises(DataValidationError, match=r"looks ';'-delimited, not ',' \(set csv_delimiter\)"):
        ingest(str(data), str(tmp_path / "out"), IngestConfig())
    assert not (tmp_path / "out").exists()
    assert ingest(str(data), str(tmp_path / "ok"), IngestConfig(csv_delimiter=";"))["columns"] == 3


# --- URIs whose scheme is not supported ----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "scheme"),
    [("s3://bucket/raw.csv", "s3"), ("https://example.com/raw.csv", "https"), ("https://example.com/data", "https")],
)
def test_an_unsupported_scheme_is_named_with_the_supported_sources(tmp_path, source, scheme):
    from shipyard.errors import UnsupportedSchemeError

    out = tmp_path / "dataset"
    with pytest.raises(UnsupportedSchemeError) as exc:
        ingest(source, str(out), IngestConfig())
    message = str(exc.value)
    assert message.startswith(f"{source}: the {scheme}:// scheme is not supported"), message
    assert "local path" in message and "gs://" in message and "sklearn:NAME" in message
    assert "no such file" not in message and "unknown file type" not in message
    assert isinstance(exc.value, StorageError)
    _assert_nothing_written(out)


def test_write_frame_gives_the_roles_ingest_gives_and_allows_no_label(tmp_path):
    from components.ingest_data.core import write_frame

    df = _frame()
    ingest_out, frame_out, unlabeled = tmp_path / "ingested", tmp_path / "written", tmp_path / "unlabeled"
    src = tmp_path / "d.csv"
    df.to_csv(src, index=False)
    ingest(str(src), str(ingest_out), IngestConfig(id_columns=("id",)))
    write_frame(pd.read_csv(src), str(src), str(frame_out), "target", ("id",))
    assert read_dataset(frame_out)[1] == read_dataset(ingest_out)[1]
    summary = write_frame(df, "frame", str(unlabeled), None, ("id",))
    assert summary == {"rows": 20, "columns": 4, "label": None, "warnings": []}
    assert _roles(read_dataset(unlabeled)[1]) == {"id": "id", "x": "feature", "color": "feature", "target": "feature"}
    with pytest.raises(DataValidationError, match=r"frame: column\(s\) \['nope'\] not found"):
        write_frame(df, "frame", str(tmp_path / "x"), None, ("nope",))
