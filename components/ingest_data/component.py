from kfp import dsl
from kfp.dsl import Dataset, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ingest_data(source: str, label: str, dataset: Output[Dataset], options: dict = {}) -> int:
    """Reads CSV/Parquet (path or gs:// URI) or sklearn:NAME into a Dataset artifact.

    Args:
        source: Path or URI of a .csv / .parquet file, or sklearn:breast_cancer (wine, iris, digits, diabetes).
        label: The label column.
        dataset: Output Dataset (data.parquet + schema.json with column roles).
        options: id_columns (list), csv_delimiter (str).

    Returns:
        The number of rows ingested.
    """
    from components.ingest_data import core

    return core.ingest(source, dataset.path, core.IngestConfig.from_dict({**options, "label": label}))["rows"]
