from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def tune_hyperparams(
    train: Input[Dataset],
    val: Input[Dataset],
    study: Output[Artifact],
    report: Output[Markdown],
    best_model: Output[Model],
    seed: int = 0,
    options: dict = {},
    tracking_uri: str = "",
) -> NamedTuple("TuneOutputs", [("best_params", dict), ("best_value", float)]):
    """Optuna study (seeded TPE, median pruning) over the MLP's hyperparameters, budgeted by data size.

    Args:
        train: Training split.
        val: Validation split; the objective is its loss.
        study: Output: trials.json and the SQLite study (unless options.storage names an RDB).
        report: Output: Markdown table of the trials.
        best_model: Output: the best trial's MLP (train_model reuses it instead of training it again).
        seed: Sampler seed.
        options: n_trials, timeout_s, search_space, base, storage (e.g. postgresql://...), study_name,
            pruning, auto_budget.
        tracking_uri: MLflow tracking URI; empty uses $MLFLOW_TRACKING_URI (each trial a nested run).
    """
    from components.tune_hyperparams import core

    r = core.tune(
        train.path,
        val.path,
        study.path,
        report.path,
        core.TuneConfig.from_dict({**options, "seed": seed}),
        best_model_dir=best_model.path,
        tracking_uri=tracking_uri,
    )
    return (r["best_params"], r["best_value"])
