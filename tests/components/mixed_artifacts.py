"""A generated mixed-type table and models fitted on it, for the downstream components' tests.

The table has what real exports have: a numeric feature with nulls, a string feature with nulls
and a rare value, a boolean, an integer count, an id column (excluded), and a test split holding a
category never seen in training. The models are written the way train_model writes a scikit-learn
model (``write_model`` with skops, ``preprocessing`` and the raw input schema in ``model.json``):

- ``gbdt``: ``HistGradientBoostingClassifier`` with native categorical support over the
  preprocessing's code columns;
- ``linear``: a logistic regression over a one-hot, standardized preprocessing.

HistGradientBoosting's skops file holds three types beyond skops' defaults (:data:`HGB_SKOPS_TYPES`);
:func:`trust_hgb` adds them to ``serving.formats.TRUSTED_SKOPS_TYPES`` for the test process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LABEL = "churn"
KINDS = {"tenure": "numeric", "plan": "categorical", "autopay": "categorical", "seats": "numeric"}
#: The types ``skops.io.get_untrusted_types`` reports for a HistGradientBoosting model with
#: categorical features (scikit-learn 1.9); without categorical features only the TreePredictor.
HGB_SKOPS_TYPES = frozenset(
    {
        "functools.partial",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.utils.validation.check_array",
    }
)


def mixed_table(rows: int, seed: int, unseen: bool = False) -> pd.DataFrame:
    """Rows of the churn-like table; ``unseen`` puts the plan ``enterprise`` (never in training) in some rows."""
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(0, 60, rows)
    plan = rng.choice(["basic", "pro", "team"], rows).astype(object)
    autopay = rng.integers(0, 2, rows).astype(bool)
    seats = rng.integers(1, 50, rows)
    logit = 1.5 - tenure / 15 + np.where(plan == "basic", 1.0, -0.5) - 0.8 * autopay + (seats > 25) * 0.3
    churn = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    tenure[::7] = np.nan
    plan[::11] = None
    plan[3] = "legacy"  # seen once: rarer than the preprocessing's min_frequency
    if unseen:
        plan[1::9] = "enterprise"
    return pd.DataFrame(
        {
            "customer_id": np.arange(rows) + seed * 100_000,
            "tenure": tenure,
            "plan": plan,
            "autopay": autopay,
            "seats": seats,
            LABEL: churn,
        }
    )


def _schema(df: pd.DataFrame) -> Any:
    from shipyard.artifacts import Column, DatasetSchema

    def column(name: str) -> Column:
        role = "id" if name == "customer_id" else "label" if name == LABEL else "feature"
        return Column(name, str(df[name].dtype), role, KINDS.get(name, ""))

    return DatasetSchema(tuple(column(str(c)) for c in df.columns))


def write_model(path: Path, model: Any, prep: Any, schema: Any, family: str) -> Path:
    """Writes a sklearn-skops Model artifact with the fitted preprocessing and raw input schema."""
    import skops.io as sio

    from shipyard import artifacts

    manifest = artifacts.ModelManifest(
        format="sklearn-skops",
        task="binary",
        input_schema=tuple(schema.column(f) for f in KINDS),
        label=LABEL,
        label_names=(0, 1),
        metrics={},
        details={"family": family, "estimator": type(model).__name__},
        preprocessing=prep.to_dict(),
    )
    artifacts.write_model(path, manifest, lambda tmp: sio.dump(model, tmp / "model.skops"))
    return path


def build_mixed(root: Path) -> dict[str, Path]:
    """Writes ``train``/``val``/``test`` Dataset artifacts and the ``gbdt`` and ``linear`` models.

    Returns:
        Artifact directories by name.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from serving.preprocess import Preprocessing
    from shipyard.artifacts import write_dataset

    root.mkdir(parents=True, exist_ok=True)
    splits = {"train": mixed_table(600, 1), "val": mixed_table(150, 2, unseen=True)}
    splits["test"] = mixed_table(200, 3, unseen=True)
    out: dict[str, Path] = {}
    for name, df in splits.items():
        write_dataset(root / name, df, _schema(df))
        out[name] = root / name
    train, schema = splits["train"], _schema(splits["train"])

    codes = Preprocessing.fit(train, KINDS, categorical="codes")
    gbdt = HistGradientBoostingClassifier(
        categorical_features=[col for col, _ in codes.code_columns()], max_iter=30, random_state=0
    ).fit(codes.transform_frame(train).x, train[LABEL].to_numpy())
    out["gbdt"] = write_model(root / "gbdt", gbdt, codes, schema, "gbdt")

    onehot = Preprocessing.fit(train, KINDS, numeric="standard", categorical="onehot")
    linear = LogisticRegression(max_iter=1000).fit(onehot.transform_frame(train).x, train[LABEL].to_numpy())
    out["linear"] = write_model(root / "linear", linear, onehot, schema, "linear")
    return out


def trust_hgb(monkeypatch: Any) -> None:
    """Trusts :data:`HGB_SKOPS_TYPES` in this process (serving/formats.py does not yet)."""
    from serving import formats

    monkeypatch.setattr(formats, "TRUSTED_SKOPS_TYPES", formats.TRUSTED_SKOPS_TYPES | HGB_SKOPS_TYPES)


def hgb_trusted() -> bool:
    """True when serving/formats.py itself trusts HistGradientBoosting's types (a server subprocess can load it)."""
    from serving import formats

    return HGB_SKOPS_TYPES <= formats.TRUSTED_SKOPS_TYPES
