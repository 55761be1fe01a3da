"""Seeded, stratified train / validation / test split of a Dataset artifact."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from shipyard import attempts
from shipyard.artifacts import read_dataset, write_dataset
from shipyard.config import Config, require
from shipyard.errors import DataValidationError
from shipyard.tasks import infer_task


@dataclasses.dataclass(frozen=True)
class SplitConfig(Config):
    """Split fractions (summing to 1), seed, and whether to stratify classification labels."""

    section = "split"
    train: float = 0.70
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    stratify: bool = True

    def validate(self) -> None:
        for name in ("train", "val", "test"):
            require(0 < getattr(self, name) < 1, self.section, f"{name} must be between 0 and 1")
        require(
            abs(self.train + self.val + self.test - 1) < 1e-6,
            self.section,
            f"train + val + test must be 1, got {self.train + self.val + self.test:g}",
        )


@attempts.step
def split(dataset_dir: str, train_dir: str, val_dir: str, test_dir: str, config: SplitConfig) -> dict[str, Any]:
    """Splits a Dataset artifact into three, keeping its schema.

    Returns:
        Row counts ``{"train", "val", "test"}`` and whether the split was stratified.

    Raises:
        DataValidationError: Too few rows for three non-empty parts, or no label column.
    """
    from sklearn.model_selection import train_test_split

    df, schema = read_dataset(dataset_dir)
    if schema.label is None:
        raise DataValidationError(f"{dataset_dir}: the dataset has no label column to split on")
    smallest = min(config.train, config.val, config.test)
    if len(df) * smallest < 1:
        need = math.ceil(1 / smallest)
        raise DataValidationError(
            f"{dataset_dir}: {len(df)} row(s); the {smallest:g} fraction needs at least {need} rows "
            "for one row in every part"
        )
    y = df[schema.label]
    if y.isna().any():
        raise DataValidationError(
            f"{dataset_dir}: label {schema.label!r} has {int(y.isna().sum())} missing value(s); expected none"
        )
    strat = None
    if config.stratify and infer_task(y, column=schema.label) != "regression":
        counts = y.value_counts()
        # Each part needs at least one row per class for stratification to be defined.
        if counts.min() * min(config.val, config.test) >= 1:
            strat = y
    rest_frac = config.val + config.test
    train, rest = train_test_split(df, test_size=rest_frac, random_state=config.seed, stratify=strat)
    strat_rest = rest[schema.label] if strat is not None else None
    val, test = train_test_split(rest, test_size=config.test / rest_frac, random_state=config.seed, stratify=strat_rest)
    for part, path in ((train, train_dir), (val, val_dir), (test, test_dir)):
        write_dataset(path, part.reset_index(drop=True), schema)
    return {"train": len(train), "val": len(val), "test": len(test), "stratified": strat is not None}
