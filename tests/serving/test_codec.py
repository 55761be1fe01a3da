"""Tests for serving.codec: payloads and DataFrames to the model's float32 feature matrix."""

import math

import numpy as np
import pandas as pd
import pytest

from serving import codec
from shipyard.errors import DataValidationError

FEATURES = ["age", "income", "score"]


def test_lists_become_a_float32_matrix():
    x = codec.from_instances([[1, 2, 3], [4.5, 5, 6]], FEATURES)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, np.array([[1, 2, 3], [4.5, 5, 6]], dtype=np.float32))


def test_one_flat_row_is_one_instance():
    x = codec.from_instances([1, 2, 3], FEATURES)
    np.testing.assert_array_equal(x, [[1, 2, 3]])


def test_records_are_ordered_by_the_model_features():
    x = codec.from_instances([{"score": 3, "age": 1, "income": 2}, {"income": 5, "score": 6, "age": 4}], FEATURES)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])


def test_booleans_count_as_numbers():
    np.testing.assert_array_equal(codec.from_instances([[True, False, 2]], FEATURES), [[1, 0, 2]])


@pytest.mark.parametrize("rows", [[[1, 2]], [[1, 2, 3, 4]], [[1, 2], [3, 4]]])
def test_wrong_feature_count(rows):
    with pytest.raises(DataValidationError) as info:
        codec.from_instances(rows, FEATURES)
    assert str(info.value) == f"instances: expected 3 features per row (age, income, score), got {len(rows[0])}"


def test_wrong_feature_count_lists_at_most_five_names():
    names = [f"f{i}" for i in range(7)]
    with pytest.raises(DataValidationError, match=r"expected 7 features per row \(f0, f1, f2, f3, f4, \.\.\.\), got 2"):
        codec.from_instances([[1, 2]], names)


def test_ragged_rows():
    with pytest.raises(DataValidationError, match=r"^instances: expected rows of 3 numbers"):
        codec.from_instances([[1, 2, 3], [1, 2]], FEATURES)


def test_nested_rows_have_the_wrong_rank():
    with pytest.raises(DataValidationError, match=r"expected a 2-D array \[rows, 3\], got shape \[1, 3, 1\]"):
        codec.from_instances([[[1], [2], [3]]], FEATURES)


def test_unknown_record_key_is_named_with_the_row():
    with pytest.raises(DataValidationError) as info:
        codec.from_instances(
            [{"age": 1, "income": 2, "score": 3}, {"age": 1, "income": 2, "score": 3, "zip": 9}], FEATURES
        )
    assert str(info.value) == "instances[1]: unknown feature(s) ['zip']"


def test_missing_record_key_is_named():
    with pytest.raises(DataValidationError) as info:
        codec.from_instances([{"age": 1}], FEATURES)
    assert str(info.value) == "instances[0]: missing feature(s) ['income', 'score']"


def test_missing_and_unknown_record_keys_are_both_named():
    with pytest.raises(DataValidationError) as info:
        codec.from_instances([{"age": 1, "income": 2, "Score": 3}], FEATURES)
    assert str(info.value) == "instances[0]: missing feature(s) ['score']; unknown feature(s) ['Score']"


@pytest.mark.parametrize("rows", [[{"age": 1, "income": 2, "score": 3}, [1, 2, 3]], [[1, 2, 3], {"age": 1}]])
def test_mixed_row_kinds(rows):
    with pytest.raises(DataValidationError, match=r"^instances: mixes records \(objects\) and lists; use one kind$"):
        codec.from_instances(rows, FEATURES)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None])
@pytest.mark.parametrize("as_records", [False, True])
def test_non_finite_values_are_rejected_naming_the_feature_and_row(bad, as_records):
    rows = [[1, 2, 3], [4, bad, 6]]
    if as_records:
        rows = [dict(zip(FEATURES, r, strict=True)) for r in rows]
    with pytest.raises(DataValidationError) as info:
        codec.from_instances(rows, FEATURES)
    message = str(info.value)
    if as_records and bad is None:  # a record says which row and feature, before any matrix exists
        assert message == "instances[1]: feature 'income' is None; expected a number"
        return
    assert message.startswith("instances: feature 'income' is ")
    assert message.endswith(" in row 1; expected a finite number")
    assert ("inf" if bad in (math.inf, -math.inf) else "nan") in message


def test_overflowing_float32_is_rejected():
    with pytest.raises(DataValidationError, match=r"feature 'score' is 1e\+300 in row 0; expected a number within"):
        codec.from_instances([[1, 2, 1e300]], FEATURES)


