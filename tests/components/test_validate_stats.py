"""Tests for components.validate_data.stats: the shared column statistics and the duplicate count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.validate_data.core import ValidateConfig, check_frame
from components.validate_data.stats import column_stats, duplicate_rows


def _mixed(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.choice([0.5, -0.0, 0.0, np.nan, 2.0], n),
            "k": rng.integers(0, 3, n),
            "flag": rng.choice([True, False], n),
            "color": rng.choice(["red", "green", None], n),
            "when": pd.to_datetime(rng.integers(0, 3, n), unit="D"),
        }
    )


@pytest.mark.parametrize("seed", range(5))
def test_duplicate_rows_equals_pandas_duplicated(seed):
    df = _mixed(seed=seed)
    assert duplicate_rows(df) == int(df.duplicated().sum()) > 0  # -0.0 == 0.0, NaN == NaN, as pandas counts
    as_category = df.assign(color=df["color"].astype("category"))
    assert duplicate_rows(as_category) == int(df.duplicated().sum())


def test_duplicate_rows_without_duplicates_and_tiny_frames():
    rng = np.random.default_rng(1)
    assert duplicate_rows(pd.DataFrame({"a": rng.normal(size=1000), "b": rng.normal(size=1000)})) == 0
    assert duplicate_rows(pd.DataFrame({"a": [1.0]})) == 0
    assert duplicate_rows(pd.DataFrame({"a": [1.0, 1.0]})) == 1


def test_quick_hash_collisions_are_not_counted():
    # Rows built so that the multiply-and-add quick hash of the two columns collides: (a, b) and
    # (a + 1, b - P) fold to the same 64 bits; they are different rows, so no duplicate.
    prime = 0x100000001B3
    a = np.array([5, 6], dtype=np.int64)
    b = np.array([prime + 7, 7], dtype=np.int64)
    df = pd.DataFrame({"a": a, "b": b})
    quick = [(int(x) * prime + int(y)) % 2**64 for x, y in zip(a, b, strict=True)]
    assert quick[0] == quick[1], "the test rows must collide in the quick hash"
    assert duplicate_rows(df) == 0


def test_column_stats_of_a_float_column():
    st = column_stats(pd.Series([1.0, np.nan, np.inf, -np.inf, 3.0, -2.0]))
    assert (st.kind, st.rows, st.nulls, st.infinite, st.lo, st.hi) == ("float", 6, 1, 2, -2.0, 3.0)
    assert set(st.inf_examples) == {np.inf, -np.inf}
    empty = column_stats(pd.Series([np.nan, np.inf]))
    assert (empty.lo, empty.hi, empty.nulls, empty.infinite) == (None, None, 1, 1)


def test_text_counts_are_the_same_for_object_and_categorical_columns():
    values = ["b", "a", None, "b", "c", "b"]
    obj, cat = column_stats(pd.Series(values)), column_stats(pd.Series(values, dtype="category"))
    assert obj.counts == cat.counts == {"a": 1, "b": 3, "c": 1}
    assert obj.nulls == cat.nulls == 1
    unused = pd.Series(pd.Categorical(["a"], categories=["a", "zzz"]))
    assert column_stats(unused).counts == {"a": 1}, "categories without rows are not values"


def test_mixed_values_count_as_one_text_value():
    assert column_stats(pd.Series([1, "1", "x"], dtype=object)).counts == {"1": 2, "x": 1}


def test_categorical_and_object_frames_give_the_same_schema_and_anomalies():
    df = _mixed(seed=3)
    config = ValidateConfig(model_ready=True)
    as_object = check_frame(df, {"k": "label"}, config)
    as_category = check_frame(df.assign(color=df["color"].astype("category")), {"k": "label"}, config)
    assert as_object[0] == as_category[0]
    assert as_object[1] == as_category[1] and as_object[1], "the frame has anomalies to compare"


def test_non_string_column_names_are_checked():
    df = pd.DataFrame({0: [1.0, 2.0, 3.0], "b": ["x", "y", "x"]})
    schema, anomalies, _ = check_frame(df, {}, ValidateConfig(model_ready=False, min_rows=1))
    assert set(schema["columns"]) == {0, "b"} and anomalies == []
