"""Tests for shipyard.localrun without running a pipeline: failure lines, task statuses, the plan, the summary, the tee.

(kfp.local runs themselves are the local tier's: tests/test_cli.py and tests/pipelines/.)
No ``from __future__ import annotations`` here: KFP reads the probe components' annotations.
"""

import io
import json
import os
import re
from pathlib import Path

import pytest
from conftest import FLAGSHIP_STAGES
from kfp import dsl

from shipyard import localrun
from shipyard.errors import ShipyardError
from shipyard.localrun import (
    PipelineFailedError,
    RunResult,
    StageRow,
    failure_reason,
    planned_tasks,
    summarize,
    task_logs,
)

# --- failure_reason --------------------------------------------------------------------------------


def test_failure_reason_prefers_the_last_typed_error_over_later_generic_ones():
    log = "\n".join(
        [
            "Traceback (most recent call last):",
            "ValueError: an early generic error",
            "shipyard.errors.ConfigError: train: width must be in 1..4096",
            "shipyard.errors.DataValidationError: column 'age': expected numbers, got 'abc'",
            "RuntimeError: Task 'train-model' finished with status FAILURE",
        ]
    )
    assert failure_reason(log) == "DataValidationError: column 'age': expected numbers, got 'abc'"


def test_failure_reason_without_a_typed_error_takes_the_last_error_line():
    log = "starting\nKeyError: 'x'\nzipfile.BadZipFile: not an Error name\nOSError: [Errno 28] No space left  \n"
    assert failure_reason(log) == "OSError: [Errno 28] No space left"


def test_failure_reason_reads_through_terminal_colours():
    log = "\x1b[31mshipyard.errors.ArtifactError: model.json: sha256 mismatch for model.skops\x1b[0m"
    assert failure_reason(log) == "ArtifactError: model.json: sha256 mismatch for model.skops"


def test_failure_reason_without_any_error_line_points_at_the_log():
    assert failure_reason("all fine\nTask 'a' finished with status SUCCESS\n") == "see the log for details"


# --- RunResult -------------------------------------------------------------------------------------


def test_a_run_without_error_does_not_raise(tmp_path):
    RunResult(tmp_path, tmp_path / "run.log").raise_for_failure()


def test_a_failed_task_raises_a_shipyard_error_naming_task_error_and_log(tmp_path):
    result = RunResult(tmp_path, tmp_path / "run.log", "ingest-data", "DataValidationError: no such file")
    with pytest.raises(PipelineFailedError) as exc:
        result.raise_for_failure()
    assert isinstance(exc.value, ShipyardError)
    assert str(exc.value) == (
        f"task 'ingest-data' failed: DataValidationError: no such file (log: {tmp_path / 'run.log'})"
    )


def test_a_failure_outside_any_task_names_the_pipeline(tmp_path):
    with pytest.raises(PipelineFailedError, match=r"^the pipeline failed: RuntimeError: boom"):
        RunResult(tmp_path, tmp_path / "run.log", None, "RuntimeError: boom").raise_for_failure()


def test_a_second_failed_task_is_named_too(tmp_path):
    result = RunResult(tmp_path, tmp_path / "run.log", "validate-data", "DataValidationError: too_few_rows")
    result.tasks = {
        "ingest-data": ("SUCCESS", ""),
        "validate-data": ("FAILURE", "DataValidationError: too_few_rows"),
        "record-outcome": ("FAILURE", "ConfigError: mlflow: cannot create the store"),
    }
    with pytest.raises(PipelineFailedError) as exc:
        result.raise_for_failure()
    assert str(exc.value).startswith(
        "task 'validate-data' failed: DataValidationError: too_few_rows; "
        "task 'record-outcome' failed too: ConfigError: mlflow: cannot create the store (log: "
    )


# --- task_logs -------------------------------------------------------------------------------------

