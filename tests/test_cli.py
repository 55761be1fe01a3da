"""The command line: help, and bad input gives one line naming the problem, never a traceback."""

from __future__ import annotations

import json
import subprocess

import numpy as np
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


@pytest.mark.local
def test_run_missing_file(tmp_path, local_cli):
    proc = local_cli("run", "train_and_deploy", "--local", "--output", str(tmp_path), "--set", "data=/no/such/file.csv")
    line = _one_line_error(proc)
    assert "ingest-data" in line and "/no/such/file.csv" in line and "no such file" in line


@pytest.mark.local
def test_run_dataset_without_label(tmp_path, local_cli):
    data = tmp_path / "nolabel.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    proc = local_cli("run", "train_and_deploy", "--local", "--output", str(tmp_path / "out"), "--set", f"data={data}")
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


def test_serve_tampered_artifact(baseline_artifacts, copy_artifact, cli):
    model = copy_artifact(baseline_artifacts["baseline"])
    weights = model / "model.skops"
    weights.write_bytes(weights.read_bytes() + b"\0")
    line = _one_line_error(cli("serve", str(model), "--name", "x", "--port", "1"))
    assert "sha256 mismatch" in line and "model.skops" in line


def test_compile_writes_yaml(tmp_path, cli):
    proc = cli("compile", "--output", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "train_and_deploy.yaml").stat().st_size > 1000


def test_compile_step_retries_flag_sets_the_retry_policy(tmp_path, cli):
    import yaml

    for retries, expected in (("0", None), ("5", 5)):
        out = tmp_path / retries
        assert (
            cli("compile", "--output", str(out), "--pipeline", "train_and_deploy", "--step-retries", retries).returncode
            == 0
        )
        ir = next(yaml.safe_load_all((out / "train_and_deploy.yaml").read_text()))  # then the platform spec
        tasks = ir["components"]["comp-exit-handler-1"]["dag"]["tasks"]
        got = tasks["train-model"].get("retryPolicy", {}).get("maxRetryCount")
        assert got == expected, f"--step-retries {retries}: retry policy {tasks['train-model'].get('retryPolicy')}"


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


def test_serve_rejects_a_name_that_is_not_a_url_segment(baseline_artifacts, cli):
    proc = cli("serve", str(baseline_artifacts["baseline"]), "--name", "a/b")
    assert proc.returncode == 2 and "'a/b'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.local
def test_failed_run_still_prints_the_table_and_records_the_outcome(tmp_path, local_cli):
    data = tmp_path / "tiny.csv"
    data.write_text("a,target\n1,0\n2,1\n")
    proc = local_cli("run", "train_and_deploy", "--local", "--output", str(tmp_path / "out"), "--set", f"data={data}")
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


@pytest.mark.slow
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


# --- shipyard pipelines, and what `run` checks before anything runs ---------------------------------


def _param_lines(stdout: str, pipeline: str) -> dict[str, str]:
    """``{parameter: its line}`` in the block of ``pipeline`` in `shipyard pipelines`' output."""
    block = stdout.split(f"\n{pipeline}: ", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0]: line for line in block.splitlines()[1:] if line.startswith("  ")}


def test_pipelines_say_required_and_print_defaults_as_set_reads_them(cli):
    proc = cli("pipelines")
    assert proc.returncode == 0, proc.stderr
    assert "inspect._empty" not in proc.stdout and "<class" not in proc.stdout
    drift = _param_lines(proc.stdout, "drift_check")
    assert "required" in drift["current_data"] and "The new data" in drift["current_data"]
    assert "required" in drift["reference_uri"] and "default" not in drift["reference_uri"]
    flagship = _param_lines(proc.stdout, "train_and_deploy")
    assert 'default "sklearn:breast_cancer"' in flagship["data"] and "required" not in flagship["data"]
    assert "default 0" in flagship["seed"] and "int" in flagship["seed"]
    assert "default {}" in flagship["validation"] and "validate_data options" in flagship["validation"]
    assert 'default ""' in flagship["mlflow_tracking_uri"]


def test_a_missing_required_parameter_is_one_line_before_anything_runs(tmp_path, cli):
    out = tmp_path / "out"
    proc = cli("run", "drift_check", "--local", "--output", str(out), "--set", "current_data=sklearn:breast_cancer")
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert "drift_check: missing required parameter(s) reference_uri;" in line and "--set reference_uri=" in line
    assert not out.exists(), "nothing may run (or be created) for a usage error"
    both = _one_line_error(cli("run", "drift_check", "--host", "http://127.0.0.1:1"))  # checked before any request
    assert "missing required parameter(s) current_data, reference_uri" in both


