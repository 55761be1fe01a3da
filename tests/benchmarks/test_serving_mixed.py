"""benchmarks/serving_mixed.py: MLServer's scikit-learn Pipeline is equivalent to our preprocessing + GBDT.

The benchmark compares two servers only if they compute the same thing; these tests check the
Pipeline it builds against the fitted preprocessing on raw rows with nulls, a rare and an unseen
category, and that a Pipeline that is not equivalent is caught.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from benchmarks import serving_mixed as bench
from benchmarks.serving import SetupError
from serving.preprocess import Preprocessing


def _fitted(rows: int = 3000) -> tuple[Preprocessing, Any, Any, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    df = bench.mixed_rows(rows, seed=1)
    train, test = df.iloc[: rows * 3 // 4], df.iloc[rows * 3 // 4 :].copy()
    test.loc[test.index[:7], "plan"] = bench.UNSEEN_PLAN
    features = [c for c in df.columns if c != bench.LABEL]
    kinds = {f: "numeric" if df[f].dtype.kind in "if" else "categorical" for f in features}
    prep = Preprocessing.fit(train, kinds, categorical="codes")
    mask = np.zeros(prep.width, dtype=bool)
    mask[[col for col, _ in prep.code_columns()]] = True
    gbdt = HistGradientBoostingClassifier(max_iter=30, categorical_features=mask, random_state=0)
    gbdt.fit(prep.transform_frame(train).x, (train[bench.LABEL] == bench.LABELS[1]).to_numpy())
    return prep, gbdt, train, test


def test_pipeline_matches_preprocessing_and_gbdt_on_raw_rows() -> None:
    prep, gbdt, train, test = _fitted()
    assert test["age"].isna().any() and test["region"].isna().any()
    assert bench.RARE_PLAN not in prep.features[prep.feature_names.index("plan")].vocabulary
    pipeline = bench.sklearn_pipeline(prep, gbdt, train)
    raw = bench._nan_for_none(test[prep.feature_names])
    ours = prep.transform_frame(test).x
    np.testing.assert_array_equal(pipeline[:-1].transform(raw), ours)
    np.testing.assert_array_equal(pipeline.predict_proba(raw), gbdt.predict_proba(ours))


def test_pipeline_with_another_vocabulary_order_is_caught() -> None:
    prep, gbdt, train, test = _fitted()
    i = prep.feature_names.index("channel")
    swapped = dataclasses.replace(prep.features[i], vocabulary=prep.features[i].vocabulary[::-1])
    other = dataclasses.replace(prep, features=(*prep.features[:i], swapped, *prep.features[i + 1 :]))
    pipeline = bench.sklearn_pipeline(other, gbdt, train)
    raw = bench._nan_for_none(test[prep.feature_names])
    assert not np.array_equal(pipeline[:-1].transform(raw), prep.transform_frame(test).x)


def test_unsorted_boolean_vocabulary_is_refused() -> None:
    df = bench.mixed_rows(200, seed=0)
    features = [c for c in df.columns if c != bench.LABEL]
    kinds = {f: "numeric" if df[f].dtype.kind in "if" else "categorical" for f in features}
    prep = Preprocessing.fit(df, kinds, categorical="codes")
    i = prep.feature_names.index("autopay")
    flipped = dataclasses.replace(prep.features[i], vocabulary=(True, False))
    prep = dataclasses.replace(prep, features=(*prep.features[:i], flipped, *prep.features[i + 1 :]))
    with pytest.raises(SetupError, match="'autopay': boolean vocabulary"):
        bench.sklearn_pipeline(prep, object(), df)


def test_requests_hold_one_row_as_each_server_reads_it() -> None:
    df = bench.mixed_rows(50, seed=0)
    features = [c for c in df.columns if c != bench.LABEL]
    row = df[df["age"].isna()].iloc[:1]
    record = bench.records(row, features)[0]
    assert record["age"] is None and isinstance(record["autopay"], bool)
    theirs = bench.mlserver_body(row, features)
    assert theirs["parameters"] == {"content_type": "pd"}
    types = {t["name"]: (t["datatype"], t.get("parameters")) for t in theirs["inputs"]}
    assert types["plan"] == ("BYTES", {"content_type": "str"})
    assert types["age"] == ("FP64", None) and types["tenure"] == ("INT64", None) and types["autopay"] == ("BOOL", None)
    assert [t["data"] for t in bench.v2_inputs(row, features)] == [[record[f]] for f in features]
