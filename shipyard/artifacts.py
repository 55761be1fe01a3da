"""The artifact contracts between components: Dataset and Model directories.

A **Dataset** is a directory with ``data.parquet`` and ``schema.json`` (column name, dtype and
role). A **Model** is a directory with ``model.json`` (format, task, input schema, label names,
metrics, the sha256 of every other file, parent) beside the weights. Both are written to a
temporary sibling and renamed into place, so a reader never sees half an artifact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard import __version__
from shipyard.errors import ArtifactError, DataValidationError, IntegrityError
from shipyard.formats import FORMATS

#: Column roles: ``feature`` (a model input), ``label``, and the roles that are kept but never used
#: as features: ``id`` (identifies a row), ``time`` (a timestamp), ``text`` (free text), ``slice``.
ROLES = ("feature", "label", "id", "time", "text", "slice")
#: Feature kinds: ``numeric`` or ``categorical``; an empty kind is inferred from the dtype
#: (:func:`serving.preprocess.resolve_kind`).
FEATURE_KINDS = ("", "numeric", "categorical")
DATA_FILE = "data.parquet"
#: Rows per Parquet row group of a written Dataset: the block the MLP's streamed loader reads
#: (:mod:`components.train_model.stream`).
ROW_GROUP_ROWS = 65_536
SCHEMA_FILE = "schema.json"
MODEL_FILE = "model.json"
#: The ``format`` names a ``model.json`` may hold (the table is :data:`shipyard.formats.FORMATS`).
MODEL_FORMATS = tuple(FORMATS)
TASKS = ("binary", "multiclass", "regression")


# --- atomic writes ---------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a temp directory that replaces ``path`` only if the block succeeds.

    The temp directory is a sibling of ``path`` (same filesystem, so the rename is atomic). On an
    exception it is removed and ``path`` is left as it was.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700; artifacts are read by other users (pods, servers)
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Writes ``obj`` as indented JSON through a temp file and a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    os.replace(tmp, target)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes text through a temp file and a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, target)


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """Reads a JSON file, raising ArtifactError naming ``what`` and the file on failure."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{p}: missing {what}")
    try:
        return json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{p}: {what} is not valid JSON ({exc})") from exc


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (dt.datetime, dt.date)):
        return obj.isoformat()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


# --- digests ---------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Returns the hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest_tree(root: str | os.PathLike[str], exclude: tuple[str, ...] = (MODEL_FILE,)) -> dict[str, str]:
    """Returns ``{relative posix path: sha256}`` for every file under ``root`` but ``exclude``."""
    base = Path(root)
    return {
        p.relative_to(base).as_posix(): sha256_file(p)
        for p in sorted(base.rglob("*"))
        if p.is_file() and p.relative_to(base).as_posix() not in exclude
    }


def verify_tree(root: str | os.PathLike[str], expected: dict[str, str]) -> None:
    """Checks that ``root`` holds exactly the files in ``expected`` with those digests.

    Raises:
        IntegrityError: A file is missing, unlisted, or its digest differs.
    """
    actual = digest_tree(root)
    missing = sorted(set(expected) - set(actual))
    unlisted = sorted(set(actual) - set(expected))
    changed = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    problems = []
    if missing:
        problems.append(f"missing file(s) {missing}")
    if unlisted:
        problems.append(f"file(s) not listed in {MODEL_FILE}: {unlisted}")
    if changed:
        problems.append(f"sha256 mismatch for {changed}")
    if problems:
        raise IntegrityError(f"{root}: " + "; ".join(problems))


# --- Dataset -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of a Dataset: its name, pandas dtype, role and (for a feature) its kind."""

    name: str
    dtype: str
    role: str = "feature"
    kind: str = ""
    #: A feature with nulls somewhere in the ingested data: the model accepts (imputes) nulls in
    #: it even when the training split happens to have none.
    nullable: bool = False


