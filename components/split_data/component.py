from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from shipyard.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def split_data(
    dataset: Input[Dataset],
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
    seed: int = 0,
    options: dict = {},
) -> NamedTuple("SplitOutputs", [("train_rows", int), ("val_rows", int), ("test_rows", int)]):
    """Seeded, stratified train/validation/test split (70/15/15 by default).

    Args:
        dataset: The Dataset to split.
        train: Output training split.
        val: Output validation split.
        test: Output test split.
        seed: Random seed.
        options: train, val, test (fractions summing to 1), stratify (bool).
    """
    from components.split_data import core

    n = core.split(dataset.path, train.path, val.path, test.path, core.SplitConfig.from_dict({**options, "seed": seed}))
    return (n["train"], n["val"], n["test"])
