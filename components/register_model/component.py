from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    evaluation: Input[Artifact],
    model_name: str,
    blessed: bool,
    params: dict = {},
    tracking_uri: str = "",
    kfp_run: str = "",
    data: str = "",
) -> NamedTuple("RegisterOutputs", [("version", int), ("run_id", str)]):
    """Logs the model to MLflow and registers a version; moves the 'challenger' alias when blessed.

    Args:
        model: The Model artifact to register.
        evaluation: The evaluation JSON (its metrics are logged).
        model_name: Registered model name; empty derives it from data.
        blessed: The evaluation's verdict.
        params: Hyperparameters to log.
        tracking_uri: MLflow tracking URI; empty uses $MLFLOW_TRACKING_URI, else sqlite under $SHIPYARD_HOME.
        kfp_run: The KFP run (job) name, recorded as a tag.
        data: The run's data source (the model name derives from it when empty).
    """
    from components.register_model import core

    r = core.register(
        model.path,
        model_name,
        evaluation.path,
        blessed,
        tracking_uri,
        params,
        {"kfp.run": kfp_run},
        {"evaluation": evaluation.path},
        data,
    )
    return (r["version"], r["run_id"])