@dataclasses.dataclass(frozen=True)
class DatasetSchema:
    """The ``schema.json`` of a Dataset artifact."""

    columns: tuple[Column, ...]

    @property
    def label(self) -> str | None:
        """The label column's name, or None for an unlabelled dataset."""
        labels = [c.name for c in self.columns if c.role == "label"]
        return labels[0] if labels else None

    @property
    def features(self) -> list[str]:
        """Names of the feature columns, in order."""
        return [c.name for c in self.columns if c.role == "feature"]

    def column(self, name: str) -> Column:
        """Returns the column called ``name``; raises ArtifactError if there is none."""
        for c in self.columns:
            if c.name == name:
                return c
        raise ArtifactError(f"schema has no column {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON form."""
        return {"version": 1, "columns": [_column_dict(c) for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Any, where: str = SCHEMA_FILE) -> DatasetSchema:
        """Parses the JSON form; raises ArtifactError naming ``where`` when it is malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
            raise ArtifactError(f"{where}: expected an object with a 'columns' list")
        cols = []
        for i, c in enumerate(data["columns"]):
            if not isinstance(c, dict) or set(c) - {"name", "dtype", "role", "kind", "nullable"} or "name" not in c:
                raise ArtifactError(
                    f"{where}: columns[{i}] must have keys name, dtype, role (kind, nullable optional); got {c!r}"
                )
            role = c.get("role", "feature")
            if role not in ROLES:
                raise ArtifactError(f"{where}: column {c['name']!r} has role {role!r}; expected one of {ROLES}")
            kind = c.get("kind", "")
            if kind not in FEATURE_KINDS:
                raise ArtifactError(
                    f"{where}: column {c['name']!r} has kind {kind!r}; expected one of {FEATURE_KINDS[1:]} or none"
                )
            nullable = c.get("nullable", False)
            if not isinstance(nullable, bool):
                raise ArtifactError(f"{where}: column {c['name']!r} has nullable {nullable!r}; expected true or false")
            cols.append(Column(str(c["name"]), str(c.get("dtype", "object")), role, kind, nullable))
        return cls(tuple(cols))


def _column_dict(c: Column) -> dict[str, Any]:
    """A column's JSON form; ``kind`` only when it is set, so older readers see what they know."""
    d = dataclasses.asdict(c)
    if not c.kind:
        del d["kind"]
    if not c.nullable:
        del d["nullable"]
    return d


#: Inference of a column's role and kind (:func:`infer_columns`): a string column with at most
#: ``max(CATEGORICAL_MAX_VALUES, CATEGORICAL_ROW_SHARE x rows)`` distinct values is categorical,
#: unless it holds a distinct value in each of at least ``ID_MIN_VALUES`` rows.
CATEGORICAL_MAX_VALUES = 50
CATEGORICAL_ROW_SHARE = 0.05
#: Non-null values a string column needs before "a distinct value per row" makes it an id (or text).
ID_MIN_VALUES = 20
#: Above the categorical limit, a string column whose values are this share distinct is an id.
ID_DISTINCT_SHARE = 0.95
#: A high-cardinality string column is free text when its values average this many words or characters.
TEXT_MIN_WORDS = 3.0
TEXT_MIN_LENGTH = 40.0
#: The first non-null values of a string column looked at for dates and free text.
SNIFF_VALUES = 1000
#: A date: ``YYYY-MM-DD`` (or ``/``, ``.``), ``DD/MM/YYYY`` or ``MM/DD/YYYY``, with an optional
#: time (``T`` or a space, ``HH:MM[:SS[.fff]]``, AM/PM) and zone (``Z``, ``UTC``, ``+01:00``).
DATE_PATTERN = (
    r"(?:\d{4}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])|[0-3]?\d[-/.][0-3]?\d[-/.]\d{4})"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:\s?[AaPp][Mm])?)?(?:\s?(?:Z|UTC|[+-]\d{2}:?\d{2}))?"
)
#: The roles a user may give a column through ingest's ``roles`` option (the label is named on its own).
DECLARABLE_ROLES = tuple(r for r in ROLES if r != "label")


def infer_schema(df: Any, label: str | None, id_columns: tuple[str, ...] = (), **declared: Any) -> DatasetSchema:
    """Builds a DatasetSchema from a DataFrame: :func:`infer_columns` (``declared``: its
    ``categorical``, ``numeric`` and ``roles``) without the notes."""
    return infer_columns(df, label, id_columns, **declared)[0]


