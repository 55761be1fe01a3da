"""Reading raw data (CSV, Parquet or a scikit-learn bundled dataset) into a Dataset artifact."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from shipyard import attempts, storage
from shipyard.artifacts import infer_schema, write_dataset
from shipyard.config import Config, require
from shipyard.errors import DataValidationError

SKLEARN_DATASETS = ("breast_cancer", "wine", "iris", "digits", "diabetes")
SKLEARN_PREFIX = "sklearn:"
#: The sources :func:`read_source` reads, for messages.
SUPPORTED_SOURCES = "a local path, a gs://BUCKET/OBJECT URI or sklearn:NAME"


@dataclasses.dataclass(frozen=True)
class IngestConfig(Config):
    """How to read the source.

    Attributes:
        label: The label column (must exist in the data).
        id_columns: Columns that identify rows; kept but never used as features.
        csv_delimiter: Field delimiter for CSV sources.
    """

    section = "ingest"
    label: str = "target"
    id_columns: tuple = ()
    csv_delimiter: str = ","

    def validate(self) -> None:
        require(bool(self.label), self.section, "label must name a column")
        require(len(self.csv_delimiter) == 1, self.section, "csv_delimiter must be one character")


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
def ingest(source: str, output_dir: str, config: IngestConfig) -> dict[str, Any]:
    """Reads ``source`` and writes it as a Dataset artifact to ``output_dir``.

    Args:
        source: See :func:`read_source`.
        output_dir: The Dataset artifact directory (written atomically).
        config: Label, id columns and CSV options.

    Returns:
        ``{"rows": int, "columns": int, "label": str}``.

    Raises:
        UnsupportedSchemeError: The source is an ``s3://``, ``https://``, ... URI.
        StorageError: The source does not exist.
        DataValidationError: The source is unreadable, empty or lacks the label / id columns.
    """
    df = read_source(source, config.csv_delimiter)
    return write_frame(df, source, output_dir, config.label, tuple(config.id_columns))


def write_frame(
    df: Any, source: str, output_dir: str, label: str | None, id_columns: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Writes ``df`` as a Dataset artifact with its column roles (what :func:`ingest` writes).

    ``label`` gets role ``label``, ``id_columns`` role ``id``, every other column ``feature``.
    ``shipyard validate`` calls this too, so it checks the same artifact ``validate_data`` reads.

    Args:
        df: The data, as :func:`read_source` returns it.
        source: Where it came from (for messages).
        output_dir: The Dataset artifact directory (written atomically).
        label: The label column; None for data without one (``shipyard validate --no-label``).
        id_columns: Columns that identify rows.

    Returns:
        ``{"rows": int, "columns": int, "label": str | None}``.

    Raises:
        DataValidationError: The data has no columns, or lacks the label or an id column.
    """
    if len(df.columns) == 0:
        raise DataValidationError(f"{source}: no columns")
    needed = [c for c in (label, *id_columns) if c is not None]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        shown = ", ".join(list(df.columns)[:10]) + (", ..." if len(df.columns) > 10 else "")
        raise DataValidationError(f"{source}: column(s) {missing} not found; the columns are: {shown}")
    schema = infer_schema(df, label, tuple(id_columns))
    write_dataset(output_dir, df, schema)
    return {"rows": int(len(df)), "columns": int(len(df.columns)), "label": label}
