"""The fitted preprocessing: fitting, its JSON form, applying it to frames and request columns."""

import json

import numpy as np
import pandas as pd
import pytest

from serving.preprocess import MIN_FREQUENCY, Preprocessing, resolve_kind
from shipyard.errors import DataValidationError


def mixed_frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    tenure = rng.uniform(0, 60, rows)
    tenure[::7] = np.nan
    plan = rng.choice(["basic", "pro", "team"], rows).astype(object)
    plan[::11] = None
    plan[3] = "legacy"  # seen once: rarer than MIN_FREQUENCY, shares the unknown bucket
    return pd.DataFrame(
        {
            "tenure": tenure,
            "plan": plan,
            "autopay": rng.integers(0, 2, rows).astype(bool),
            "seats": rng.integers(1, 50, rows),
        }
    )


KINDS = {"tenure": "numeric", "plan": "categorical", "autopay": "categorical", "seats": "numeric"}


def test_kinds_follow_the_dtype_unless_declared():
    assert [resolve_kind(d) for d in ("float64", "int64", "object", "bool", "category", "string")] == [
        "numeric",
        "numeric",
        "categorical",
        "categorical",
        "categorical",
        "categorical",
    ]
    assert resolve_kind("int64", "categorical") == "categorical"


@pytest.mark.parametrize("numeric", ["none", "standard", "quantile"])
@pytest.mark.parametrize("categorical", ["codes", "onehot"])
def test_fit_round_trips_through_json_and_transforms_the_same(numeric, categorical):
    df = mixed_frame()
    prep = Preprocessing.fit(df, KINDS, numeric=numeric, categorical=categorical)
    again = Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert again == prep
    a, b = prep.transform_frame(df).x, again.transform_frame(df).x
    assert a.dtype == np.float32 and a.shape == (len(df), prep.width) == (len(df), len(prep.output_names))
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all()


def test_numeric_nulls_are_imputed_with_the_median_and_flagged():
    df = mixed_frame()
    prep = Preprocessing.fit(df, KINDS)
    tenure = prep.features[0]
    assert tenure.nullable and tenure.indicator
    assert tenure.impute == pytest.approx(np.nanmedian(df["tenure"]))
    x = prep.transform_frame(df).x
    col = prep.output_names.index("tenure")
    nulls = df["tenure"].isna().to_numpy()
    assert (x[nulls, col] == np.float32(tenure.impute)).all()
    assert (x[:, col + 1] == nulls).all()
    assert "seats__missing" not in prep.output_names  # no nulls in training: no indicator


def test_vocabulary_keeps_frequent_values_and_buckets_the_rest():
    df = mixed_frame()
    prep = Preprocessing.fit(df, KINDS)
    plan = prep.features[1]
    assert set(plan.vocabulary) == {"basic", "pro", "team"}  # "legacy" is rarer than MIN_FREQUENCY
    assert (df["plan"] == "legacy").sum() < MIN_FREQUENCY
    assert plan.nullable and plan.cardinality == 5
    frame = pd.DataFrame({**{k: df[k][:4] for k in KINDS}, "plan": ["pro", "legacy", None, "enterprise"]})
    enc = prep.transform_frame(frame)
    codes = enc.x[:, prep.output_names.index("plan")]
    assert codes.tolist() == [plan.vocabulary.index("pro"), plan.unknown_code, plan.missing_code, plan.unknown_code]
    assert enc.unknown == {"plan": 2}
    assert prep.code_columns() == [(1 + 1, 5), (3, 3)]  # tenure + indicator, then plan; autopay


def test_capped_vocabulary_is_deterministic():
    df = pd.DataFrame({"c": [f"v{i % 30}" for i in range(600)]})
    a = Preprocessing.fit(df, {"c": "categorical"}, max_categories=10).features[0].vocabulary
    b = Preprocessing.fit(df.sample(frac=1.0, random_state=1), {"c": "categorical"}, max_categories=10)
    assert len(a) == 10 and a == b.features[0].vocabulary