def infer_columns(
    df: Any,
    label: str | None,
    id_columns: tuple[str, ...] = (),
    categorical: tuple[str, ...] = (),
    numeric: tuple[str, ...] = (),
    roles: dict[str, str] | None = None,
) -> tuple[DatasetSchema, dict[str, str]]:
    """Infers every column's role and, for a feature, its kind; the user's declarations win.

    ``label`` gets role ``label``, ``id_columns`` role ``id``, ``roles`` the role it names,
    ``categorical`` / ``numeric`` role ``feature`` with that kind. Every other column is inferred
    from its dtype and values:

    - numbers (int, uint, float) are numeric features (integers too: declare one categorical);
      booleans and pandas categoricals are categorical features;
    - datetimes (a datetime dtype, or strings whose first :data:`SNIFF_VALUES` values all match
      :data:`DATE_PATTERN`) get role ``time``: kept, never a feature;
    - strings with few distinct values (at most ``max(50, 5 % of rows)``) are categorical
      features; strings with a distinct value in every row (at least :data:`ID_MIN_VALUES`
      of them) or, above that limit, 95 % distinct get role ``text`` when they read as free
      text (on average 3 words or 40 characters) and role ``id`` otherwise: kept, never a
      feature; other high-cardinality strings are categorical features (training keeps their
      most frequent values);
    - anything else (complex numbers, durations, objects that are not strings) stays a feature
      without a kind, which ``validate_data`` reports as ``unusable_feature``.

    Args:
        df: The data.
        label: The label column, or None.
        id_columns: Columns that identify rows.
        categorical: Columns declared categorical features (e.g. integer codes).
        numeric: Columns declared numeric features (numbers or booleans only).
        roles: ``{column: role}`` for any other role (``feature``, ``id``, ``time``, ``text``, ``slice``).

    Returns:
        ``(schema, notes)``: notes maps a column to why it is not a plain feature (excluded,
        high-cardinality, unusable), one sentence each, in column order.

    Raises:
        DataValidationError: A column declared numeric does not hold numbers.
    """
    declared = dict(roles or {})
    declared.update({c: "id" for c in id_columns})
    columns, notes = [], {}
    for name in df.columns:
        series = df[name]
        dtype = str(series.dtype)
        if name == label:
            columns.append(Column(str(name), dtype, "label"))
            continue
        has_null = bool(series.isna().any())
        if name in categorical:
            columns.append(Column(str(name), dtype, "feature", "categorical", has_null))
            continue
        if name in numeric:
            _check_declared_numeric(series, str(name))
            columns.append(Column(str(name), dtype, "feature", "numeric", has_null))
            continue
        role, kind, note = _infer_column(series, str(name))
        if name in declared:
            if declared[name] == "feature" and role in ("id", "text"):
                kind, note = "categorical", ""  # strings the user wants used: their most frequent values
            elif declared[name] == "feature" and role == "time":
                note = f"column {name!r} holds datetimes and is declared a feature, which training cannot use"
            elif declared[name] != role:
                note = ""
            role = declared[name]
        feature = role == "feature"
        columns.append(Column(str(name), dtype, role, kind if feature else "", feature and has_null))
        if note:
            notes[str(name)] = note
    return DatasetSchema(tuple(columns)), notes


def _check_declared_numeric(series: Any, name: str) -> None:
    import pandas as pd

    dtype = series.dtype
    if (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)) or (
        pd.api.types.is_object_dtype(dtype) and _object_kind(series) in ("numeric", "bool", "empty")
    ):
        return
    present = series.dropna()
    example = f" (e.g. {present.iloc[0]!r})" if len(present) else ""
    raise DataValidationError(
        f"column {name!r} is declared numeric but has dtype {dtype}{example}; expected numbers or booleans "
        "(declare it categorical, or convert it before ingest)"
    )


def _object_kind(series: Any) -> str:
    """What an object column holds: ``string``, ``bool``, ``numeric``, ``datetime``, ``empty`` or ``other``."""
    from pandas.api.types import infer_dtype

    inferred = infer_dtype(series, skipna=True)
    if inferred == "empty":
        return "empty"
    if inferred == "boolean":
        return "bool"
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "numeric"
    if inferred in ("datetime", "datetime64", "date"):
        return "datetime"
    if inferred == "string":
        return "string"
    if inferred in ("mixed", "mixed-integer"):
        head = series.dropna().iloc[:SNIFF_VALUES]
        if all(isinstance(v, (str, int, float, bool)) for v in head):
            return "string"  # strings among numbers: compared as text
    return "other"


