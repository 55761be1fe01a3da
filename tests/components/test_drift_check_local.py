"""The drift_check component in a real kfp.local run: validate_data's profile as the reference."""

import json

import pytest

pytestmark = [pytest.mark.local, pytest.mark.slow]


def test_drift_check_branches_on_a_local_run(kfp_local):
    from kfp import dsl

    from components.drift_check.component import drift_check
    from components.ingest_data.component import ingest_data
    from components.validate_data.component import validate_data

    @dsl.pipeline(name="drift-probe")
    def probe(reference_data: str, current_data: str):
        reference = ingest_data(source=reference_data, label="target")
        validated = validate_data(dataset=reference.outputs["dataset"])
        current = ingest_data(source=current_data, label="target")
        drift_check(reference=validated.outputs["schema"], current=current.outputs["dataset"])

    probe(reference_data="sklearn:breast_cancer", current_data="sklearn:breast_cancer")
    run_dir = next(kfp_local.glob("drift-probe-*"))
    outputs = json.loads((run_dir / "drift-check" / "executor_output.json").read_text())["parameterValues"]
    assert outputs == {"Output": False}
    result = json.loads((run_dir / "drift-check" / "drift").read_text())
    assert len(result["columns"]) == 31 and {c["method"] for c in result["columns"]} == {"ks", "z"}
    assert "no dataset drift" in (run_dir / "drift-check" / "html_report").read_text()
