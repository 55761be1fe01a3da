from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    baseline: Input[Model],
    test: Input[Dataset],
    val: Input[Dataset],
    report: Output[Markdown],
    html: Output[HTML],
    evaluation: Output[Artifact],
    figures: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    options: dict = {},
    model_name: str = "",
    tracking_uri: str = "",
    data: str = "",
) -> bool:
    """Test-split metrics, slices and the blessing: thresholds hold and the candidate is not worse than the champion.

    Args:
        model: The candidate (the quantized model that will be served).
        baseline: The in-run linear baseline (a reported comparison; gating with gate_on_baseline).
        test: Test split.
        val: Validation split (the binary decision threshold is chosen on it).
        report: Output: Markdown verdict, every check, metrics and slices.
        html: Output: the same as a page with the pictures inline.
        evaluation: Output: evaluation.json (the machine-readable evaluation).
        figures: Output: directory of PNG pictures (calibration, ROC, PR, residuals).
        metrics: Output: scalar test metrics.
        classification: Output: confusion matrix and ROC curve (classification).
        options: thresholds, change_thresholds, primary_metric, comparison, champion_tolerance,
            baseline_tolerance, gate_on_baseline, compare_on_common_features, force_bless,
            threshold_objective, threshold_target, slices, min_slice_rows, slice_buckets, fairness,
            confidence, n_bootstrap, seed, champion_alias.
        model_name: Registered model name whose champion the candidate is compared with; empty
            derives it from data.
        tracking_uri: MLflow registry URI; empty uses $MLFLOW_TRACKING_URI, else sqlite under $SHIPYARD_HOME.
        data: The run's data source (the model name derives from it when empty).

    Returns:
        Whether the model is blessed (the single output, so that kfp.local can branch on it).
    """
    import tempfile

    from components.evaluate_model import core

    config = core.EvalConfig.from_dict(options)
    with tempfile.TemporaryDirectory(prefix="shipyard-champion-") as work:
        champion_dir, champion_version, looked_up = core.fetch_champion(
            tracking_uri, model_name, data, config.champion_alias, work
        )
        r = core.evaluate(
            model.path,
            test.path,
            evaluation.path,
            report.path,
            config,
            baseline.path,
            val_dir=val.path,
            champion_dir=champion_dir,
            champion_version=champion_version,
            champion_lookup=looked_up,
            report_html=html.path,
            images_dir=figures.path,
        )
    for key, value in r["metrics"].items():
        if value is not None:
            metrics.log_metric(key, value)
    if "confusion_matrix" in r:
        classification.log_confusion_matrix([str(n) for n in r["label_names"]], r["confusion_matrix"])
    if "roc" in r:
        classification.log_roc_curve(
            [p["fpr"] for p in r["roc"]], [p["tpr"] for p in r["roc"]], [p["threshold"] for p in r["roc"]]
        )
    return r["blessed"]
