"""The command line: help, and bad input gives one line naming the problem, never a traceback."""

from __future__ import annotations

import json
import subprocess

import pytest


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("command", [[], ["compile"], ["run"], ["serve"], ["manifests"], ["pipelines"]])
def test_help(command, cli):
    proc = cli(*command, "--help")
    assert proc.returncode == 0
    assert "usage: shipyard" in proc.stdout


def test_run_missing_file(tmp_path, cli):
    proc = cli("run", "train_and_deploy", "--local", "--output", str(tmp_path), "--set", "data=/no/such/file.csv")
    line = _one_line_error(proc)
    assert "ingest-data" in line and "/no/such/file.csv" in line and "no such file" in line


def test_run_dataset_without_label(tmp_path, cli):
    data = tmp_path / "nolabel.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    proc = cli("run", "train_and_deploy", "--local", "--output", str(tmp_path / "out"), "--set", f"data={data}")
    line = _one_line_error(proc)
    assert "DataValidationError" in line and "'target'" in line and "a, b" in line


def test_run_unknown_set_key(tmp_path, cli):
    proc = cli("run", "train_and_deploy", "--local", "--output", str(tmp_path), "--set", "n_trial=3")
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert "n_trial" in line and "expected one of" in line and "tune" in line


def test_run_wrong_type_for_set(tmp_path, cli):
    proc = cli("run", "train_and_deploy", "--local", "--output", str(tmp_path), "--set", "tune=[1]")
    assert proc.returncode == 2
    assert "expected dict" in _one_line_error(proc)


def test_run_unknown_pipeline(tmp_path, cli):
    proc = cli("run", "no_such_pipeline", "--local", "--output", str(tmp_path))
    assert "unknown pipeline 'no_such_pipeline'" in _one_line_error(proc)


def test_serve_not_a_model_artifact(tmp_path, cli):
    proc = cli("serve", str(tmp_path), "--name", "x", "--port", "1")
    line = _one_line_error(proc)
    assert "model.json" in line and str(tmp_path) in line


def test_serve_tampered_artifact(artifacts, copy_artifact, cli):
    model = copy_artifact(artifacts["baseline"])
    weights = model / "model.skops"
    weights.write_bytes(weights.read_bytes() + b"\0")
    line = _one_line_error(cli("serve", str(model), "--name", "x", "--port", "1"))
    assert "sha256 mismatch" in line and "model.skops" in line


def test_compile_writes_yaml(tmp_path, cli):
    proc = cli("compile", "--output", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "train_and_deploy.yaml").stat().st_size > 1000


def test_parse_sets_types():
    import pipelines
    from shipyard.cli import parse_sets

    p = pipelines.load("train_and_deploy")
    got = parse_sets(p, ["seed=3", "data=123", 'tune={"n_trials": 2}', "label=y"])
    assert got == {"seed": 3, "data": "123", "tune": {"n_trials": 2}, "label": "y"}


def test_option_typo_is_rejected_before_any_step_runs(tmp_path, cli):
    proc = cli("run", "train_and_deploy", "--local", "--output", str(tmp_path), "--set", 'tune={"n_trialz": 3}')
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert "tune: unknown key(s) 'n_trialz'" in line and "n_trials" in line
    assert not (tmp_path / "artifacts").exists(), "no step may run for a usage error"