def test_request_columns_give_what_the_frame_gives():
    df = mixed_frame(40)
    prep = Preprocessing.fit(df, KINDS, numeric="quantile")
    records = df.astype(object).where(df.notna(), None).to_dict("records")
    columns = {k: [r[k] for r in records] for k in KINDS}
    np.testing.assert_array_equal(prep.transform_columns(columns, len(records)).x, prep.transform_frame(df).x)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("tenure", "abc", r"feature 'tenure' is 'abc' in row 1; expected a number"),
        ("seats", None, r"feature 'seats' is null in row 1; expected a number"),
        ("seats", float("inf"), r"feature 'seats' is inf in row 1; expected a finite number"),
        ("autopay", "yes", r"feature 'autopay' is 'yes' in row 1; expected true or false"),
        ("autopay", None, r"feature 'autopay' is null in row 1"),
    ],
)
def test_bad_values_name_the_feature_and_the_row(column, value, message):
    df = mixed_frame(20)
    prep = Preprocessing.fit(df, KINDS)
    columns = {k: df[k].tolist() for k in KINDS}
    columns[column][1] = value
    with pytest.raises(DataValidationError, match=message):
        prep.transform_columns(columns, 20)


def test_missing_features_and_wrong_lengths_are_named():
    prep = Preprocessing.fit(mixed_frame(20), KINDS)
    with pytest.raises(DataValidationError, match=r"missing feature\(s\) \['plan'\]"):
        prep.transform_columns({"tenure": [1.0], "autopay": [True], "seats": [3]}, 1)
    with pytest.raises(DataValidationError, match=r"feature 'plan' has 2 values; expected 1"):
        prep.transform_columns({"tenure": [1.0], "plan": ["a", "b"], "autopay": [True], "seats": [3]}, 1)


def test_plain_numeric_preprocessing_is_the_identity():
    prep = Preprocessing.fit(pd.DataFrame({"a": [1.0, 2.0], "b": [3, 4]}), {"a": "numeric", "b": "numeric"})
    assert prep.identity and Preprocessing.plain(["a", "b"]).identity
    assert not Preprocessing.fit(mixed_frame(), KINDS).identity


def test_malformed_json_is_a_typed_error():
    with pytest.raises(DataValidationError, match="preprocessing: expected an object with version 1"):
        Preprocessing.from_dict({"features": []})
    with pytest.raises(DataValidationError, match=r"features\[0\] must be an object with a name"):
        Preprocessing.from_dict({"version": 1, "features": [{"name": "a", "kind": "text"}]})


def test_a_feature_nullable_only_by_the_schema_imputes_without_an_indicator():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 2.0, 3.0, 4.0]})
    prep = Preprocessing.fit(df, {"a": "numeric", "b": "numeric"}, nullable=["a"])
    assert prep.output_names == ["a", "b"]  # no column of zeros a model could not learn from
    x = prep.transform_columns({"a": [None], "b": [2.0]}, 1).x
    assert x.tolist() == [[2.5, 2.0]]
    with pytest.raises(DataValidationError, match="feature 'b' is null in row 0"):
        prep.transform_columns({"a": [1.0], "b": [None]}, 1)


def test_booleans_and_integers_may_come_as_text_as_v2_bytes_carry_them():
    df = pd.DataFrame({"flag": [True, False] * 10, "code": [3, 7] * 10})
    prep = Preprocessing.fit(df, {"flag": "categorical", "code": "categorical"})
    as_values = prep.transform_columns({"flag": [True, False], "code": [3, 7]}, 2).x
    as_text = prep.transform_columns({"flag": ["true", "False"], "code": ["3", "7"]}, 2).x
    np.testing.assert_array_equal(as_values, as_text)
    with pytest.raises(DataValidationError, match=r"feature 'code' is 'x7' in row 0; expected an integer"):
        prep.transform_columns({"flag": [True], "code": ["x7"]}, 1)


def test_frames_of_strings_categoricals_and_objects_encode_alike():
    df = mixed_frame()
    prep = Preprocessing.fit(df, KINDS)
    as_objects = prep.transform_frame(df).x
    as_category = prep.transform_frame(df.assign(plan=df["plan"].astype("category"))).x
    as_string = prep.transform_frame(df.assign(plan=df["plan"].astype("string"))).x
    np.testing.assert_array_equal(as_objects, as_category)
    np.testing.assert_array_equal(as_objects, as_string)
    again = Preprocessing.fit(df.assign(plan=df["plan"].astype("category")), KINDS)
    assert again.features[1].vocabulary == prep.features[1].vocabulary


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vocabulary": ["a", "a"]}, "vocabulary must hold distinct"),
        ({"impute": "x"}, "must be numbers"),
        ({"nullable": "yes"}, "must be true or false"),
    ],
)
def test_a_damaged_entry_is_refused_when_read(change, message):
    prep = Preprocessing.fit(mixed_frame(40), KINDS).to_dict()
    feature = prep["features"][1] if "vocabulary" in change else prep["features"][0]
    feature.update(change)
    with pytest.raises(DataValidationError, match=message):
        Preprocessing.from_dict(prep)