RUN_LOG = """\
Executing task 'ingest-data'
reading sklearn:breast_cancer
Task 'ingest-data' finished with status SUCCESS
Executing task 'validate-data'
\x1b[31mshipyard.errors.DataValidationError: first attempt\x1b[0m
Task 'validate-data' finished with status FAILURE
Executing task 'validate-data'
second attempt's output
Task 'validate-data' finished with status SUCCESS
Executing task 'record-outcome'
shipyard.errors.ConfigError: no store
Task 'record-outcome' finished with status FAILURE
"""


def test_task_logs_keep_each_tasks_last_status_and_the_log_of_that_attempt():
    assert task_logs(RUN_LOG) == {
        "ingest-data": ("SUCCESS", "reading sklearn:breast_cancer"),
        "validate-data": ("SUCCESS", "second attempt's output"),
        "record-outcome": ("FAILURE", "shipyard.errors.ConfigError: no store"),
    }


def test_task_logs_of_a_finish_without_its_start_have_no_lines():
    assert task_logs("orphan line\nTask 'a' finished with status FAILURE\n") == {"a": ("FAILURE", "")}


# --- _Tee and _captured ----------------------------------------------------------------------------

DONE_LINES = (
    "\x1b[32mTask 'ingest-data' finished with status SUCCESS\x1b[0m\n"
    "some component output\n"
    "Task 'validate-data' finished with status FAILURE\n"
)


def test_tee_logs_everything_and_shows_one_line_per_finished_task():
    log, terminal = io.StringIO(), io.StringIO()
    tee = localrun._Tee(log, terminal, verbose=False)
    assert tee.write(DONE_LINES) == len(DONE_LINES)
    tee.flush()
    assert log.getvalue() == DONE_LINES
    lines = terminal.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"  ingest-data +ok +\d+\.\d s", lines[0]), lines[0]
    assert re.fullmatch(r"  validate-data +FAILURE +\d+\.\d s", lines[1]), lines[1]


def test_tee_in_verbose_mode_echoes_everything():
    log, terminal = io.StringIO(), io.StringIO()
    localrun._Tee(log, terminal, verbose=True).write(DONE_LINES)
    assert terminal.getvalue() == log.getvalue() == DONE_LINES


def test_captured_sends_stdout_to_the_log_and_task_lines_to_the_terminal(tmp_path, capsys):
    log_path = tmp_path / "logs" / "run.log"
    with localrun._captured(log_path, verbose=False):
        print("component chatter")
        print("Task 'split-data' finished with status SUCCESS")
    assert log_path.read_text() == "component chatter\nTask 'split-data' finished with status SUCCESS\n"
    out = capsys.readouterr().out
    assert "chatter" not in out and re.search(r"^  split-data +ok +\d+\.\d s$", out, re.M), out


# --- planned_tasks ---------------------------------------------------------------------------------


@dsl.component(base_image="python:3.11-slim")
def probe_step(x: int) -> int:
    return x


@dsl.component(base_image="python:3.11-slim")
def probe_other(x: int) -> int:
    return x


@dsl.pipeline(name="probe")
def _probe(x: int = 1):
    first = probe_step(x=x)
    with dsl.If(first.output == 1):
        probe_step(x=first.output)
    probe_other(x=x)
    dsl.importer(artifact_uri="gs://bucket/data", artifact_class=dsl.Dataset)


def test_planned_tasks_open_sub_dags_in_dependency_order_and_skip_importers():
    # probe-other and probe-step are both ready first (names break the tie); the If's DAG holds probe-step-2.
    assert planned_tasks(_probe) == ["probe-other", "probe-step", "probe-step-2"]


def test_planned_tasks_of_the_flagship_are_its_stages_in_a_dependency_order():
    import pipelines

    planned = planned_tasks(pipelines.load("train_and_deploy"))
    assert sorted(planned) == sorted(FLAGSHIP_STAGES)
    order = {task: i for i, task in enumerate(planned)}
    chain = ["ingest-data", "validate-data", "split-data", "tune-hyperparams", "train-model", "quantize-model"]
    assert [order[t] for t in chain] == sorted(order[t] for t in chain)
    assert order["evaluate-model"] > order["quantize-model"] and planned[-1] == "record-outcome"


# --- summarize -------------------------------------------------------------------------------------


