"""Evidently's own HTML drift report, the option beside Shipyard's page.

Where Evidently is installed (the optional ``evidently`` extra) the report is rendered by Evidently
itself and read back from the written page; elsewhere those tests skip, saying how to install it.
The not-installed error path runs in both: for real where Evidently is absent, and where it is
present with its import made to fail as it fails for a missing package.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import numpy as np
import pandas as pd
import pytest

from components.drift_check import core as drift
from components.drift_check.evidently_report import (
    EVIDENTLY_REQUIREMENT,
    column_types,
    preset_options,
    require_evidently,
    write_evidently_report,
)
from shipyard.errors import ConfigError, DataValidationError

EVIDENTLY = importlib.util.find_spec("evidently") is not None
needs_evidently = pytest.mark.skipif(
    not EVIDENTLY,
    reason="Evidently is not installed; to run its report for real: "
    "pip install -c requirements.lock -e '.[evidently]' (or pip install 'evidently>=0.7.23,<0.8')",
)
CHECKED = ["x", "y", "c", "note"]


def _frames(rows_ref: int = 600, rows_cur: int = 500) -> tuple[pd.DataFrame, pd.DataFrame]:
    """x shifts, y and c do not; note is a string column with mostly distinct values."""
    rng = np.random.default_rng(7)

    def frame(rows: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "x": rng.normal(shift, 1.0, rows),
                "y": rng.normal(0.0, 2.0, rows),
                "c": rng.choice(["a", "b", "c"], rows, p=[0.5, 0.3, 0.2]),
                "note": [f"note-{i % 400}" for i in range(rows)],
                "not_checked_zz": rng.normal(shift * 5, 1.0, rows),
            }
        )

    return frame(rows_ref, 0.0), frame(rows_cur, 1.0)


def _dashboard(html: str) -> dict:
    """The report data Evidently 0.7 embeds in its page: ``var metric_<id> = {...};``."""
    match = re.search(r"var metric_\w+ = (\{.*?\});\n", html, re.S)
    assert match, "no embedded Evidently dashboard in the page"
    return json.loads(match.group(1))


def _walk(widget: dict):
    yield widget
    for child in widget.get("widgets") or []:
        yield from _walk(child)


def _drift_table(html: str) -> tuple[str, dict[str, dict]]:
    """The dataset verdict line and the per-column drift table of the page."""
    widgets = [w for top in _dashboard(html)["widgets"] for w in _walk(top)]
    verdicts = [
        c["label"]
        for w in widgets
        if w["type"] == "counter"
        for c in w["params"]["counters"]
        if "Dataset Drift" in c["label"]
    ]
    tables = [w for w in widgets if w["type"] == "big_table" and "column_name" in json.dumps(w["params"]["columns"])]
    assert len(verdicts) == 1 and len(tables) == 1, "unexpected Evidently page layout"
    return verdicts[0], {row["column_name"]: row for row in tables[0]["params"]["data"]}


@pytest.mark.slow  # Evidently imports in several seconds
@needs_evidently
def test_report_compares_the_checked_columns_with_the_decisions_verdicts(tmp_path):
    ref, cur = _frames()
    ours = drift.check(drift.build_profile(ref, CHECKED), cur, drift.DriftConfig())
    path = write_evidently_report(ref, cur, tmp_path / "out" / "evidently.html", CHECKED)

    assert path == tmp_path / "out" / "evidently.html" and list(path.parent.iterdir()) == [path]
    html = path.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    verdict, table = _drift_table(html)
    assert sorted(table) == sorted(CHECKED)  # the unchecked column is not in the report
    assert table["note"]["column_type"] == "cat"  # declared categorical, not Evidently's free text
    mine = {c["column"]: c for c in ours["columns"]}
    for name, row in table.items():
        assert (row["data_drift"] == "Detected") == mine[name]["drifted"], name
    assert table["x"]["data_drift"] == "Detected" and table["y"]["data_drift"] == "Not Detected"
    assert table["x"]["stattest_name"] == "K-S p_value"  # Evidently's choice for 600 numeric rows, as ours
    assert table["y"]["drift_score"] == pytest.approx(mine["y"]["score"], abs=1e-6)  # same KS p-value
    assert "NOT detected" in verdict and "threshold is 0.5" in verdict


@needs_evidently
def test_report_applies_the_drift_policy(tmp_path):
    ref, cur = _frames()
    config = drift.DriftConfig.from_dict(
        {"drift_share": 0.25, "per_column": {"y": {"method": "psi", "threshold": 0.2}, "c": {"threshold": 0.5}}}
    )
    ours = drift.check(drift.build_profile(ref, CHECKED), cur, config)
    path = write_evidently_report(ref, cur, tmp_path / "evidently.html", CHECKED, config)

    verdict, table = _drift_table(path.read_text(encoding="utf-8"))
    assert table["y"]["stattest_name"] == "PSI"
    assert "Dataset Drift is detected" in verdict and "threshold is 0.25" in verdict
    assert ours["dataset_drift"]  # 1 of 4 columns drifted, share 0.25 ≥ 0.25
    mine = {c["column"]: c for c in ours["columns"]}
    assert {n: r["data_drift"] == "Detected" for n, r in table.items()} == {n: c["drifted"] for n, c in mine.items()}


def test_without_evidently_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    if EVIDENTLY:  # make its import fail exactly as a missing package's does
        monkeypatch.setitem(sys.modules, "evidently", None)
    ref, cur = _frames(50, 50)
    target = tmp_path / "evidently.html"
    with pytest.raises(ConfigError, match=r"not installed") as caught:
        write_evidently_report(ref, cur, target, CHECKED)
    assert "pip install 'shipyard[evidently]'" in str(caught.value)
    assert EVIDENTLY_REQUIREMENT in str(caught.value)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"not installed"):
        require_evidently()


@needs_evidently
def test_an_evidently_without_the_0_7_api_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "evidently.presets", None)  # as in Evidently < 0.7
    ref, cur = _frames(50, 50)
    with pytest.raises(ConfigError, match=r"needs evidently>=0\.7\.23,<0\.8; the installed Evidently \S+ cannot"):
        write_evidently_report(ref, cur, tmp_path / "evidently.html", CHECKED)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([], "no columns to compare"),
        (["x", "gone"], r"reference data lacks column\(s\) \['gone'\]"),
        (["x", "empty"], r"column\(s\) \['empty'\] of the reference data have no finite non-null values"),
    ],
)
def test_bad_columns_are_named_before_evidently_is_needed(tmp_path, columns, message):
    ref, cur = _frames(50, 50)
    ref["empty"], cur["empty"] = np.inf, 1.0
    with pytest.raises(DataValidationError, match=message):
        write_evidently_report(ref, cur, tmp_path / "evidently.html", columns)
    assert list(tmp_path.iterdir()) == []


def test_columns_are_typed_as_the_decisions_type_them():
    rows = 40
    frame = pd.DataFrame(
        {
            "f": np.linspace(0, 1, rows),
            "few_ints": np.arange(rows) % 4,
            "many_ints": np.arange(rows, dtype=np.uint32),  # unsigned: Evidently's own inference skips it
            "few_nullable": pd.array([1, 2, None, 3] * 10, dtype="Int64"),
            "flag": np.arange(rows) % 2 == 0,
            "text": [f"t{i}" for i in range(rows)],
            "when": pd.date_range("2024-01-01", periods=rows, freq="D"),
        }
    )
    numerical, categorical = column_types(frame, list(frame.columns))
    assert numerical == ["f", "many_ints"]
    assert categorical == ["few_ints", "few_nullable", "flag", "text", "when"]


def test_the_policy_maps_to_the_preset_options():
    config = drift.DriftConfig.from_dict(
        {
            "drift_share": 0.3,
            "numeric_method": "wasserstein",
            "per_column": {"c": {"method": "psi"}, "y": {"method": "auto", "threshold": 0.2}},
        }
    )
    assert preset_options(config) == {
        "drift_share": 0.3,
        "num_method": "wasserstein",
        "cat_method": None,
        "per_column_method": {"c": "psi"},
        "per_column_threshold": {"y": 0.2},
    }
    assert preset_options(drift.DriftConfig()) == {
        "drift_share": 0.5,
        "num_method": None,
        "cat_method": None,
        "per_column_method": None,
        "per_column_threshold": None,
    }


@needs_evidently
def test_drift_check_option_puts_evidentlys_page_in_html_report(tmp_path):
    from shipyard.artifacts import infer_schema, write_dataset

    ref, cur = _frames()
    write_dataset(tmp_path / "ref", ref, infer_schema(ref, None))
    config = drift.DriftConfig.from_dict({"html_report": "evidently", "columns": CHECKED})
    out = {name: tmp_path / name for name in ("d.json", "d.md", "d.html")}
    result = drift.drift_check(
        str(tmp_path / "ref"), cur, str(out["d.json"]), str(out["d.md"]), str(out["d.html"]), config
    )
    verdict, table = _drift_table(out["d.html"].read_text(encoding="utf-8"))
    assert sorted(table) == sorted(CHECKED)
    assert {c["column"]: c["drifted"] for c in result["columns"]} == {
        name: row["data_drift"] == "Detected" for name, row in table.items()
    }
    assert json.loads(out["d.json"].read_text())["dataset_drift"] == result["dataset_drift"]  # JSON stays ours


@needs_evidently
def test_drift_check_option_needs_a_reference_dataset_and_writes_nothing_without_one(tmp_path):
    ref, cur = _frames()
    drift.save_profile(drift.build_profile(ref, CHECKED), tmp_path / "profile")
    config = drift.DriftConfig.from_dict({"html_report": "evidently"})
    html = tmp_path / "d.html"
    with pytest.raises(ConfigError, match="reference must be a Dataset"):
        drift.drift_check(
            str(tmp_path / "profile"), cur, str(tmp_path / "d.json"), str(tmp_path / "d.md"), str(html), config
        )
    assert not html.exists() and not (tmp_path / "d.json").exists()


def test_html_report_option_is_checked():
    with pytest.raises(ConfigError, match="html_report must be one of"):
        drift.DriftConfig.from_dict({"html_report": "plotly"})


@needs_evidently
def test_drift_check_option_with_every_column_skipped_keeps_our_page(tmp_path):
    from shipyard.artifacts import infer_schema, write_dataset

    ref, cur = _frames()
    write_dataset(tmp_path / "ref", ref[["x"]], infer_schema(ref[["x"]], None))
    config = drift.DriftConfig.from_dict({"html_report": "evidently"})
    html = tmp_path / "d.html"
    result = drift.drift_check(
        str(tmp_path / "ref"), cur.assign(x=np.nan), str(tmp_path / "d.json"), str(tmp_path / "d.md"), str(html), config
    )
    assert result["columns"] == [] and result["dataset_drift"] is False
    assert "no dataset drift" in html.read_text()
