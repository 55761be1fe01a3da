"""Reading raw data (CSV, Parquet or a scikit-learn bundled dataset) into a Dataset artifact."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from shipyard import attempts, storage
from shipyard.artifacts import DECLARABLE_ROLES, DatasetSchema, infer_columns, write_dataset, write_text
from shipyard.config import Config, require
from shipyard.errors import DataValidationError
from shipyard.report import markdown_table

log = logging.getLogger(__name__)

SKLEARN_DATASETS = ("breast_cancer", "wine", "iris", "digits", "diabetes")
SKLEARN_PREFIX = "sklearn:"
#: The sources :func:`read_source` reads, for messages.
SUPPORTED_SOURCES = "a local path, a gs://BUCKET/OBJECT URI or sklearn:NAME"


@dataclasses.dataclass(frozen=True)
class IngestConfig(Config):
    """How to read the source, and what the user says about its columns.

    Every column not named here gets its role and kind inferred (see
    :func:`shipyard.artifacts.infer_columns` and the README).

    Attributes:
        label: The label column (must exist in the data).
        id_columns: Columns that identify rows; kept but never used as features.
        categorical: Columns to use as categorical features whatever their dtype (e.g. integer
            codes such as a zip code or a store number).
        numeric: Columns to use as numeric features (they must hold numbers or booleans).
        roles: ``{column: role}`` for any other role: ``feature`` (use a column inferred as an
            id, text or time), ``id``, ``time``, ``text`` or ``slice`` (kept, never a feature).
        csv_delimiter: Field delimiter for CSV sources.
    """

    section = "ingest"
    label: str = "target"
    id_columns: tuple = ()
    categorical: tuple = ()
    numeric: tuple = ()
    roles: dict = dataclasses.field(default_factory=dict)
    csv_delimiter: str = ","

    def validate(self) -> None:
        require(bool(self.label), self.section, "label must name a column")
        require(len(self.csv_delimiter) == 1, self.section, "csv_delimiter must be one character")
        bad = {c: r for c, r in self.roles.items() if r not in DECLARABLE_ROLES}
        require(
            not bad,
            self.section,
            f"roles: {bad} is not a role; expected one of {', '.join(DECLARABLE_ROLES)} (the label is named by label)",
        )
        named = {
            "id_columns": list(self.id_columns),
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "roles": list(self.roles),
        }
        for key, names in named.items():
            require(
                all(isinstance(n, str) and n for n in names), self.section, f"{key}: expected column names, got {names}"
            )
            require(
                self.label not in names, self.section, f"{key}: names the label {self.label!r}, which has role label"
            )
        keys = list(named)
        for i, first in enumerate(keys):
            for second in keys[i + 1 :]:
                both = sorted(set(named[first]) & set(named[second]))
                require(not both, self.section, f"column(s) {both} are in both {first} and {second}; name each once")


def read_source(source: str, csv_delimiter: str = ",") -> Any:
    """Reads ``source`` into a DataFrame.

    Args:
        source: ``sklearn:NAME``, or a path / ``gs://`` URI ending in .csv, .csv.gz or .parquet.
        csv_delimiter: Delimiter for CSV files.

    Raises:
        UnsupportedSchemeError: ``source`` is a URI whose scheme is not ``gs://`` (``s3://``,
            ``https://``, ...), checked before anything else.
        StorageError: The file does not exist.
        DataValidationError: The file is empty, unreadable, not UTF-8 or of an unknown type.
    """
    import pandas as pd

    if source.startswith(SKLEARN_PREFIX):
        return _sklearn_frame(source[len(SKLEARN_PREFIX) :])
    storage.check_supported(source, SUPPORTED_SOURCES)
    name = source.lower()
    if not name.endswith((".csv", ".csv.gz", ".parquet", ".pq")):
        raise DataValidationError(
            f"{source}: unknown file type; expected .csv, .csv.gz, .parquet, .pq or sklearn:NAME "
            f"(NAME one of {', '.join(SKLEARN_DATASETS)})"
        )
    path = storage.fetch(source)
    try:
        if name.endswith((".parquet", ".pq")):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep=csv_delimiter, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{source}: not UTF-8 text (byte {exc.start}); re-encode the file as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(f"{source}: the file is empty; expected a header and rows") from exc
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise DataValidationError(f"{source}: cannot be read as {Path(name).suffix.lstrip('.')} ({exc})") from exc
    df.columns = [str(c) for c in df.columns]
    if not name.endswith((".parquet", ".pq")) and len(df.columns) == 1:
        header = df.columns[0]
        found = [d for d in (";", "\t", "|", ",") if d != csv_delimiter and d in header]
        if found:
            raise DataValidationError(
                f"{source}: one column {header[:60]!r}; the file looks {found[0]!r}-delimited, "
                f"not {csv_delimiter!r} (set csv_delimiter)"
            )
    return df


def _sklearn_frame(name: str) -> Any:
    if name not in SKLEARN_DATASETS:
        raise DataValidationError(f"sklearn:{name}: unknown dataset; expected one of {', '.join(SKLEARN_DATASETS)}")
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    return bunch.frame


@attempts.step
def ingest(source: str, output_dir: str, config: IngestConfig, report_md: str | None = None) -> dict[str, Any]:
    """Reads ``source`` and writes it as a Dataset artifact to ``output_dir``.

    Args:
        source: See :func:`read_source`.
        output_dir: The Dataset artifact directory (written atomically).
        config: Label, column declarations and CSV options.
        report_md: Where to write the Markdown table of columns (role, kind, note), when wanted.

    Returns:
        ``{"rows": int, "columns": int, "label": str, "warnings": [str, ...]}``; each warning says
        why a column is not a plain feature (excluded as an id, text or time, high-cardinality, unusable).

    Raises:
        UnsupportedSchemeError: The source is an ``s3://``, ``https://``, ... URI.
        StorageError: The source does not exist.
        DataValidationError: The source is unreadable, empty, lacks the label or a column the
            options name, or a column declared numeric does not hold numbers.
    """
    df = read_source(source, config.csv_delimiter)
    return write_frame(df, source, output_dir, config.label, tuple(config.id_columns), config, report_md)


def write_frame(
    df: Any,
    source: str,
    output_dir: str,
    label: str | None,
    id_columns: tuple[str, ...] = (),
    config: IngestConfig | None = None,
    report_md: str | None = None,
) -> dict[str, Any]:
    """Writes ``df`` as a Dataset artifact with its column roles and kinds (what :func:`ingest` writes).

    ``label`` gets role ``label``, ``id_columns`` role ``id``, the columns ``config`` declares
    what it says, and every other column an inferred role and kind
    (:func:`shipyard.artifacts.infer_columns`). A column that is not used as a feature, or that
    training may not use well, is logged as a warning and listed in the returned ``warnings``.
    ``shipyard validate`` calls this too, so it checks the same artifact ``validate_data`` reads.

    Args:
        df: The data, as :func:`read_source` returns it.
        source: Where it came from (for messages).
        output_dir: The Dataset artifact directory (written atomically).
        label: The label column; None for data without one (``shipyard validate --no-label``).
        id_columns: Columns that identify rows.
        config: Column declarations (``categorical``, ``numeric``, ``roles``); its label and id
            columns are not looked at (``label`` and ``id_columns`` are).
        report_md: Where to write the Markdown table of columns, when wanted.

    Returns:
        ``{"rows": int, "columns": int, "label": str | None, "warnings": [str, ...]}``.

    Raises:
        DataValidationError: The data has no columns, lacks the label or a named column, or a
            column declared numeric does not hold numbers.
    """
    if len(df.columns) == 0:
        raise DataValidationError(f"{source}: no columns")
    categorical = tuple(config.categorical) if config else ()
    numeric = tuple(config.numeric) if config else ()
    roles = dict(config.roles) if config else {}
    needed = [c for c in (label, *id_columns, *categorical, *numeric, *roles) if c is not None]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        shown = ", ".join(list(df.columns)[:10]) + (", ..." if len(df.columns) > 10 else "")
        raise DataValidationError(f"{source}: column(s) {missing} not found; the columns are: {shown}")
    try:
        schema, notes = infer_columns(df, label, tuple(id_columns), categorical, numeric, roles)
    except DataValidationError as exc:
        raise DataValidationError(f"{source}: {exc}") from exc
    for note in notes.values():
        log.warning("ingest: %s", note)
    write_dataset(output_dir, df, schema)
    if report_md is not None:
        write_text(report_md, describe(schema, notes, source, len(df)))
    return {"rows": int(len(df)), "columns": int(len(df.columns)), "label": label, "warnings": list(notes.values())}


def describe(schema: DatasetSchema, notes: dict[str, str], source: str, rows: int) -> str:
    """The Markdown report: one row per column with its dtype, role, kind and the note on it."""
    features = schema.features
    kept = [c.name for c in schema.columns if c.role not in ("feature", "label")]
    head = (
        f"# Ingest\n\n{source}: {rows} rows, {len(schema.columns)} columns; {len(features)} feature(s)"
        + (f", {len(kept)} kept but not used as features ({', '.join(kept)})" if kept else "")
        + ".\n\n"
    )
    table = [(c.name, c.dtype, c.role, c.kind, notes.get(c.name, "")) for c in schema.columns]
    return head + markdown_table(["column", "dtype", "role", "kind", "note"], table)