def test_non_numeric_string_in_a_list_row():
    with pytest.raises(DataValidationError, match=r"^instances: expected rows of 3 numbers .*'abc'"):
        codec.from_instances([[1, "abc", 3]], FEATURES)


def test_non_numeric_string_in_a_record():
    with pytest.raises(DataValidationError, match=r"^instances\[0\]: feature 'income' is 'abc'; expected a number$"):
        codec.from_instances([{"age": 1, "income": "abc", "score": 3}], FEATURES)


def test_non_numeric_value_in_a_record_names_the_feature():
    with pytest.raises(DataValidationError, match="'income'"):
        codec.from_instances([{"age": 1, "income": "abc", "score": 3}], FEATURES)


@pytest.mark.parametrize("instances", [[], None, {"age": 1}, "1,2,3", (1, 2, 3)])
def test_not_a_non_empty_list(instances):
    with pytest.raises(DataValidationError, match=r"^inputs: expected a non-empty list of rows$"):
        codec.from_instances(instances, FEATURES, where="inputs")


def test_empty_rows_are_rejected():
    with pytest.raises(DataValidationError, match="expected 3 features per row"):
        codec.from_instances([[]], FEATURES)


def test_check_matrix_rejects_zero_rows():
    with pytest.raises(DataValidationError, match=r"^v2: no rows$"):
        codec.check_matrix(np.zeros((0, 3)), FEATURES, "v2")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_float32_matrix_with_a_non_finite_value_is_rejected_by_name(bad):
    x = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)
    x[2, 1] = bad
    with pytest.raises(DataValidationError) as info:
        codec.check_matrix(x, FEATURES, lambda: "V2 input 'input'")
    assert str(info.value).startswith("V2 input 'input': feature 'income' is ")
    assert str(info.value).endswith(" in row 2; expected a finite number")


def test_float32_matrix_of_huge_finite_values_is_accepted():
    x = np.full((2, 3), 3e38, dtype=np.float32)  # squares and sums overflow; the values are fine
    np.testing.assert_array_equal(codec.check_matrix(x, FEATURES, "v2"), x)


def test_valid_float32_matrix_is_returned_contiguous_and_where_is_not_built():
    def where() -> str:
        raise AssertionError("the error location is only built for an error")

    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert codec.check_matrix(x, FEATURES, where) is x
    strided = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    out = codec.check_matrix(strided, FEATURES, "v2")
    assert out.flags.c_contiguous and out.dtype == np.float32
    np.testing.assert_array_equal(out, strided)


# --- from_frame ----------------------------------------------------------------------------------


def test_from_frame_selects_features_in_order():
    df = pd.DataFrame({"score": [3, 6], "id": ["a", "b"], "age": [1, 4], "income": [2.0, 5.0], "flag": [True, False]})
    x = codec.from_frame(df, FEATURES)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(codec.from_frame(df, ["flag"]), [[1], [0]])


def test_from_frame_missing_column():
    df = pd.DataFrame({"age": [1], "other": [2]})
    with pytest.raises(DataValidationError) as info:
        codec.from_frame(df, FEATURES, where="data/val")
    assert str(info.value) == "data/val: missing feature column(s) ['income', 'score']"


def test_from_frame_non_numeric_column():
    df = pd.DataFrame({"age": [1], "income": ["high"], "score": [3]})
    with pytest.raises(DataValidationError) as info:
        codec.from_frame(df, FEATURES)
    assert str(info.value) == "dataset: column 'income' has dtype object; expected a numeric column"


def test_from_frame_nan_names_the_column():
    df = pd.DataFrame({"age": [1.0, 2.0], "income": [2.0, 3.0], "score": [3.0, math.nan]})
    with pytest.raises(DataValidationError, match=r"^dataset: feature 'score' is nan in row 1"):
        codec.from_frame(df, FEATURES)


def test_from_frame_accepts_nullable_integer_column():
    df = pd.DataFrame({"age": pd.array([1, 2], dtype="Int64"), "income": [2.0, 3.0], "score": [3, 4]})
    np.testing.assert_array_equal(codec.from_frame(df, FEATURES), [[1, 2, 3], [2, 3, 4]])


@pytest.mark.parametrize("column", [pd.Categorical(["lo", "hi"]), pd.array(["lo", "hi"], dtype="string")])
def test_from_frame_rejects_categorical_and_string_columns_by_name(column):
    df = pd.DataFrame({"age": [1, 2], "income": column, "score": [3, 4]})
    with pytest.raises(DataValidationError, match=r"column 'income' has dtype"):
        codec.from_frame(df, FEATURES)
