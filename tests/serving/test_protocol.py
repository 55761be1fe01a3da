"""serving.protocol: requests decoded into typed batches (raw columns, or the identity's float32 matrix)."""

from __future__ import annotations

import numpy as np
import pytest
from mixed_model import mixed_frame

from serving import codec
from serving.fastpath import JsonTensor
from serving.preprocess import Preprocessing
from serving.protocol import Batch, Decoder, v1_answer, v2_answer, v2_outputs
from shipyard.errors import DataValidationError

KINDS = {"tenure": "numeric", "plan": "categorical", "autopay": "categorical", "seats": "numeric"}


@pytest.fixture(scope="module")
def mixed() -> Decoder:
    return Decoder(Preprocessing.fit(mixed_frame(200), KINDS))


def test_an_identity_model_gets_the_checked_float32_matrix_as_before():
    decoder = Decoder(Preprocessing.plain(["a", "b"]))
    batch = decoder.v1({"instances": [[1, 2], [3, 4]]})
    assert batch.columns is None and batch.matrix is not None
    np.testing.assert_array_equal(batch.matrix, codec.from_instances([[1, 2], [3, 4]], ["a", "b"]))
    tensors = [JsonTensor("a", [2], "FP64", [1.0, 3.0]), JsonTensor("b", [2], "INT64", [2, 4])]
    np.testing.assert_array_equal(decoder.v2(tensors).matrix, batch.matrix)
    with pytest.raises(DataValidationError, match="'a' is nan in row 0"):
        decoder.v1({"instances": [[None, 2]]})


def test_records_lists_and_one_flat_row_give_the_same_raw_columns(mixed):
    row = {"tenure": None, "plan": "pro", "autopay": True, "seats": 3}
    by_record = mixed.v1({"instances": [row, row]})
    by_list = mixed.v1({"instances": [list(row.values())] * 2})
    assert by_record.columns == by_list.columns == {k: [v, v] for k, v in row.items()}
    assert mixed.v1({"instances": list(row.values())}).columns == {k: [v] for k, v in row.items()}
    assert by_record.raw_rows(mixed.features) == [list(row.values())] * 2


def test_v2_per_feature_tensors_keep_raw_values_and_check_their_shape(mixed):
    tensors = [
        JsonTensor("tenure", [2, 1], "FP32", [1.5, None]),
        JsonTensor("plan", [2], "BYTES", ["pro", None]),
        JsonTensor("autopay", [2], "BOOL", [True, False]),
        JsonTensor("seats", [2], "INT64", [1, 2]),
    ]
    batch = mixed.v2(tensors)
    assert batch.rows == 2 and batch.columns["plan"] == ["pro", None] and batch.columns["tenure"] == [1.5, None]
    with pytest.raises(DataValidationError, match="different lengths"):
        mixed.v2([*tensors[:3], JsonTensor("seats", [3], "INT64", [1, 2, 3])])
    with pytest.raises(DataValidationError, match="3 values do not match shape"):
        mixed.v2([*tensors[:3], JsonTensor("seats", [2], "INT64", [1, 2, 3])])
    with pytest.raises(DataValidationError, match="categorical"):
        mixed.v2([JsonTensor("input", [1, 4], "FP32", [1, 2, 3, 4])])


def test_answers_are_encoded_in_one_place():
    scores = np.array([[0.25, 0.75]])
    assert v1_answer(scores, ["yes"]) == {"predictions": ["yes"], "probabilities": [[0.25, 0.75]]}
    outputs = v2_outputs(["yes"], [0.25, 0.75], [1, 2], "BYTES")
    assert v2_answer("r", "m", outputs)["outputs"][0] == {
        "name": "label",
        "shape": [1],
        "datatype": "BYTES",
        "data": ["yes"],
    }
    assert Batch(1, columns={"a": np.array([1.0])}).raw_rows(["a"]) == [[1.0]]
