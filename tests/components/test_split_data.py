"""Tests for components.split_data.core: fractions, stratification, determinism, no lost rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.split_data.core import SplitConfig, split
from shipyard.artifacts import infer_schema, read_dataset, write_dataset
from shipyard.errors import ConfigError, DataValidationError

PARTS = ("train", "val", "test")


def _dataset(path: Path, name: str = "breast_cancer") -> Path:
    import sklearn.datasets

    df = getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame
    df.insert(0, "row_id", np.arange(len(df)) + 1000)
    write_dataset(path, df, infer_schema(df, "target", ("row_id",)))
    return path


@pytest.fixture(scope="module")
def breast_cancer(tmp_path_factory) -> Path:
    return _dataset(tmp_path_factory.mktemp("split") / "dataset")


def _split(dataset: Path, out: Path, config: SplitConfig) -> tuple[dict, dict[str, pd.DataFrame]]:
    dirs = [str(out / p) for p in PARTS]
    summary = split(str(dataset), *dirs, config)
    return summary, {p: read_dataset(out / p)[0] for p in PARTS}


def test_default_fractions_are_70_15_15(tmp_path, breast_cancer):
    summary, parts = _split(breast_cancer, tmp_path, SplitConfig())

    n = 569
    assert sum(summary[p] for p in PARTS) == n
    for part, fraction in zip(PARTS, (0.70, 0.15, 0.15), strict=True):
        assert abs(summary[part] - fraction * n) <= 1.5, (part, summary[part])
        assert len(parts[part]) == summary[part]
    assert summary["stratified"] is True


def test_parts_keep_the_schema(tmp_path, breast_cancer):
    _split(breast_cancer, tmp_path, SplitConfig())
    _, source_schema = read_dataset(breast_cancer)
    for part in PARTS:
        _, schema = read_dataset(tmp_path / part)
        assert schema == source_schema
        assert schema.column("row_id").role == "id" and schema.label == "target"


def test_stratified_split_keeps_the_class_balance(tmp_path, breast_cancer):
    _, parts = _split(breast_cancer, tmp_path, SplitConfig())
    overall = read_dataset(breast_cancer)[0]["target"].mean()
    for part in PARTS:
        assert abs(parts[part]["target"].mean() - overall) < 0.01, part


def test_no_row_is_lost_or_duplicated(tmp_path, breast_cancer):
    _, parts = _split(breast_cancer, tmp_path, SplitConfig(train=0.6, val=0.3, test=0.1, seed=3))
    source = read_dataset(breast_cancer)[0]

    ids = [set(parts[p]["row_id"]) for p in PARTS]
    assert sum(len(parts[p]) for p in PARTS) == len(source)
    assert ids[0].isdisjoint(ids[1]) and ids[0].isdisjoint(ids[2]) and ids[1].isdisjoint(ids[2])
    assert set.union(*ids) == set(source["row_id"])
    together = pd.concat(parts.values()).sort_values("row_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(together, source)


def test_same_seed_gives_the_same_split_and_another_seed_a_different_one(tmp_path, breast_cancer):
    _, first = _split(breast_cancer, tmp_path / "a", SplitConfig(seed=7))
    _, again = _split(breast_cancer, tmp_path / "b", SplitConfig(seed=7))
    _, other = _split(breast_cancer, tmp_path / "c", SplitConfig(seed=8))

    for part in PARTS:
        pd.testing.assert_frame_equal(first[part], again[part])
    assert set(first["test"]["row_id"]) != set(other["test"]["row_id"])
    assert set(first["train"]["row_id"]) != set(other["train"]["row_id"])


def test_stratify_false_is_reported(tmp_path, breast_cancer):
    summary, _ = _split(breast_cancer, tmp_path, SplitConfig(stratify=False))
    assert summary["stratified"] is False


def test_regression_labels_are_not_stratified(tmp_path):
    dataset = _dataset(tmp_path / "diabetes", "diabetes")

    summary, parts = _split(dataset, tmp_path, SplitConfig(stratify=True))

    assert summary["stratified"] is False
    assert sum(summary[p] for p in PARTS) == 442
    assert set.union(*(set(parts[p]["row_id"]) for p in PARTS)) == set(range(1000, 1442))


def test_rare_class_disables_stratification(tmp_path):
    df = pd.DataFrame({"x": np.arange(40.0), "target": [1] * 3 + [0] * 37})
    write_dataset(tmp_path / "d", df, infer_schema(df, "target"))
    summary, _ = _split(tmp_path / "d", tmp_path, SplitConfig())
    assert summary["stratified"] is False


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"train": 0.8, "val": 0.15, "test": 0.15}, "train + val + test must be 1, got 1.1"),
        ({"train": 0.5, "val": 0.2, "test": 0.2}, "train + val + test must be 1, got 0.9"),
        ({"train": 1.0, "val": 0.0, "test": 0.0}, "train must be between 0 and 1"),
        ({"val": -0.1}, "val must be between 0 and 1"),
        ({"seed": "zero"}, "'seed' must be int"),
        ({"shuffle": True}, "unknown key(s) 'shuffle'"),
    ],
)
def test_split_config_validation(values, fragment):
    with pytest.raises(ConfigError) as exc:
        SplitConfig.from_dict(values)
    assert fragment in str(exc.value)


def _tiny(path: Path, n: int) -> Path:
    df = pd.DataFrame({"x": np.arange(float(n)), "target": np.arange(n) % 2})
    write_dataset(path, df, infer_schema(df, "target"))
    return path


@pytest.mark.parametrize(
    ("rows", "config", "need"),
    [(2, SplitConfig(), 7), (6, SplitConfig(), 7), (9, SplitConfig(train=0.8, val=0.1, test=0.1), 10)],
)
def test_too_few_rows_for_one_row_in_every_part(tmp_path, rows, config, need):
    with pytest.raises(DataValidationError) as exc:
        _split(_tiny(tmp_path / "d", rows), tmp_path, config)
    message = str(exc.value)
    assert f"{rows} row(s)" in message and f"needs at least {need} rows" in message
    assert str(tmp_path / "d") in message
    assert not any((tmp_path / p).exists() for p in PARTS)


@pytest.mark.parametrize(
    ("rows", "config"),
    [
        (7, SplitConfig()),
        (10, SplitConfig(train=0.8, val=0.1, test=0.1)),
        (10, SplitConfig(train=0.1, val=0.1, test=0.8)),
    ],
)
def test_the_minimum_row_count_gives_three_non_empty_parts(tmp_path, rows, config):
    summary, parts = _split(_tiny(tmp_path / "d", rows), tmp_path, config)
    assert min(summary[p] for p in PARTS) >= 1
    assert sum(len(parts[p]) for p in PARTS) == rows


def test_dataset_without_label_is_rejected(tmp_path):
    df = pd.DataFrame({"x": np.arange(10.0)})
    write_dataset(tmp_path / "d", df, infer_schema(df, None))
    with pytest.raises(DataValidationError, match="no label column"):
        _split(tmp_path / "d", tmp_path, SplitConfig())
