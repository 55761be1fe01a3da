from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from shipyard.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_model(
    train: Input[Dataset],
    val: Input[Dataset],
    tuned: Input[Model],
    model: Output[Model],
    baseline: Output[Model],
    comparison: Output[Markdown],
    comparison_json: Output[Artifact],
    metrics: Output[Metrics],
    curves: Output[HTML],
    params: dict = {},
    overrides: dict = {},
    tracking_uri: str = "",
) -> NamedTuple(
    "TrainOutputs", [("val_loss", float), ("baseline_val_loss", float), ("device", str), ("candidate", str)]
):
    """Trains the GBDT, the PyTorch MLP (CUDA when present) and the linear baseline; writes the best as the candidate.

    Args:
        train: Training split.
        val: Validation split (early stopping and the choice of candidate).
        tuned: tune_hyperparams' best trial's MLP; reused when its data and parameters are these.
        model: Output: the candidate (the best validation primary metric, or the family forced by
            candidate) as a torchscript or sklearn-skops Model artifact.
        baseline: Output: the linear baseline as a sklearn-skops Model artifact.
        comparison: Output: the families' validation metrics, fit seconds and formats (Markdown).
        comparison_json: Output: the same comparison as JSON.
        metrics: Output: each family's validation metrics (``<family>_<metric>``).
        curves: Output: the MLP's training and validation loss per epoch (HTML, inline chart).
        params: Hyperparameters, usually tune_hyperparams' best_params.
        overrides: Values that win over params (e.g. {"device": "cpu"}, {"candidate": "gbdt"}).
        tracking_uri: MLflow tracking URI; empty uses $MLFLOW_TRACKING_URI (KFP 2.17 injects it
            with the task's run, which the step then logs into), else nothing is tracked.
    """
    from components.train_model import core

    r = core.train(
        train.path,
        val.path,
        model.path,
        baseline.path,
        core.TrainConfig.from_dict({**params, **overrides}),
        comparison_json=comparison_json.path,
        comparison_md=comparison.path,
        tuned_dir=tuned.path,
        tracking_uri=tracking_uri,
        curves_html=curves.path,
    )
    for family, row in r["table"].items():
        for key, value in row["metrics"].items():
            metrics.log_metric(f"{family}_{key}", value)
        metrics.log_metric(f"{family}_fit_seconds", row["fit_seconds"])
    return (r["best_val_loss"], r["baseline_val_loss"], r["device"], r["candidate"])
