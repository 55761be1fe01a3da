"""Tests for shipyard.artifacts: atomic writes, digests and the Dataset/Model contracts."""

import hashlib
import json

import pandas as pd
import pytest

from shipyard.artifacts import (
    Column,
    DatasetSchema,
    ModelManifest,
    atomic_dir,
    infer_schema,
    read_dataset,
    read_model_manifest,
    verify_tree,
    write_dataset,
    write_model,
)
from shipyard.errors import ArtifactError, IntegrityError, ShipyardError, UnsafeArtifactError

WEIGHTS = b"\x00weights\x01" * 10
DELETE = object()


def _manifest(**overrides):
    values = dict(
        format="sklearn-skops",
        task="binary",
        input_schema=(Column("a", "float64"), Column("b", "int64")),
        label="y",
        label_names=("no", "yes"),
        metrics={"val_loss": 0.25},
        details={"k": [1, 2]},
    )
    return ModelManifest(**{**values, **overrides})


def _build(tmp):
    (tmp / "weights.bin").write_bytes(WEIGHTS)
    (tmp / "sub").mkdir()
    (tmp / "sub" / "extra.txt").write_text("hello")


def _without(manifest, *names):
    return {k: v for k, v in manifest.to_dict().items() if k not in names}


@pytest.fixture
def model_dir(tmp_path):
    path = tmp_path / "model"
    write_model(path, _manifest(), _build)
    return path


def test_error_tree():
    assert issubclass(IntegrityError, ArtifactError)
    assert issubclass(UnsafeArtifactError, ArtifactError)
    assert issubclass(ArtifactError, ShipyardError) and issubclass(ArtifactError, ValueError)


# --- atomic_dir --------------------------------------------------------------------------------


def test_atomic_dir_keeps_old_dir_and_leaves_no_temp_when_block_raises(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert (target / "old.txt").read_text() == "old"


def test_atomic_dir_creates_nothing_when_block_raises_on_a_new_path(tmp_path):
    with pytest.raises(ValueError):
        with atomic_dir(tmp_path / "new") as tmp:
            (tmp / "partial").write_text("x")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_writes_into_a_sibling_then_replaces_existing_dir(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        assert (target / "old.txt").exists()  # readers still see the old artifact meanwhile
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


def test_atomic_dir_creates_missing_parents(tmp_path):
    with atomic_dir(tmp_path / "a" / "b" / "out") as tmp:
        (tmp / "f").write_text("x")
    assert (tmp_path / "a" / "b" / "out" / "f").read_text() == "x"


# --- Model artifacts -----------------------------------------------------------------------------


def test_write_model_then_read_model_manifest_round_trips(model_dir):
    written = read_model_manifest(model_dir)
    assert written.files == {
        "sub/extra.txt": hashlib.sha256(b"hello").hexdigest(),
        "weights.bin": hashlib.sha256(WEIGHTS).hexdigest(),
    }
    assert written.created_at
    assert _without(written, "files", "created_at") == _without(_manifest(), "files", "created_at")
    assert written.feature_names == ["a", "b"]
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["model"]


def test_write_model_returns_what_it_wrote(tmp_path):
    returned = write_model(tmp_path / "m", _manifest(), _build)
    assert read_model_manifest(tmp_path / "m") == returned
    assert json.loads((tmp_path / "m" / "model.json").read_text())["files"] == returned.files


def test_verify_tree_rejects_a_changed_file(model_dir):
    data = bytearray((model_dir / "weights.bin").read_bytes())
    data[3] ^= 0xFF
    (model_dir / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"sha256 mismatch for \['weights.bin'\]") as info:
        read_model_manifest(model_dir)
    assert str(model_dir) in str(info.value)
    assert read_model_manifest(model_dir, verify=False).format == "sklearn-skops"


def test_verify_tree_rejects_a_missing_file(model_dir):
    (model_dir / "sub" / "extra.txt").unlink()
    with pytest.raises(IntegrityError, match=r"missing file\(s\) \['sub/extra.txt'\]"):
        read_model_manifest(model_dir)


def test_verify_tree_rejects_an_unlisted_file(model_dir):
    (model_dir / "sub" / "sneaky.py").write_text("print('hi')")
    with pytest.raises(IntegrityError, match=r"not listed in model.json: \['sub/sneaky.py'\]"):
        read_model_manifest(model_dir)


def test_verify_tree_accepts_exact_tree_and_ignores_model_json(model_dir):
    verify_tree(model_dir, read_model_manifest(model_dir).files)


def test_read_model_manifest_on_a_dir_without_model_json(tmp_path):
    with pytest.raises(ArtifactError, match=r"model\.json"):
        read_model_manifest(tmp_path)


def test_read_model_manifest_on_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactError, match="not a directory"):
        read_model_manifest(tmp_path / "f")


def test_read_model_manifest_with_invalid_json(model_dir):
    (model_dir / "model.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"model\.json.*not valid JSON"):
        read_model_manifest(model_dir)


def test_model_manifest_dict_round_trip():
    m = _manifest(files={"w": "00"}, parent={"uri": "x"})
    assert ModelManifest.from_dict(json.loads(json.dumps(m.to_dict())), "m.json") == m


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"weights": "x"}, r"unknown keys \['weights'\], missing keys \[\]"),
        ({"files": DELETE}, r"missing keys \['files'\]"),
        ({"format": "pickle"}, r"format 'pickle' is not one of"),
        ({"task": "ranking"}, r"task 'ranking' is not one of"),
        ({"input_schema": [{"name": "a", "role": "target"}]}, r"column 'a' has role 'target'"),
        ({"input_schema": [{"nom": "a"}]}, r"columns\[0\] must have keys"),
    ],
)
def test_model_manifest_from_dict_rejects_malformed_input(change, pattern):
    data = _manifest().to_dict()
    data.update(change)
    data = {k: v for k, v in data.items() if v is not DELETE}
    with pytest.raises(ArtifactError, match=pattern) as info:
        ModelManifest.from_dict(data, "dir/model.json")
    assert str(info.value).startswith("dir/model.json: ")


