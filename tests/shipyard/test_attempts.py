"""Tests for shipyard.attempts: failure markers, a deterministic error not repeated, a killed attempt redone.

The unit tests give the decorator the command line KFP gives a component (``--executor_input``);
the kfp.local test runs real retried tasks: one that is SIGKILLed on its first attempt, one
whose first attempt raises a transient error, and one that raises a ConfigError every time.
(No ``from __future__ import annotations`` here: KFP reads the probe component's annotations.)
"""

import json
import sys
from pathlib import Path

import pytest
from kfp import dsl
from kfp.dsl import Artifact, Output

from shipyard import attempts
from shipyard.errors import ConfigError, DataValidationError, StorageError
from shipyard.images import CPU_IMAGE


def _executor_input(outputs: dict) -> list[str]:
    return ["executor_main.py", "--executor_input", json.dumps({"outputs": outputs}), "--function_to_execute", "probe"]


def test_task_dir_is_the_parent_of_the_first_output_artifact(tmp_path):
    outputs = {
        "artifacts": {
            "report": {"artifacts": [{"name": "report", "uri": str(tmp_path / "run" / "train-model" / "report")}]},
            "model": {"artifacts": [{"name": "model", "uri": str(tmp_path / "run" / "train-model" / "model")}]},
        },
        "outputFile": "/tmp/kfp_outputs/output_metadata.json",
    }
    assert attempts.task_dir(_executor_input(outputs)) == tmp_path / "run" / "train-model"


def test_task_dir_maps_cloud_uris_to_their_mounts_and_falls_back_to_the_output_file():
    gcs = {"artifacts": {"m": {"artifacts": [{"uri": "gs://bucket/root/123/job/train-model_456/m"}]}}}
    assert attempts.task_dir(_executor_input(gcs)) == Path("/gcs/bucket/root/123/job/train-model_456")
    params_only = {"outputFile": "/pipeline-root/run/split-data/executor_output.json"}
    assert attempts.task_dir(_executor_input(params_only)) == Path("/pipeline-root/run/split-data")


def test_outside_a_kfp_task_there_is_no_task_dir_and_no_marker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert attempts.task_dir(["pytest", "-q"]) is None

    @attempts.step
    def fails() -> None:
        raise ConfigError("bad option")

    with pytest.raises(ConfigError):
        fails()
    assert not list(tmp_path.rglob(attempts.MARKER))


@pytest.fixture
def in_task(tmp_path, monkeypatch) -> Path:
    """This process, as KFP starts a component: its outputs in <tmp>/run/probe."""
    task = tmp_path / "run" / "probe"
    outputs = {"artifacts": {"out": {"artifacts": [{"name": "out", "uri": str(task / "out")}]}}}
    monkeypatch.setattr(sys, "argv", _executor_input(outputs))
    return task


def test_a_deterministic_error_is_raised_again_without_redoing_the_work(in_task):
    calls = []

    @attempts.step
    def work() -> None:
        calls.append(1)
        raise DataValidationError("column 'city' is string; train_model needs numbers")

    for _ in range(3):
        with pytest.raises(DataValidationError, match=r"^column 'city' is string; train_model needs numbers$"):
            work()
    assert len(calls) == 1
    marker = attempts.read_failure(in_task)
    assert marker is not None and marker.deterministic and marker.task == "probe" and marker.component == "probe"
    assert marker.error == "DataValidationError: column 'city' is string; train_model needs numbers"


def test_a_transient_error_is_retried_and_a_success_removes_the_marker(in_task):
    calls = []

    @attempts.step
    def work() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise StorageError("gs://b/x.csv: connection reset")
        return "done"

    with pytest.raises(StorageError):
        work()
    marker = attempts.read_failure(in_task)
    assert marker is not None and not marker.deterministic
    assert work() == "done" and len(calls) == 2
    assert not (in_task / attempts.MARKER).exists()


def test_a_typed_error_caused_by_io_or_a_lost_connection_is_not_deterministic(in_task):
    """A DataValidationError wrapping an EIO of a FUSE mount, or a ConfigError over a database that went
    away, may pass: the retry redoes the work instead of repeating the error."""

    class OperationalError(Exception):  # SQLAlchemy's name: matched by name, no driver imported
        pass

    def wrapped(error: Exception, cause: BaseException) -> Exception:
        try:
            raise error from cause
        except Exception as exc:
            return exc

    assert not attempts.is_deterministic(wrapped(DataValidationError("x.csv: cannot read"), OSError(5, "EIO")))
    assert not attempts.is_deterministic(wrapped(ConfigError("cannot open storage"), OperationalError("gone")))
    assert attempts.is_deterministic(wrapped(ConfigError("bad option"), KeyError("n_trialz")))
    assert attempts.is_deterministic(DataValidationError("column 'city' is string"))
    assert not attempts.is_deterministic(StorageError("gs://b: connection reset"))
    calls = []

    @attempts.step
    def work() -> None:
        calls.append(1)
        raise wrapped(DataValidationError("x.csv: cannot read"), OSError(5, "EIO"))

    for _ in range(2):
        with pytest.raises(DataValidationError):
            work()
    assert len(calls) == 2, "the retry redid the work"


