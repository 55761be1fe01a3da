"""Dataset artifacts of the generated mixed-type table and models fitted on them, for the
downstream components' tests.

The table is :func:`tables.mixed_table` (tests/tables.py): a numeric feature with nulls, an
integer one, strings with nulls and a rare value, a boolean, and an id, free text and a date that
are kept but are not features; the validation and test splits hold a plan never seen in training
(:func:`tables.with_unseen_category`). The models are written the way train_model writes a
scikit-learn model (``write_model`` with skops, ``preprocessing`` and the raw input schema in
``model.json``):

- ``gbdt``: ``HistGradientBoostingClassifier`` with native categorical support over the
  preprocessing's code columns;
- ``linear``: a logistic regression over a one-hot, standardized preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from tables import EXCLUDED_ROLES, FEATURE_KINDS, mixed_table, with_unseen_category

LABEL = "target"
KINDS = FEATURE_KINDS
#: Test rows whose plan is one never seen in training.
UNSEEN_ROWS = 7


def _schema(df: pd.DataFrame) -> Any:
    from shipyard.artifacts import Column, DatasetSchema

    def column(name: str) -> Column:
        role = EXCLUDED_ROLES.get(name, "label" if name == LABEL else "feature")
        return Column(name, str(df[name].dtype), role, KINDS.get(name, ""))

    return DatasetSchema(tuple(column(str(c)) for c in df.columns))


def manifest(fmt: str, prep: Any, schema: Any, details: dict[str, Any]) -> Any:
    """The ``model.json`` of a binary model of :data:`LABEL` on the raw :data:`KINDS` features."""
    from shipyard.artifacts import ModelManifest

    return ModelManifest(
        format=fmt,
        task="binary",
        input_schema=tuple(schema.column(f) for f in KINDS),
        label=LABEL,
        label_names=(0, 1),
        details=details,
        preprocessing=prep.to_dict(),
    )


def write_model(path: Path, model: Any, prep: Any, schema: Any, family: str) -> Path:
    """Writes a sklearn-skops Model artifact with the fitted preprocessing and raw input schema."""
    import skops.io as sio

    from shipyard import artifacts

    details = {"family": family, "estimator": type(model).__name__}
    artifacts.write_model(
        path, manifest("sklearn-skops", prep, schema, details), lambda tmp: sio.dump(model, tmp / "model.skops")
    )
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
    splits = {
        "train": mixed_table(600, 1),
        "val": with_unseen_category(mixed_table(150, 2), UNSEEN_ROWS),
        "test": with_unseen_category(mixed_table(200, 3), UNSEEN_ROWS),
    }
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
