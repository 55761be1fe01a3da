"""A mixed-type Model artifact built in a test: raw rows with numbers, nulls, strings and booleans.

``build_mixed_model(path)`` fits :class:`serving.preprocess.Preprocessing` (``categorical="codes"``)
on a generated churn-like table, trains a scikit-learn ``HistGradientBoostingClassifier`` with
native categorical support on the code columns, and writes it with skops through
``shipyard.artifacts.write_model`` with the preprocessing in ``model.json`` — the artifact a
GBDT candidate of the training step is. Import it from tests (``from mixed_model import ...`` in
tests/serving) to serve, evaluate or score such a model.

The table (:func:`mixed_frame`): ``tenure`` (float, nullable), ``plan`` (strings with nulls and a
rare value, ``legacy``, that shares the unknown bucket), ``autopay`` (bool), ``seats`` (int) and
``region`` (strings, never null); the label ``churn`` (``no``/``yes``) depends on all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serving.preprocess import Preprocessing
from shipyard.artifacts import Column, ModelManifest, write_model

LABEL = "churn"
LABELS = ("no", "yes")
PLANS = ("basic", "pro", "team")
REGIONS = ("eu", "us", "apac")


@dataclasses.dataclass(frozen=True)
class MixedModel:
    """A built artifact: where it is, its preprocessing, and the rows it was fitted and tested on."""

    path: Path
    preprocessing: Preprocessing
    train: pd.DataFrame
    test: pd.DataFrame

    @property
    def features(self) -> list[str]:
        return self.preprocessing.feature_names


def mixed_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """The generated table (features and ``churn``); deterministic for a seed."""
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(0, 60, rows)
    tenure[rng.random(rows) < 0.1] = np.nan
    plan = rng.choice(PLANS, rows).astype(object)
    plan[rng.random(rows) < 0.08] = None
    plan[:2] = "legacy"  # rarer than the vocabulary's min_frequency
    autopay = rng.random(rows) < 0.5
    seats = rng.integers(1, 40, rows)
    region = rng.choice(REGIONS, rows).astype(object)
    logit = (
        1.5 * (plan == "basic")
        - 1.0 * (plan == "team")
        - 0.04 * np.nan_to_num(tenure, nan=30.0)
        + 0.8 * autopay
        + 0.03 * seats
        + 0.7 * (region == "apac")
    )
    churn = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "tenure": tenure,
            "plan": plan,
            "autopay": autopay,
            "seats": seats.astype(np.int64),
            "region": region,
            LABEL: np.where(churn, LABELS[1], LABELS[0]).astype(object),
        }
    )


def build_mixed_model(
    path: Path | str, rows: int = 600, seed: int = 0, task: str = "binary", estimator: Any = None
) -> MixedModel:
    """Writes the mixed-type artifact at ``path`` and returns it with its train/test rows.

    Args:
        path: The artifact directory (created).
        rows: Rows generated (three quarters train, the rest test).
        seed: The generator's and the model's seed.
        task: ``binary`` (predicts ``churn``) or ``regression`` (predicts a numeric ``spend``
            computed from the features, which replaces ``churn``).
        estimator: A scikit-learn estimator to fit on the encoded matrix instead of the
            ``HistGradientBoosting*`` model of the task (categorical on the code columns).
    """
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    df = mixed_frame(rows, seed)
    label = LABEL
    if task == "regression":
        label = "spend"
        df[label] = 2.0 * df["seats"] + 0.5 * df["tenure"].fillna(30.0) + 5.0 * (df["plan"] == "pro")
        df = df.drop(columns=[LABEL])
    cut = rows * 3 // 4
    train, test = df.iloc[:cut].reset_index(drop=True), df.iloc[cut:].reset_index(drop=True)
    features = [c for c in df.columns if c != label]
    kinds = {"tenure": "numeric", "plan": "categorical", "autopay": "categorical", "seats": "numeric"}
    kinds["region"] = "categorical"
    prep = Preprocessing.fit(train, {f: kinds[f] for f in features}, categorical="codes")
    x = prep.transform_frame(train).x
    if task == "regression":
        y = train[label].to_numpy(dtype=np.float64)
    else:
        y = (train[label] == LABELS[1]).to_numpy(dtype=np.int64)
    if estimator is None:
        gbdt = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
        estimator = gbdt(categorical_features=[col for col, _ in prep.code_columns()], max_iter=60, random_state=seed)
    estimator.fit(x, y)
    manifest = ModelManifest(
        format="sklearn-skops",
        task=task,
        input_schema=tuple(Column(f, str(train[f].dtype), "feature", kinds[f]) for f in features),
        label=label,
        label_names=() if task == "regression" else LABELS,
        preprocessing=prep.to_dict(),
        details={"family": "gbdt", "built_by": "tests/serving/mixed_model.py"},
    )
    write_model(path, manifest, lambda tmp: sio.dump(estimator, tmp / "model.skops"))
    return MixedModel(Path(path), prep, train, test)


def plain(value: Any) -> Any:
    """A cell as JSON holds it: NaN and None as None, numpy scalars as Python ones."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def records(df: pd.DataFrame, features: Sequence[str]) -> list[dict[str, Any]]:
    """V1 ``instances`` as records ``{"plan": "pro", "tenure": null, ...}``."""
    return [{f: plain(v) for f, v in zip(features, row, strict=True)} for row in df[list(features)].itertuples(False)]


def lists(df: pd.DataFrame, features: Sequence[str]) -> list[list[Any]]:
    """V1 ``instances`` as lists in the model's feature order."""
    return [[plain(v) for v in row] for row in df[list(features)].itertuples(False)]


V2_TYPES = {"float64": "FP64", "int64": "INT64", "bool": "BOOL", "object": "BYTES"}


def v2_tensors(df: pd.DataFrame, features: Sequence[str]) -> list[dict[str, Any]]:
    """One V2 tensor per feature: BYTES for strings (nulls as null), the numeric datatype for numbers."""
    return [
        {
            "name": f,
            "shape": [len(df)],
            "datatype": V2_TYPES[str(df[f].dtype)],
            "data": [plain(v) for v in df[f].tolist()],
        }
        for f in features
    ]


def metric_samples(text: str) -> dict[str, float]:
    """A ``/metrics`` page as ``{'name{labels}': value}`` (labels as Prometheus prints them)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
