from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest_data(source: str, label: str, dataset: Output[Dataset], report: Output[Markdown], options: dict = {}) -> int:
    """Reads CSV/Parquet (path or gs:// URI) or sklearn:NAME into a Dataset artifact.

    Each column gets a role and, for a feature, a kind (numeric or categorical), inferred from its
    dtype and values unless the options declare it; ids, free text and datetimes are kept but
    excluded from the features, with a warning in the log and in the report.

    Args:
        source: Path or URI of a .csv / .parquet file, or sklearn:breast_cancer (wine, iris, digits, diabetes).
        label: The label column.
        dataset: Output Dataset (data.parquet + schema.json with column roles and kinds).
        report: Output: Markdown table of the columns (dtype, role, kind, why a column is excluded).
        options: id_columns (list), categorical (list), numeric (list), roles ({column: role}),
            csv_delimiter (str).

    Returns:
        The number of rows ingested.
    """
    from components.ingest_data import core

    config = core.IngestConfig.from_dict({**options, "label": label})
    return core.ingest(source, dataset.path, config, report.path)["rows"]
