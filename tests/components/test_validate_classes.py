"""validate_data's rare_class check: a classification label whose classes cannot all reach every split.

A string label with (nearly) one row per class used to pass validation, then fail tuning with
"classes ... not seen in training" on every retry. It is now an error-severity anomaly here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.split_data.core import SplitConfig
from components.validate_data.core import ValidateConfig, check_frame, validate
from shipyard.artifacts import infer_schema, write_dataset
from shipyard.errors import DataValidationError

N = 90
ROLES = {"a": "feature", "target": "label"}


def _rare(df: pd.DataFrame, config: ValidateConfig | None = None) -> list:
    _, anomalies, _ = check_frame(df, ROLES, config or ValidateConfig())
    return [a for a in anomalies if a.type == "rare_class"]


def _frame(target) -> pd.DataFrame:
    return pd.DataFrame({"a": np.linspace(0, 1, len(target)), "target": target})


def test_a_string_label_with_a_class_per_row_is_an_error_naming_the_label():
    (anomaly,) = _rare(_frame([f"cust-{i:03d}" for i in range(N)]))
    assert anomaly.severity == "error" and anomaly.column == "target" and anomaly.count == N
    assert f"{N} of {N} classes have fewer than 7 rows" in anomaly.message
    assert anomaly.examples == ("cust-000", "cust-001", "cust-002", "cust-003", "cust-004")


def test_an_integer_label_names_only_its_rare_classes():
    target = [0] * 40 + [1] * 44 + [2] * 6
    (anomaly,) = _rare(_frame(target))
    assert anomaly.count == 6 and anomaly.examples == ("2",) and "1 of 3 classes" in anomaly.message
    assert _rare(_frame(target), ValidateConfig(min_class_rows=6)) == []


def test_the_default_matches_what_the_default_split_needs_to_stratify():
    split = SplitConfig()
    assert ValidateConfig().min_class_rows * min(split.val, split.test) >= 1
    assert (ValidateConfig().min_class_rows - 1) * min(split.val, split.test) < 1


@pytest.mark.parametrize(
    "target",
    [
        list(np.linspace(0.0, 5.0, N)),  # regression: fractional values
        list(range(N)),  # regression: more than MAX_CLASSES integers
        ["yes", "no"] * (N // 2),  # two common classes
    ],
)
def test_labels_without_rare_classes_pass(target):
    assert _rare(_frame(target)) == []


def test_only_a_model_ready_validation_checks_the_classes():
    assert _rare(_frame([f"c{i}" for i in range(N)]), ValidateConfig(model_ready=False)) == []


def test_the_validate_step_fails_on_it_and_a_warning_severity_lets_it_pass(tmp_path):
    df = _frame([f"c{i}" for i in range(N)])
    write_dataset(tmp_path / "ds", df, infer_schema(df, "target"))
    args = (str(tmp_path / "ds"), str(tmp_path / "schema"), str(tmp_path / "a.json"), str(tmp_path / "r.md"))
    with pytest.raises(DataValidationError, match="rare_class in target"):
        validate(*args, ValidateConfig())
    summary = validate(*args, ValidateConfig(severity={"rare_class": "warning"}))
    assert summary["errors"] == 0 and summary["warnings"] == 1