def test_a_marker_from_an_earlier_run_is_not_trusted(in_task):
    """A deterministic marker older than the longest backoff is an earlier run's: the work runs again."""
    calls = []

    @attempts.step
    def work() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConfigError("schema 'optuna': permission denied")
        return "done"

    with pytest.raises(ConfigError):
        work()
    marker_path = in_task / attempts.MARKER
    data = json.loads(marker_path.read_text())
    data["time"] -= attempts.MAX_MARKER_AGE_S + 1
    marker_path.write_text(json.dumps(data))
    assert work() == "done" and len(calls) == 2


def test_only_the_outermost_decorated_call_keeps_the_marker(in_task):
    @attempts.step
    def inner() -> None:
        pass

    @attempts.step
    def outer() -> None:
        inner()  # succeeds: must not clear anything, nor read the outer's marker
        raise ConfigError("outer fails after inner succeeded")

    with pytest.raises(ConfigError):
        outer()
    marker = attempts.read_failure(in_task)
    assert marker is not None and marker.error == "ConfigError: outer fails after inner succeeded"


def test_run_failures_lists_the_markers_of_a_run_oldest_first(tmp_path):
    first = attempts.write_failure(tmp_path / "validate-data", ConfigError("first"))
    attempts.write_failure(tmp_path / "record-outcome", RuntimeError("second\nmore detail"))
    (tmp_path / "split-data").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / attempts.MARKER).write_text("{not json")

    found = attempts.run_failures(tmp_path)

    assert [f.task for f in found] == ["validate-data", "record-outcome"]
    assert found[0] == first and found[1].error == "RuntimeError: second"
    assert isinstance(found[0].exception(), ConfigError) and isinstance(found[1].exception(), RuntimeError)
    assert attempts.run_failures(tmp_path / "missing") == []


# --- real retries under kfp.local ------------------------------------------------------------------


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def attempt_probe(mode: str, ledger: str, result: Output[Artifact]) -> str:
    """Writes 'attempt' per attempt and 'work' per call of the decorated work to the ledger file."""
    import os
    import signal
    from pathlib import Path

    from shipyard import attempts
    from shipyard.errors import ConfigError

    book = Path(ledger)
    with book.open("a") as f:
        f.write("attempt\n")

    @attempts.step
    def work() -> str:
        with book.open("a") as f:
            f.write("work\n")
        first = book.read_text().count("work") == 1
        if mode == "deterministic":
            raise ConfigError(f"probe: option 'x' is wrong ({mode})")
        if first and mode == "killed":
            os.kill(os.getpid(), signal.SIGKILL)  # preemption: no exception handler runs
        if first and mode == "flaky":
            raise RuntimeError("probe: connection reset")
        Path(result.path).write_text(mode)
        return mode

    return work()


MODES = ("killed", "flaky", "deterministic")


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory, local_run):
    root = tmp_path_factory.mktemp("attempts")
    ledgers = {mode: root / f"{mode}.ledger" for mode in MODES}

    @dsl.pipeline(name="attempt-probe")
    def probe_pipeline():
        done = []
        for mode in MODES:  # in this order: kfp.local runs nothing after the failing (last) one
            task = attempt_probe(mode=mode, ledger=str(ledgers[mode])).after(*done)
            task.set_retry(num_retries=2, backoff_duration="0s")
            task.set_caching_options(False)
            done.append(task)

    result = local_run(probe_pipeline, {}, root / "out", retries=True)
    tasks = {mode: f"attempt-probe-{i + 1}" if i else "attempt-probe" for i, mode in enumerate(MODES)}
    return {"result": result, "ledgers": ledgers, "tasks": tasks, "log": result.log_path.read_text()}


def _ledger(probe_run, mode: str) -> tuple[int, int]:
    lines = probe_run["ledgers"][mode].read_text().split()
    return lines.count("attempt"), lines.count("work")


@pytest.mark.local
def test_a_killed_attempt_is_retried_and_redoes_the_work(probe_run):
    assert _ledger(probe_run, "killed") == (2, 2)
    task_dir = probe_run["result"].run_dir / probe_run["tasks"]["killed"]
    assert (task_dir / "result").read_text() == "killed"
    assert not (task_dir / attempts.MARKER).exists()
    assert probe_run["result"].tasks[probe_run["tasks"]["killed"]][0] == "SUCCESS"


@pytest.mark.local
def test_a_transient_error_is_retried(probe_run):
    assert _ledger(probe_run, "flaky") == (2, 2)
    task_dir = probe_run["result"].run_dir / probe_run["tasks"]["flaky"]
    assert (task_dir / "result").read_text() == "flaky" and not (task_dir / attempts.MARKER).exists()


@pytest.mark.local
def test_a_deterministic_error_fails_every_retry_at_once_with_the_same_line(probe_run):
    result, task = probe_run["result"], probe_run["tasks"]["deterministic"]
    assert _ledger(probe_run, "deterministic") == (3, 1)  # three attempts, the work done once
    assert result.failed_task == task and result.tasks[task] == ("FAILURE", result.error)
    assert result.error == "ConfigError: probe: option 'x' is wrong (deterministic)"
    assert probe_run["log"].count("shipyard.errors.ConfigError: probe: option 'x' is wrong (deterministic)") == 3
    assert probe_run["log"].count("failing again at once instead of redoing the work") == 2
    marker = attempts.read_failure(result.run_dir / task)
    assert marker is not None and marker.deterministic and marker.component == "attempt_probe"