def test_compile_rejects_negative_gpus(tmp_path, cli):
    proc = cli("compile", "--output", str(tmp_path), "--train-gpus", "-1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "expected a whole number >= 0" in proc.stderr


def test_bad_gpu_environment_variable_is_one_line(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("SHIPYARD_TRAIN_GPUS", "abc")
    line = _one_line_error(cli("compile", "--output", str(tmp_path)))
    assert "SHIPYARD_TRAIN_GPUS='abc'" in line


def test_output_that_cannot_be_created_is_one_line(tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = _one_line_error(cli("run", "train_and_deploy", "--local", "--output", str(blocker / "out")))
    assert str(blocker) in line


def test_serve_rejects_a_name_that_is_not_a_url_segment(artifacts, cli):
    proc = cli("serve", str(artifacts["baseline"]), "--name", "a/b")
    assert proc.returncode == 2 and "'a/b'" in proc.stderr and "Traceback" not in proc.stderr


def test_failed_run_still_prints_the_table_and_records_the_outcome(tmp_path, cli):
    data = tmp_path / "tiny.csv"
    data.write_text("a,target\n1,0\n2,1\n")
    proc = cli("run", "train_and_deploy", "--local", "--output", str(tmp_path / "out"), "--set", f"data={data}")
    line = _one_line_error(proc)
    assert "task 'validate-data' failed: DataValidationError" in line and "too_few_rows" in line
    rows = {row.split()[0]: row.split()[1] for row in proc.stdout.splitlines() if row[:1].isalpha() and "-" in row}
    assert rows["ingest-data"] == "done" and rows["validate-data"] == "FAILED"
    assert rows["train-model"] == "not" and rows["deploy-model"] == "not"  # "not run"
    assert "outcome FAILED" in proc.stdout


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    """A random split of breast cancer into two CSVs, and a copy of the second with 20 columns scaled."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    order = np.random.default_rng(0).permutation(len(frame))
    root = tmp_path_factory.mktemp("halves")
    ref, cur = frame.iloc[order[:280]], frame.iloc[order[280:]].copy()
    ref.to_csv(root / "ref.csv", index=False)
    cur.to_csv(root / "cur.csv", index=False)
    for column in list(cur.columns)[:20]:
        cur[column] = cur[column] * 1.5
    cur.to_csv(root / "shifted.csv", index=False)
    return root


def test_validate_exit_codes_and_reports(halves, tmp_path, cli):
    same = cli("validate", str(halves / "cur.csv"), "--reference", str(halves / "ref.csv"))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no dataset drift" in same.stdout and "No anomalies." in same.stdout
    shifted = cli(
        "validate",
        str(halves / "shifted.csv"),
        "--reference",
        str(halves / "ref.csv"),
        "--report",
        str(tmp_path / "report"),
    )
    assert shifted.returncode == 1 and "DATASET DRIFT" in shifted.stdout
    for name in (
        "schema.json",
        "validation.json",
        "validation.md",
        "validation.html",
        "drift.json",
        "drift.md",
        "drift.html",
        "profile/profile.json",
    ):
        assert (tmp_path / "report" / name).is_file(), name
    # The report's profile is of the data it validated: the reference of a later check.
    assert cli("validate", str(halves / "ref.csv"), "--report", str(tmp_path / "ref-report")).returncode == 0
    again = cli("validate", str(halves / "cur.csv"), "--reference", str(tmp_path / "ref-report"), "--format", "json")
    assert again.returncode == 0 and json.loads(again.stdout)["drift"]["dataset_drift"] is False


def test_validate_enforces_a_schema(halves, tmp_path, cli):
    assert cli("validate", str(halves / "ref.csv"), "--report", str(tmp_path / "r")).returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text((halves / "ref.csv").read_text().replace("\n1", "\nnot-a-number", 1))
    proc = cli("validate", str(bad), "--schema", str(tmp_path / "r" / "schema.json"))
    assert proc.returncode == 1 and "wrong_dtype" in proc.stdout


def test_validate_usage_errors_exit_2(tmp_path, cli):
    missing = cli("validate", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "no such file" in _one_line_error(missing)
    typo = tmp_path / "schema.json"
    typo.write_text('{"version": 1, "columns": {"a": {"knid": "int"}}}')
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n2\n")
    proc = cli("validate", str(data), "--schema", str(typo))
    assert proc.returncode == 2 and "'knid'" in _one_line_error(proc)


def test_validate_unusable_reference_is_a_usage_error(halves, tmp_path, cli):
    proc = cli("validate", str(halves / "cur.csv"), "--reference", str(tmp_path / "missing.csv"))
    assert proc.returncode == 2 and "missing.csv: no such file" in _one_line_error(proc)
    report = tmp_path / "r"
    assert cli("validate", str(halves / "ref.csv"), "--report", str(report)).returncode == 0
    assert json.loads((report / "validation.json").read_text())["summary"]["profile"] is True
