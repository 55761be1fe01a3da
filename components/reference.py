"""The reference artifacts: the breast-cancer data run through the components' own cores, in pipeline order.

Tests and benchmarks both need real artifacts to work on (a Dataset split three ways, the
scikit-learn baseline, the TorchScript MLP, its quantized variant). This is the one place that
builds them, with the same cores and configurations the flagship pipeline calls, so what a test
checks or a benchmark serves is what a pipeline run produces. It lives in ``components`` because it
composes component cores: the kernel (``shipyard``) and ``serving`` may not import components, and
``tests``/``benchmarks`` are not installed packages the other could import.

Every framework is imported inside :func:`build_reference`, so importing this module stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from components.quantize_model.core import QuantizeConfig
    from components.train_model.core import TrainConfig

#: The data every reference artifact is built from (ingest_data's scikit-learn source).
REFERENCE_DATA = "sklearn:breast_cancer"


def build_reference(
    root: Path,
    *,
    mlp: TrainConfig | None = None,
    quantize: QuantizeConfig | None = None,
) -> dict[str, Path]:
    """Ingests and splits the reference data, fits the baseline and, when asked, the MLP and its variant.

    Without ``mlp`` only the scikit-learn baseline is fitted (a standardized logistic regression:
    well under a second), with train_model's own ``fit_preprocessing``, ``fit_baseline``,
    ``validation_loss`` and ``save_sklearn_model``, so it is the artifact ``train`` writes beside the
    candidate. With ``mlp``, ``train`` runs on the MLP and the baseline (no GBDT) with the MLP forced
    as the candidate (``model`` is always the TorchScript MLP); with ``quantize`` as well,
    quantize_model chooses a variant of the MLP.

    Args:
        root: Directory to build under; created if absent. Each artifact is a subdirectory.
        mlp: Train the TorchScript MLP with these hyperparameters (``None``: baseline only).
        quantize: Quantize the MLP with this configuration (needs ``mlp``; ``None``: no variant).

    Returns:
        Artifact directories by name: ``dataset``, ``train``, ``val``, ``test`` and ``baseline``;
        ``model`` with ``mlp``; ``quantized`` with ``quantize``.

    Raises:
        ValueError: ``quantize`` without ``mlp`` (there is nothing to quantize).
    """
    from components.ingest_data import core as ingest
    from components.split_data import core as split

    if quantize is not None and mlp is None:
        raise ValueError("build_reference: quantize needs mlp (the variant is built from the MLP)")
    root.mkdir(parents=True, exist_ok=True)
    names = ["dataset", "train", "val", "test", "baseline"]
    names += ["model"] if mlp is not None else []
    names += ["quantized"] if quantize is not None else []
    paths = {name: root / name for name in names}
    ingest.ingest(REFERENCE_DATA, str(paths["dataset"]), ingest.IngestConfig())
    split.split(str(paths["dataset"]), str(paths["train"]), str(paths["val"]), str(paths["test"]), split.SplitConfig())
    if mlp is None:
        _baseline_only(paths["train"], paths["val"], paths["baseline"])
        return paths

    import dataclasses

    from components.train_model import core as train

    # The reference model is the MLP whichever family wins on validation: quantization needs one.
    config = dataclasses.replace(mlp, candidate="mlp", families=("mlp", "linear"))
    train.train(str(paths["train"]), str(paths["val"]), str(paths["model"]), str(paths["baseline"]), config)
    if quantize is not None:
        from components.quantize_model import core as quantize_core

        quantize_core.quantize(
            str(paths["model"]),
            str(paths["val"]),
            str(paths["quantized"]),
            str(root / "quantize.json"),
            str(root / "quantize.md"),
            quantize,
        )
    return paths


def _baseline_only(train_dir: Path, val_dir: Path, baseline_dir: Path) -> None:
    """The baseline half of train_model's ``train``: same split loading, estimator, loss and manifest.

    The reference task is binary, so the validation loss is the log loss ``train`` records (the
    MLP's ``y_std`` enters only a regression baseline's loss).
    """
    from components.train_model import core as train

    config = train.TrainConfig()
    tr = train.load_split(str(train_dir), config.task)
    va = train.load_split(str(val_dir), tr.task, tr.label_names)
    prep = train.fit_preprocessing(tr, "linear")
    x, xv = train.encode(prep, tr), train.encode(prep, va)
    baseline = train.fit_baseline(tr, config.seed, x)
    loss = train.validation_loss(baseline, va, x=xv)
    details = {"family": "linear", "params": {"seed": config.seed}, "role": "baseline"}
    train.save_sklearn_model(str(baseline_dir), baseline, tr, {"val_loss": loss}, details, prep)


def sklearn_data(task: str, label_names: list | None = None):  # -> TabularData (import kept lazy)
    """A scikit-learn dataset as ``TabularData`` with features ``f0, f1, ...``, no split.

    Args:
        task: ``binary`` (breast cancer), ``multiclass`` (wine) or ``regression`` (diabetes).
        label_names: Class names in label order (default: the integer classes).
    """
    import numpy as np
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    from components.train_model.core import TabularData
    from shipyard.artifacts import Column

    bunch = {"binary": load_breast_cancer, "multiclass": load_wine, "regression": load_diabetes}[task]()
    names = [f"f{i}" for i in range(bunch.data.shape[1])]
    classes = [] if task == "regression" else sorted(set(bunch.target.tolist()))
    return TabularData(
        x=bunch.data.astype(np.float32),
        y=bunch.target.astype(np.float32 if task == "regression" else np.int64),
        feature_names=names,
        label="y",
        label_names=classes if label_names is None else label_names,
        task=task,
        input_schema=tuple(Column(f, "float32") for f in names),
    )
