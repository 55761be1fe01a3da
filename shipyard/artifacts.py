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
from shipyard.errors import ArtifactError, IntegrityError

#: Column roles: ``feature`` (a model input), ``label``, and the roles that are kept but never used
#: as features: ``id`` (identifies a row), ``time`` (a timestamp), ``text`` (free text), ``slice``.
ROLES = ("feature", "label", "id", "time", "text", "slice")
#: Feature kinds: ``numeric`` or ``categorical``; an empty kind is inferred from the dtype
#: (:func:`serving.preprocess.resolve_kind`).
FEATURE_KINDS = ("", "numeric", "categorical")
DATA_FILE = "data.parquet"
SCHEMA_FILE = "schema.json"
MODEL_FILE = "model.json"
MODEL_FORMATS = ("sklearn-skops", "torchscript", "onnx", "tflite", "keras")
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
            if not isinstance(c, dict) or set(c) - {"name", "dtype", "role", "kind"} or "name" not in c:
                raise ArtifactError(f"{where}: columns[{i}] must have keys name, dtype, role (kind optional); got {c!r}")
            role = c.get("role", "feature")
            if role not in ROLES:
                raise ArtifactError(f"{where}: column {c['name']!r} has role {role!r}; expected one of {ROLES}")
            kind = c.get("kind", "")
            if kind not in FEATURE_KINDS:
                raise ArtifactError(
                    f"{where}: column {c['name']!r} has kind {kind!r}; expected one of {FEATURE_KINDS[1:]} or none"
                )
            cols.append(Column(str(c["name"]), str(c.get("dtype", "object")), role, kind))
        return cls(tuple(cols))


def _column_dict(c: Column) -> dict[str, Any]:
    """A column's JSON form; ``kind`` only when it is set, so older readers see what they know."""
    d = dataclasses.asdict(c)
    if not c.kind:
        del d["kind"]
    return d


def infer_schema(df: Any, label: str | None, id_columns: tuple[str, ...] = ()) -> DatasetSchema:
    """Builds a DatasetSchema from a DataFrame: ``label`` gets role label, ids role id."""
    return DatasetSchema(
        tuple(
            Column(
                str(name),
                str(dtype),
                "label" if name == label else "id" if name in id_columns else "feature",
            )
            for name, dtype in df.dtypes.items()
        )
    )


def write_dataset(path: str | os.PathLike[str], df: Any, schema: DatasetSchema) -> None:
    """Writes ``data.parquet`` and ``schema.json`` atomically into the directory ``path``."""
    with atomic_dir(path) as tmp:
        df.to_parquet(tmp / DATA_FILE, index=False)
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
