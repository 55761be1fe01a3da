from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Model, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    evaluation: Input[Artifact],
    card: Output[Markdown],
    card_html: Output[HTML],
    model_name: str,
    blessed: bool,
    params: dict = {},
    tracking_uri: str = "",
    kfp_run: str = "",
    data: str = "",
    dataset: Input[Dataset] = None,
    validation: Input[Artifact] = None,
    study: Input[Artifact] = None,
    comparison: Input[Artifact] = None,
    quantization: Input[Artifact] = None,
    example: Input[Dataset] = None,
    evaluation_html: Input[HTML] = None,
    figures: Input[Artifact] = None,
    model_card: dict = {},
) -> NamedTuple("RegisterOutputs", [("version", int), ("run_id", str)]):
    """Registers an MLflow Model (pyfunc over the safe loader) with its story as tags; moves challenger if blessed.

    Args:
        model: The Model artifact to register.
        evaluation: The evaluation JSON (its metrics are logged, its gate outcome tagged).
        card: Output: the model card (Markdown), also logged with the version.
        card_html: Output: the model card as HTML.
        model_name: Registered model name; empty derives it from data.
        blessed: The evaluation's verdict.
        params: Hyperparameters to log.
        tracking_uri: MLflow tracking URI; empty uses $MLFLOW_TRACKING_URI, else sqlite under $SHIPYARD_HOME.
        kfp_run: The KFP run (job) name, recorded as a tag.
        data: The run's data source (tagged; the model name derives from it when empty).
        dataset: Optional: the ingested Dataset (its data.parquet's sha256 is tagged).
        validation: Optional: validate_data's anomaly JSON (the verdict is tagged).
        study: Optional: tune_hyperparams' study artifact (study name and best trial are tagged).
        comparison: Optional: train_model's comparison JSON (the candidate family is tagged).
        quantization: Optional: quantize_model's table JSON (variant, size and latency are tagged).
        example: Optional: a Dataset split whose first rows become the MLflow Model's input example
            (and the test split the model card describes).
        evaluation_html: Optional: evaluate_model's HTML report (pictures inline), logged under reports/.
        figures: Optional: evaluate_model's PNG pictures, logged under reports/figures/.
        model_card: Model card options (intended_use, out_of_scope, limitations, owners,
            min_test_rows, min_class_share).
    """
    from components.register_model import core
    from shipyard.modelcard import CardConfig

    def path(artifact):
        return None if artifact is None else artifact.path

    r = core.register(
        model.path,
        model_name,
        evaluation.path,
        blessed,
        tracking_uri,
        params,
        {"kfp.run": kfp_run},
        {"evaluation": evaluation.path, "evaluation_html": path(evaluation_html), "figures": path(figures)},
        data,
        reports={
            "dataset": path(dataset),
            "validation": path(validation),
            "tune": path(study),
            "comparison": path(comparison),
            "quantization": path(quantization),
        },
        example_dir=path(example),
        card=CardConfig.from_dict(model_card),
        card_md=card.path,
        card_html=card_html.path,
    )
    return (r["version"], r["run_id"])