def test_a_kfp_host_where_nothing_listens_is_one_line_naming_it(cli):
    import socket

    with socket.socket() as closed:  # bound, never listening: a connection to it is refused
        closed.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{closed.getsockname()[1]}"
        proc = cli("run", "train_and_deploy", "--host", host, timeout=120)
    assert proc.returncode == 1
    line = _one_line_error(proc)
    assert line == f"shipyard run: error: cannot reach the KFP API at {host}: Connection refused", line


@pytest.mark.slow
def test_a_kfp_host_that_is_not_a_kfp_api_is_one_line(cli):
    """An HTTP server that is not KFP: kfp.Client retries its health check 5 times, 5 s apart, logging
    a traceback each time; the CLI shows one line instead."""
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"http://127.0.0.1:{server.server_address[1]}"
        proc = cli("run", "train_and_deploy", "--host", host, timeout=120)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert proc.returncode == 1
    line = _one_line_error(proc)
    assert f"cannot reach the KFP API at {host}: its health check answered 404" in line and "KFP API?" in line


# --- shipyard serve: the port ----------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1", "http"])
def test_serve_refuses_a_port_outside_1_to_65535_as_a_usage_error(tmp_path, cli, port):
    proc = cli("serve", str(tmp_path), "--name", "x", "--port", port)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"argument --port: expected a port number 1..65535, got '{port}'" in proc.stderr


def test_serve_itself_refuses_a_port_outside_1_to_65535(tmp_path):
    from serving.server import serve
    from shipyard.errors import ConfigError

    with pytest.raises(ConfigError, match=r"port 99999 is not a TCP port; expected 1\.\.65535"):
        serve(str(tmp_path), "x", port=99999)


@pytest.mark.serving
@pytest.mark.slow
def test_serve_on_a_port_in_use_or_a_foreign_host_is_one_line(artifacts, cli):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("serve", str(artifacts["baseline"]), "--name", "x", "--port", str(port), timeout=120)
    assert proc.returncode == 1
    line = _one_line_error(proc)
    assert line.startswith(f"shipyard serve: error: port {port} is in use on 127.0.0.1;"), line
    foreign = cli("serve", str(artifacts["baseline"]), "--name", "x", "--host", "192.0.2.1", timeout=120)
    assert foreign.returncode == 1  # 192.0.2.0/24 is TEST-NET-1, never an address of this machine
    assert "cannot listen on 192.0.2.1:8080: 192.0.2.1 is not an address of this machine" in _one_line_error(foreign)


# --- shipyard validate: the pipeline's ingest and validate code --------------------------------------

VALIDATION = {"model_ready": False, "max_domain_size": 5, "min_rows": 20}


