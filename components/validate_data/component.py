from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate_data(
    dataset: Input[Dataset],
    schema: Output[Artifact],
    report: Output[Markdown],
    anomalies: Output[Artifact],
    metrics: Output[Metrics],
    html_report: Output[HTML],
    options: dict = {},
    schema_uri: str = "",
) -> NamedTuple("ValidationOutputs", [("rows", int), ("errors", int), ("warnings", int)]):
    """Infers or enforces a schema and reports anomalies; fails on error-severity anomalies.

    Args:
        dataset: The Dataset to validate.
        schema: Output: the schema used (schema.json), to edit and pass back as schema_uri.
        report: Output: Markdown anomaly table for the KFP UI.
        anomalies: Output: the machine-readable anomaly report (JSON).
        metrics: Output: rows and anomaly counts.
        html_report: Output: the anomaly table as HTML (errors red, warnings amber, example values).
        options: min_rows, max_domain_size, severity ({anomaly type: error|warning}), fail_on_error,
            model_ready (every feature something train_model can use: numbers, strings, booleans).
        schema_uri: A schema.json (file, schema artifact directory or gs:// URI) to enforce; empty infers one.
    """
    from components.validate_data import core

    s = core.validate(
        dataset.path,
        schema.path,
        anomalies.path,
        report.path,
        core.ValidateConfig.from_dict(options),
        schema_uri or None,
        html_report.path,
    )
    for key in ("rows", "anomalies", "errors", "warnings"):
        metrics.log_metric(key, s[key])
    return (s["rows"], s["errors"], s["warnings"])