def _task(run_dir: Path, name: str, mtime: int, params: dict | None = None, artifacts: tuple = ()) -> Path:
    """A task directory as kfp.local leaves it: executor_output.json, modified at ``mtime``."""
    task = run_dir / name
    task.mkdir(parents=True)
    output = task / "executor_output.json"
    output.write_text(json.dumps({"parameterValues": params or {}, "artifacts": {a: {} for a in artifacts}}))
    os.utime(output, (mtime, mtime))
    return task


def test_summarize_a_successful_run_gives_figures_and_outputs_in_plan_order(tmp_path):
    run = tmp_path / "run"
    _task(run, "split-data", 20, {"train_rows": 398, "val_rows": 85, "test_rows": 86}, ("train", "val", "test"))
    _task(run, "ingest-data", 10, {"Output": 569}, ("dataset",))
    rows = summarize(RunResult(run, tmp_path / "run.log"), ["ingest-data", "split-data"])
    assert rows == [
        StageRow("ingest-data", "done", "569 rows", "dataset"),
        StageRow("split-data", "done", "398/85/86 train/val/test rows", "test, train, val"),
    ]


def test_summarize_marks_the_failed_task_and_what_did_not_run_after_it(tmp_path):
    run = tmp_path / "run"
    _task(run, "ingest-data", 10, {"Output": 2})
    error = "DataValidationError: " + "x" * 200
    rows = summarize(RunResult(run, tmp_path / "run.log", "validate-data", error), list(FLAGSHIP_STAGES[:4]))
    assert [(r.task, r.status) for r in rows] == [
        ("ingest-data", "done"),
        ("validate-data", "FAILED"),
        ("split-data", "not run"),
        ("tune-hyperparams", "not run"),
    ]
    assert rows[1].figure == error[:90], "the error is cut to fit the table"


def test_summarize_without_a_failure_calls_a_missing_task_skipped(tmp_path):
    run = tmp_path / "run"
    _task(run, "evaluate-model", 10, {})
    rows = summarize(RunResult(run, tmp_path / "run.log"), ["evaluate-model", "deploy-model"])
    assert rows[1] == StageRow("deploy-model", "skipped", "condition not met", "")


def test_summarize_matches_repeated_task_names_in_the_order_they_ran(tmp_path):
    """A nested pipeline repeats names: kfp.local suffixes -2, and the plan lists the name twice."""
    run = tmp_path / "run"
    _task(run, "ingest-data-2", 30, {"Output": 100})
    _task(run, "ingest-data", 10, {"Output": 569})
    _task(run, "drift-check", 20, {})
    (run / "drift-check" / "drift").write_text(
        json.dumps({"dataset_drift": True, "drifted_columns": ["a"], "columns": [{}, {}]})
    )
    rows = summarize(RunResult(run, tmp_path / "run.log"), ["ingest-data", "drift-check", "ingest-data"])
    assert [(r.task, r.figure) for r in rows] == [
        ("ingest-data", "569 rows"),
        ("drift-check", "DATASET DRIFT: 1 of 2 columns"),
        ("ingest-data-2", "100 rows"),
    ]


def test_a_nested_repeat_that_failed_is_not_hidden_by_the_outer_task_that_succeeded(tmp_path):
    """drift_check: the outer ingest-data succeeded, the retrain's ingest-data-2 failed."""
    run = tmp_path / "run"
    _task(run, "ingest-data", 10, {"Output": 569})
    result = RunResult(run, tmp_path / "run.log", "ingest-data-2", "DataValidationError: bad")
    result.tasks = {"ingest-data": ("SUCCESS", ""), "ingest-data-2": ("FAILURE", "DataValidationError: bad")}
    rows = summarize(result, ["ingest-data", "ingest-data"])
    assert [(r.task, r.status, r.figure) for r in rows] == [
        ("ingest-data", "done", "569 rows"),
        ("ingest-data-2", "FAILED", "DataValidationError: bad"),
    ]