def test_model_manifest_from_dict_rejects_non_object():
    with pytest.raises(ArtifactError, match=r"^where: expected a JSON object$"):
        ModelManifest.from_dict(["format"], "where")


@pytest.mark.parametrize("files", [["weights.bin"], None])
def test_model_manifest_with_malformed_files_is_an_artifact_error(model_dir, files):
    data = json.loads((model_dir / "model.json").read_text())
    data["files"] = files
    (model_dir / "model.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="files"):
        read_model_manifest(model_dir)


# --- Dataset artifacts ---------------------------------------------------------------------------


def _frame():
    return pd.DataFrame({"id": [1, 2, 3], "x": [0.5, 1.5, -2.0], "city": ["a", "b", "c"], "y": [0, 1, 0]})


def test_write_dataset_then_read_dataset_round_trips(tmp_path):
    df = _frame()
    schema = infer_schema(df, label="y", id_columns=("id",))
    write_dataset(tmp_path / "ds", df, schema)
    got, got_schema = read_dataset(tmp_path / "ds")
    pd.testing.assert_frame_equal(got, df)
    assert got_schema == schema
    assert got_schema.label == "y"
    assert got_schema.features == ["x", "city"]
    assert got_schema.column("id") == Column("id", "int64", "id")
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["data.parquet", "schema.json"]


def test_schema_without_label():
    schema = infer_schema(_frame(), label=None)
    assert schema.label is None
    assert schema.features == ["id", "x", "city", "y"]
    with pytest.raises(ArtifactError, match="schema has no column 'nope'"):
        schema.column("nope")


def test_read_dataset_without_data_parquet(tmp_path):
    write_dataset(tmp_path / "ds", _frame(), infer_schema(_frame(), "y"))
    (tmp_path / "ds" / "data.parquet").unlink()
    with pytest.raises(ArtifactError, match=r"missing data\.parquet") as info:
        read_dataset(tmp_path / "ds")
    assert str(tmp_path / "ds") in str(info.value)


def test_read_dataset_text_as_category_keeps_values_and_decodes_strings_only(tmp_path):
    write_dataset(tmp_path / "ds", _frame(), infer_schema(_frame(), "y"))
    got, _ = read_dataset(tmp_path / "ds", text_as_category=True)
    assert isinstance(got["city"].dtype, pd.CategoricalDtype)
    assert got.drop(columns="city").dtypes.equals(_frame().drop(columns="city").dtypes)
    pd.testing.assert_frame_equal(got.astype({"city": object}), _frame())


@pytest.mark.parametrize("text_as_category", [False, True])
def test_read_dataset_with_truncated_parquet_names_the_file(tmp_path, text_as_category):
    write_dataset(tmp_path / "ds", _frame(), infer_schema(_frame(), "y"))
    data = tmp_path / "ds" / "data.parquet"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=rf"{data}: not a readable Parquet file"):
        read_dataset(tmp_path / "ds", text_as_category=text_as_category)


def test_read_dataset_without_schema(tmp_path):
    with pytest.raises(ArtifactError, match=r"schema\.json: missing dataset schema"):
        read_dataset(tmp_path)


def test_read_dataset_with_malformed_schema_names_the_file(tmp_path):
    write_dataset(tmp_path / "ds", _frame(), infer_schema(_frame(), "y"))
    schema_file = tmp_path / "ds" / "schema.json"
    schema_file.write_text(json.dumps({"columns": [{"name": "x", "role": "weight"}]}))
    with pytest.raises(ArtifactError) as info:
        read_dataset(tmp_path / "ds")
    assert str(info.value).startswith(f"{schema_file}: column 'x' has role 'weight'")


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (["x"], r"expected an object with a 'columns' list"),
        ({"columns": {"x": "float"}}, r"expected an object with a 'columns' list"),
        ({"columns": ["x"]}, r"columns\[0\] must have keys name, dtype, role \(kind, nullable optional\); got 'x'"),
        ({"columns": [{"name": "x"}, {"name": "y", "unit": "m"}]}, r"columns\[1\] must have keys"),
        ({"columns": [{"dtype": "int64"}]}, r"columns\[0\] must have keys"),
        ({"columns": [{"name": "x", "role": "target"}]}, r"column 'x' has role 'target'; expected one of"),
    ],
)
def test_dataset_schema_from_dict_errors_name_the_file(data, pattern):
    with pytest.raises(ArtifactError, match=pattern) as info:
        DatasetSchema.from_dict(data, "gs://b/ds/schema.json")
    assert str(info.value).startswith("gs://b/ds/schema.json: ")


def test_dataset_schema_defaults_role_and_dtype():
    schema = DatasetSchema.from_dict({"columns": [{"name": "x"}]})
    assert schema.columns == (Column("x", "object", "feature"),)
    assert DatasetSchema.from_dict(schema.to_dict()) == schema


def test_features_with_nulls_anywhere_are_nullable_in_the_schema():
    import numpy as np
    import pandas as pd

    from shipyard.artifacts import DatasetSchema, infer_columns

    df = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [1, 2, 3], "c": ["x", None, "y"], "target": [0, 1, 0]})
    schema, _ = infer_columns(df, "target", categorical=("c",))
    assert [(c.name, c.nullable) for c in schema.columns] == [("a", True), ("b", False), ("c", True), ("target", False)]
    again = DatasetSchema.from_dict(schema.to_dict())
    assert again == schema and "nullable" not in schema.to_dict()["columns"][1]