def _labelled_csv(path, rows: int = 120):
    """Numbers, an id, a string column with a small domain and a label; written as CSV."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "cid": np.arange(1000, 1000 + rows),
            "x": rng.normal(size=rows).round(4),
            "n": rng.integers(0, 50, size=rows),
            "site": rng.choice(["north", "south", "east"], size=rows),
            "target": np.arange(rows) % 2,
        }
    )
    frame.to_csv(path, index=False)
    return frame


def _pipeline_steps(data, root, options: dict) -> tuple[dict, dict]:
    """What ingest_data and validate_data write for ``data`` (their cores, as the components call them)."""
    from components.ingest_data import core as ingest
    from components.validate_data import core as validation

    ingest.ingest(str(data), str(root / "dataset"), ingest.IngestConfig.from_dict({"id_columns": ["cid"]}))
    try:
        validation.validate(
            str(root / "dataset"),
            str(root / "schema"),
            str(root / "anomalies.json"),
            str(root / "report.md"),
            validation.ValidateConfig.from_dict(options),
        )
    except Exception as exc:  # the step failed: the reports are written first
        (root / "failed").write_text(str(exc))
    return json.loads((root / "schema" / "schema.json").read_text()), json.loads((root / "anomalies.json").read_text())


def test_validate_writes_the_schema_the_pipeline_steps_write(tmp_path, cli):
    data = tmp_path / "d.csv"
    _labelled_csv(data)
    proc = cli(
        "validate", str(data), "--id-columns", "cid", "--validation", json.dumps(VALIDATION), "--report", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    schema = json.loads((tmp_path / "schema.json").read_text())
    step_schema, step_report = _pipeline_steps(data, tmp_path / "step", VALIDATION)
    assert schema == step_schema
    assert json.loads((tmp_path / "validation.json").read_text()) == step_report
    columns = schema["columns"]
    assert columns["cid"]["role"] == "id" and columns["cid"]["unique"] is True
    assert columns["target"]["role"] == "label" and columns["x"]["role"] == "feature"
    assert set(columns["x"]["quantiles"]) == {"p01", "p05", "p25", "p50", "p75", "p95", "p99"}
    assert columns["site"]["domain"] == ["east", "north", "south"] and schema["min_rows"] == 20
    profile = (tmp_path / "profile" / "profile.json").read_text()
    assert profile == (tmp_path / "step" / "schema" / "profile" / "profile.json").read_text()


def test_validate_rejects_what_the_pipeline_rejects(tmp_path, cli):
    """A null label and an all-null feature: the pipeline's validate step fails on both; so does the CLI (exit 1).

    (A string feature such as ``site`` is a categorical feature, not an error.)"""
    data = tmp_path / "d.csv"
    frame = _labelled_csv(data)
    frame.loc[7, "target"] = None
    frame["empty"] = np.nan
    frame.to_csv(data, index=False)
    proc = cli("validate", str(data), "--id-columns", "cid", "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = {(a["type"], a["column"]) for a in json.loads(proc.stdout)["anomalies"] if a["severity"] == "error"}
    assert found == {("null_fraction", "target"), ("unusable_feature", "empty")}
    _, step_report = _pipeline_steps(data, tmp_path / "step", {})
    assert (tmp_path / "step" / "failed").is_file(), "the pipeline's step fails on this data"
    assert {(a["type"], a["column"]) for a in step_report["anomalies"] if a["severity"] == "error"} == found
    relaxed = cli("validate", str(data), "--id-columns", "cid", "--validation", '{"model_ready": false}')
    assert relaxed.returncode == 1 and "null_fraction" in relaxed.stdout and "unusable_feature" not in relaxed.stdout


@pytest.mark.slow  # three CLI subprocesses, each importing the stack
def test_validate_label_options_and_unusable_input_exit_2(tmp_path, cli):
    data = tmp_path / "d.csv"
    _labelled_csv(data).drop(columns="target").to_csv(data, index=False)
    line = _one_line_error(cli("validate", str(data)))
    assert "no column 'target' to be the label" in line and "--label" in line and "--no-label" in line
    unlabelled = cli("validate", str(data), "--no-label", "--validation", '{"model_ready": false}', "--format", "json")
    assert unlabelled.returncode == 0, unlabelled.stdout + unlabelled.stderr
    relabelled = cli(
        "validate", str(data), "--label", "n", "--validation", '{"model_ready": false}', "--report", str(tmp_path / "r")
    )
    assert relabelled.returncode == 0, relabelled.stdout + relabelled.stderr
    assert json.loads((tmp_path / "r" / "schema.json").read_text())["columns"]["n"]["role"] == "label"
    for args, words in (
        (["s3://bucket/d.csv"], "s3://bucket/d.csv: the s3:// scheme is not supported; expected a local path, a gs://"),
        (["https://example.com/d.csv"], "the https:// scheme is not supported"),
        ([str(data), "--no-label", "--validation", "{bad"], "--validation: not JSON"),
        ([str(data), "--no-label", "--validation", '{"min_rowz": 1}'], "validation: unknown key(s) 'min_rowz'"),
        ([str(data), "--no-label", "--id-columns", "nope"], "column(s) ['nope'] not found"),
    ):
        proc = cli("validate", *args)
        assert proc.returncode == 2 and words in _one_line_error(proc), (args, proc.stderr)


@pytest.mark.local
@pytest.mark.slow
def test_validate_writes_the_schema_a_kfp_local_run_of_the_components_writes(tmp_path, cli, kfp_local):
    """The components themselves under kfp.local (options through KFP's protobuf Struct), not only their cores."""
    from kfp import dsl

    from components.ingest_data.component import ingest_data
    from components.validate_data.component import validate_data

    data = tmp_path / "d.csv"
    _labelled_csv(data)

    def steps(source, options):
        ingested = ingest_data(source=source, label="target", options={"id_columns": ["cid"]})
        validate_data(dataset=ingested.outputs["dataset"], options=options)

    steps.__annotations__ = {"source": str, "options": dict}  # real types: this module has postponed annotations
    probe = dsl.pipeline(name="validate-probe")(steps)

    probe(source=str(data), options=VALIDATION)
    step = next(kfp_local.glob("validate-probe-*")) / "validate-data"
    proc = cli(
        "validate",
        str(data),
        "--id-columns",
        "cid",
        "--validation",
        json.dumps(VALIDATION),
        "--report",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((tmp_path / "r" / "schema.json").read_text()) == json.loads(
        (step / "schema" / "schema.json").read_text()
    )
    assert json.loads((tmp_path / "r" / "validation.json").read_text()) == json.loads((step / "anomalies").read_text())
