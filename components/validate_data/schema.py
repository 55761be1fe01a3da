"""The validation schema file: reading and checking a (possibly hand-edited) ``schema.json``.

Schema *inference* needs the validation policy and lives in :mod:`components.validate_data.core`;
this module only knows the file's shape: its version, its keys, and what each column entry may say.
A column entry's ``kind`` is what the column holds (int, float, bool, string, datetime, other) and,
for a feature, ``feature_kind`` is how training uses it (``numeric`` or ``categorical``: the
Dataset schema's ``kind``, which ``ingest_data`` infers or the user declares).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipyard import storage
from shipyard.artifacts import ROLES, read_json
from shipyard.errors import DataValidationError

SCHEMA_VERSION = 1
#: What a column physically holds (checked against the data: ``wrong_dtype``).
KINDS = ("int", "float", "bool", "string", "datetime", "other")
#: How a feature is used (the Dataset schema's ``kind``): ``numeric`` or ``categorical``.
FEATURE_KINDS = ("numeric", "categorical")
COLUMN_KEYS = {
    "kind",
    "role",
    "feature_kind",
    "nullable",
    "max_null_fraction",
    "min",
    "max",
    "domain",
    "unique",
    "quantiles",
}


def load_schema(path: str | Path) -> dict[str, Any]:
    """Reads and checks a (possibly hand-edited) validation schema.

    Args:
        path: A ``schema.json`` file, a schema artifact directory, or a ``gs://`` URI of the file.

    Raises:
        StorageError: The file does not exist.
        DataValidationError: Unknown keys, a wrong version, or malformed column entries.
    """
    p = storage.fetch(str(path))
    if p.is_dir():
        p = p / "schema.json"
    data = read_json(p, "validation schema")
    if not isinstance(data, dict) or set(data) - {"version", "min_rows", "columns"} or "columns" not in data:
        raise DataValidationError(
            f"{p}: expected keys version, min_rows, columns; "
            f"got {sorted(data) if isinstance(data, dict) else type(data).__name__}"
        )
    if data.get("version") != SCHEMA_VERSION:
        raise DataValidationError(f"{p}: version {data.get('version')!r} is not supported; expected {SCHEMA_VERSION}")
    if not isinstance(data["columns"], dict):
        raise DataValidationError(f"{p}: 'columns' must be an object keyed by column name")
    for name, spec in data["columns"].items():
        _check_column_spec(p, name, spec)
    return data


def _check_column_spec(path: Path, name: str, spec: Any) -> None:
    where = f"{path}: column {name!r}"
    if not isinstance(spec, dict):
        raise DataValidationError(f"{where}: expected an object, got {type(spec).__name__}")
    unknown = sorted(set(spec) - COLUMN_KEYS)
    if unknown:
        raise DataValidationError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(COLUMN_KEYS)}")
    if "kind" in spec and spec["kind"] not in KINDS:
        hint = (
            f'; kind is what the column holds, feature_kind how a feature is used ("feature_kind": {spec["kind"]!r})'
            if spec["kind"] in FEATURE_KINDS
            else ""
        )
        raise DataValidationError(f"{where}: kind {spec['kind']!r} is not one of {list(KINDS)}{hint}")
    if "role" in spec and spec["role"] not in ROLES:
        raise DataValidationError(f"{where}: role {spec['role']!r} is not one of {list(ROLES)}")
    if "feature_kind" in spec and spec["feature_kind"] not in FEATURE_KINDS:
        raise DataValidationError(f"{where}: feature_kind {spec['feature_kind']!r} is not one of {list(FEATURE_KINDS)}")
    if "feature_kind" in spec and spec.get("role", "feature") != "feature":
        raise DataValidationError(f"{where}: feature_kind is for features; this column has role {spec['role']!r}")
    for key in ("min", "max", "max_null_fraction"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise DataValidationError(f"{where}: {key} must be a number, got {value!r}")
    quantiles = spec.get("quantiles", {})
    if not isinstance(quantiles, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in quantiles.values()
    ):
        raise DataValidationError(f"{where}: quantiles must map names like 'p50' to numbers, got {quantiles!r}")
    if "unique" in spec and not isinstance(spec["unique"], bool):
        raise DataValidationError(f"{where}: unique must be true or false, got {spec['unique']!r}")
    if "domain" in spec and not isinstance(spec["domain"], list):
        raise DataValidationError(f"{where}: domain must be a list of values, got {spec['domain']!r}")
