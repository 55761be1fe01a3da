from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from shipyard.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_model(
    train: Input[Dataset],
    val: Input[Dataset],
    model: Output[Model],
    baseline: Output[Model],
    params: dict = {},
    overrides: dict = {},
) -> NamedTuple("TrainOutputs", [("val_loss", float), ("baseline_val_loss", float), ("device", str)]):
    """Trains the PyTorch MLP (CUDA when present) and a scikit-learn baseline.

    Args:
        train: Training split.
        val: Validation split (early stopping).
        model: Output: the MLP as a torchscript Model artifact.
        baseline: Output: the baseline as a sklearn-skops Model artifact.
        params: Hyperparameters, usually tune_hyperparams' best_params.
        overrides: Values that win over params (e.g. {"device": "cpu"}).
    """
    from components.train_model import core

    r = core.train(train.path, val.path, model.path, baseline.path, core.TrainConfig.from_dict({**params, **overrides}))
    return (r["best_val_loss"], r["baseline_val_loss"], r["device"])