def test_summarize_lists_tasks_that_ran_outside_the_plan_last(tmp_path):
    run = tmp_path / "run"
    _task(run, "ingest-data", 10, {"Output": 5})
    _task(run, "importer", 5, {}, ("artifact",))
    (run / "not-a-task").mkdir()  # no executor_output.json: not listed
    rows = summarize(RunResult(run, tmp_path / "run.log"), ["ingest-data"])
    assert rows[-1] == StageRow("importer", "done", "", "artifact") and len(rows) == 2


def test_summarize_of_a_run_that_left_no_directory_lists_the_plan(tmp_path):
    result = RunResult(tmp_path / "never-created", tmp_path / "run.log", "ingest-data", "ConfigError: bad")
    rows = summarize(result, ["ingest-data", "validate-data"])
    assert [(r.task, r.status) for r in rows] == [("ingest-data", "FAILED"), ("validate-data", "not run")]


def test_figures_read_the_reports_tasks_leave(tmp_path):
    run = tmp_path / "run"
    evaluate = _task(run, "evaluate-model", 10)
    (evaluate / "evaluation").write_text(
        json.dumps({"primary_metric": "roc_auc", "metrics": {"roc_auc": 0.98765}, "blessed": True})
    )
    deploy = _task(run, "deploy-model", 20)
    (deploy / "deployment").mkdir()
    result = {"target": "local", "endpoint": "http://127.0.0.1:1/v2", "smoke": {"v1": "passed", "v2": "passed"}}
    (deploy / "deployment" / "result.json").write_text(json.dumps(result))
    tune = _task(run, "tune-hyperparams", 5, {"best_value": 0.123456})
    (tune / "study").mkdir()
    (tune / "study" / "trials.json").write_text(json.dumps({"result": {"trials": 8, "pruned": 3}}))
    rows = summarize(RunResult(run, tmp_path / "run.log"), ["tune-hyperparams", "evaluate-model", "deploy-model"])
    assert [r.figure for r in rows] == [
        "best val loss 0.1235 (8 trials, 3 pruned)",
        "test roc_auc 0.9877; blessed yes",
        "local: V1 passed, V2 passed at http://127.0.0.1:1/v2 (stopped)",
    ]


def test_a_missing_or_broken_report_gives_placeholders_not_an_error(tmp_path):
    run = tmp_path / "run"
    evaluate = _task(run, "evaluate-model", 10)
    (evaluate / "evaluation").write_text("{not json")
    _task(run, "validate-data", 5, {"rows": 10})
    rows = summarize(RunResult(run, tmp_path / "run.log"), ["validate-data", "evaluate-model"])
    assert rows[0].figure == "10 rows validated, ? errors, ? warnings"
    assert rows[1].figure == "test ? nan; blessed no"


def test_summarize_shows_a_failed_exit_handler_and_a_retried_task_as_done(tmp_path):
    run = tmp_path / "run"
    _task(run, "ingest-data", 10, {"Output": 9})
    result = RunResult(run, tmp_path / "run.log", "validate-data", "DataValidationError: too_few_rows")
    result.tasks = {
        "ingest-data": ("FAILURE", "OSError: first attempt"),  # a later attempt succeeded: its directory is there
        "validate-data": ("FAILURE", "DataValidationError: too_few_rows"),
        "record-outcome": ("FAILURE", "ConfigError: no store"),
    }
    rows = summarize(result, ["ingest-data", "validate-data", "split-data", "record-outcome"])
    assert [(r.task, r.status, r.figure) for r in rows] == [
        ("ingest-data", "done", "9 rows"),
        ("validate-data", "FAILED", "DataValidationError: too_few_rows"),
        ("split-data", "not run", ""),
        ("record-outcome", "FAILED", "ConfigError: no store"),
    ]


def test_the_outcome_figure_names_the_failed_step_it_recorded(tmp_path):
    run = tmp_path / "run"
    task = _task(run, "record-outcome", 10, {"Output": "FAILED"})
    (task / "outcome").write_text(json.dumps({"failed_step": "validate-data", "mlflow_run_id": "0123456789abcdef"}))
    (row,) = summarize(RunResult(run, tmp_path / "run.log"), ["record-outcome"])
    assert row.figure == "outcome FAILED: recorded validate-data failed (MLflow run 01234567)"
