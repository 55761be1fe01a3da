from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def drift_check(
    reference: Input[Artifact],
    current: Input[Dataset],
    report: Output[Markdown],
    html_report: Output[HTML],
    drift: Output[Artifact],
    metrics: Output[Metrics],
    options: dict = {},
) -> bool:
    """Per-column drift (Evidently's default tests) of current data against a reference.

    Args:
        reference: validate_data's schema artifact (holding the reference profile), a profile
            directory, or a reference Dataset.
        current: The Dataset to check.
        report: Output: Markdown table of columns, tests, scores and verdicts.
        html_report: Output: the same as an HTML page.
        drift: Output: the result as JSON.
        metrics: Output: drift_share and drifted_columns.
        options: drift_share, columns, per_column ({column: {method, threshold}}), numeric_method,
            categorical_method, max_sorted, html_report (shipyard | evidently: Evidently's own page;
            needs the evidently extra and a reference Dataset).

    Returns:
        Whether the dataset drifted (at least drift_share of the columns did); the single output,
        so that kfp.local can branch on it. The share is in ``metrics``.
    """
    from components.drift_check import core

    r = core.drift_check(
        reference.path, current.path, drift.path, report.path, html_report.path, core.DriftConfig.from_dict(options)
    )
    metrics.log_metric("drift_share", r["drift_share"])
    metrics.log_metric("drifted_columns", len(r["drifted_columns"]))
    return r["dataset_drift"]