def _infer_column(series: Any, name: str) -> tuple[str, str, str]:
    """``(role, kind, note)`` of a column nobody declared (see :func:`infer_columns`)."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "feature", "categorical", ""
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "time", "", f"column {name!r} holds datetimes ({dtype}): role time, kept but not used as a feature"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "feature", "numeric", _row_number_note(series, name)
    held = _object_kind(series) if pd.api.types.is_object_dtype(dtype) else "other"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        held = "string"
    if held == "bool":
        return "feature", "categorical", ""
    if held == "numeric":
        return "feature", "numeric", ""
    if held == "empty":
        return "feature", "categorical", f"column {name!r} has no values (all null)"
    if held == "datetime":
        return "time", "", f"column {name!r} holds dates: role time, kept but not used as a feature"
    if held == "other":
        return (
            "feature",
            "",
            f"column {name!r} has dtype {dtype}, which training cannot use (it takes numbers, strings and "
            "booleans); give it another role (ingest option roles) or convert it",
        )
    return _infer_strings(series, name)


def _infer_strings(series: Any, name: str) -> tuple[str, str, str]:
    import math

    present = series.dropna()
    values = len(present)
    head = present.iloc[:SNIFF_VALUES].astype(str)
    if values and bool(head.str.fullmatch(DATE_PATTERN).all()):
        return (
            "time",
            "",
            f"column {name!r} holds dates as text (e.g. {head.iloc[0]!r}): role time, kept but not used as a feature",
        )
    distinct = int(present.nunique())
    limit = max(CATEGORICAL_MAX_VALUES, math.ceil(CATEGORICAL_ROW_SHARE * len(series)))
    per_row = values >= ID_MIN_VALUES and distinct == values
    if not per_row and distinct <= limit:
        return "feature", "categorical", ""
    words = float(head.str.count(r"\s+").mean()) + 1.0 if len(head) else 0.0
    length = float(head.str.len().mean()) if len(head) else 0.0
    seen = f"{distinct} distinct values in {values} rows"
    if words >= TEXT_MIN_WORDS or length >= TEXT_MIN_LENGTH:
        return (
            "text",
            "",
            f"column {name!r} reads as free text ({seen}, {words:.1f} words on average): role text, kept but "
            "not used as a feature",
        )
    if per_row or distinct >= ID_DISTINCT_SHARE * values:
        return (
            "id",
            "",
            f"column {name!r} looks like an identifier ({seen}): role id, kept but not used as a feature",
        )
    return (
        "feature",
        "categorical",
        f"column {name!r} is a high-cardinality categorical feature ({seen}): training keeps its most "
        "frequent values and puts the rest in one unknown bucket",
    )


def _row_number_note(series: Any, name: str) -> str:
    """A warning for an integer column that counts the rows (0, 1, 2, ... in order): a likely id."""
    import pandas as pd

    n = len(series)
    if n < ID_MIN_VALUES or not pd.api.types.is_integer_dtype(series.dtype) or not series.is_monotonic_increasing:
        return ""
    if int(series.iloc[-1]) - int(series.iloc[0]) != n - 1 or not series.is_unique:
        return ""
    return (
        f"column {name!r} counts the rows ({series.iloc[0]}..{series.iloc[-1]} in order): kept as a numeric "
        "feature; if it identifies rows, list it in id_columns"
    )


def write_dataset(path: str | os.PathLike[str], df: Any, schema: DatasetSchema) -> None:
    """Writes ``data.parquet`` and ``schema.json`` atomically into the directory ``path``."""
    with atomic_dir(path) as tmp:
        df.to_parquet(tmp / DATA_FILE, index=False, row_group_size=ROW_GROUP_ROWS)
        write_json(tmp / SCHEMA_FILE, schema.to_dict())


def read_dataset(path: str | os.PathLike[str], text_as_category: bool = False) -> tuple[Any, DatasetSchema]:
    """Reads a Dataset artifact directory into ``(DataFrame, DatasetSchema)``.

    Args:
        path: The artifact directory.
        text_as_category: Read string columns as pandas categoricals (Arrow dictionary decoding):
            a few distinct values are then counted, compared and hashed as integer codes, an
            order of magnitude faster than one Python string per row. For readers that only
            summarize the data (validation, drift).

    Raises:
        ArtifactError: The directory lacks ``data.parquet`` or a valid ``schema.json``, or the
            Parquet file cannot be read.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(path)
    schema = DatasetSchema.from_dict(read_json(root / SCHEMA_FILE, "dataset schema"), str(root / SCHEMA_FILE))
    data = root / DATA_FILE
    if not data.is_file():
        raise ArtifactError(f"{root}: missing {DATA_FILE}; is this a Shipyard Dataset?")
    try:
        if not text_as_category:
            return pd.read_parquet(data), schema
        text = [f.name for f in pq.read_schema(data) if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        return pd.read_parquet(data, read_dictionary=text), schema
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{data}: not a readable Parquet file ({exc})") from exc


# --- Model -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelManifest:
    """The ``model.json`` of a Model artifact."""

    format: str
    task: str
    input_schema: tuple[Column, ...]
    label: str
    label_names: tuple[Any, ...] = ()
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    files: dict[str, str] = dataclasses.field(default_factory=dict)
    parent: dict[str, Any] | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The fitted preprocessing (:class:`serving.preprocess.Preprocessing` as JSON); None is the
    #: identity over the input schema's numeric features.
    preprocessing: dict[str, Any] | None = None
    created_at: str = ""
    shipyard_version: str = __version__

    @property
    def feature_names(self) -> list[str]:
        """Input column names in the order the model expects them."""
        return [c.name for c in self.input_schema]

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON form."""
        d = dataclasses.asdict(self)
        d["input_schema"] = [_column_dict(c) for c in self.input_schema]
        if d["preprocessing"] is None:
            del d["preprocessing"]
        d["label_names"] = list(self.label_names)
        return d

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ModelManifest:
        """Parses the JSON form; raises ArtifactError naming ``where`` when it is malformed."""
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: expected a JSON object")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        missing = sorted(k for k in ("format", "task", "input_schema", "label", "files") if k not in data)
        if unknown or missing:
            raise ArtifactError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        if data["format"] not in MODEL_FORMATS:
            raise ArtifactError(f"{where}: format {data['format']!r} is not one of {MODEL_FORMATS}")
        if data["task"] not in TASKS:
            raise ArtifactError(f"{where}: task {data['task']!r} is not one of {TASKS}")
        files = data["files"]
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ArtifactError(f"{where}: 'files' must be an object mapping file names to sha256 strings")
        if not isinstance(data.get("preprocessing", {}), (dict, type(None))):
            raise ArtifactError(f"{where}: 'preprocessing' must be an object")
        if not isinstance(data.get("label_names", []), list):
            raise ArtifactError(f"{where}: 'label_names' must be a list")
        inputs = DatasetSchema.from_dict({"columns": data["input_schema"]}, where).columns
        return cls(**{**data, "input_schema": inputs, "label_names": tuple(data.get("label_names", ()))})


def write_model(path: str | os.PathLike[str], manifest: ModelManifest, build: Any) -> ModelManifest:
    """Writes a Model artifact atomically.

    Args:
        path: The artifact directory.
        manifest: The manifest; ``files`` and ``created_at`` are filled in here.
        build: ``build(tmpdir: Path) -> None`` writes the weights into the directory.

    Returns:
        The manifest as written, with the sha256 of every file.
    """
    with atomic_dir(path) as tmp:
        build(tmp)
        final = dataclasses.replace(
            manifest,
            files=digest_tree(tmp),
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        write_json(tmp / MODEL_FILE, final.to_dict())
    return final


def read_model_manifest(path: str | os.PathLike[str], verify: bool = True) -> ModelManifest:
    """Reads ``model.json`` and (by default) verifies every file's sha256.

    Raises:
        ArtifactError: ``path`` is not a Model artifact.
        IntegrityError: A file is missing, unlisted or changed.
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"{root}: not a directory; expected a Shipyard model artifact")
    manifest = ModelManifest.from_dict(
        read_json(root / MODEL_FILE, "model manifest (model.json)"), str(root / MODEL_FILE)
    )
    if verify:
        verify_tree(root, manifest.files)
    return manifest
