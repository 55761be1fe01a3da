from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    baseline: Input[Model],
    test: Input[Dataset],
    report: Output[Markdown],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    options: dict = {},
) -> bool:
    """Test-split metrics and the blessing: thresholds hold and the candidate is within a tolerance of the baseline.

    Args:
        model: The candidate (the quantized model that will be served).
        baseline: The baseline model to compare against.
        test: Test split.
        report: Output: Markdown metrics and checks.
        evaluation: Output: the evaluation as JSON.
        metrics: Output: scalar test metrics.
        classification: Output: confusion matrix and ROC curve (classification).
        options: thresholds ({metric: {min|max: x}}), baseline_tolerance, primary_metric,
            comparison (bootstrap|noninferiority|point), confidence, n_bootstrap, seed.

    Returns:
        Whether the model is blessed (the single output, so that kfp.local can branch on it).
    """
    from components.evaluate_model import core

    r = core.evaluate(
        model.path, test.path, evaluation.path, report.path, core.EvalConfig.from_dict(options), baseline.path
    )
    for key, value in r["metrics"].items():
        metrics.log_metric(key, value)
    if "confusion_matrix" in r:
        classification.log_confusion_matrix([str(n) for n in r["label_names"]], r["confusion_matrix"])
    if "roc" in r:
        classification.log_roc_curve(
            [p["fpr"] for p in r["roc"]], [p["tpr"] for p in r["roc"]], [p["threshold"] for p in r["roc"]]
        )
    return r["blessed"]
