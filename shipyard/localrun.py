"""Running a pipeline under ``kfp.local`` and summarizing what each stage produced.

Component logs go to ``<output>/logs/<run>.log`` (shown with ``--verbose``); a failed run is
turned into one line naming the failed task and its typed error, read from that log. Each
task's final status (the exit handler's included) is read from the log too, so the summary
shows every task that failed. A local run drops the compiled retry policies: a local process
is not preempted, and kfp.local would sleep out every backoff before failing the same way.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shipyard.errors import ShipyardError

ANSI = re.compile(r"\x1b\[[0-9;]*m")
ERROR_LINE = re.compile(r"^\s*((?:shipyard\.errors\.)?[A-Za-z_][\w.]*(?:Error|Exception)): (.+)$")


class PipelineFailedError(ShipyardError):
    """A local pipeline run finished with a failed task."""


@dataclasses.dataclass
class StageRow:
    """One line of the summary table."""

    task: str
    status: str
    figure: str
    where: str


TASK_DONE = re.compile(r"Task '([^']+)' finished with status (\w+)")


class _Tee(io.TextIOBase):
    """Writes to a log file and either echoes everything (verbose) or one line per finished task.

    kfp.local replaces the root logger's handlers with one that writes to ``sys.stdout``, so
    both its own log lines and the components' output arrive here.
    """

    def __init__(self, log: Any, terminal: Any, verbose: bool):
        self.log, self.terminal, self.verbose = log, terminal, verbose
        self.start = time.monotonic()

    def write(self, s: str) -> int:
        self.log.write(s)
        if self.verbose:
            self.terminal.write(s)
        else:
            for match in TASK_DONE.finditer(ANSI.sub("", s)):
                mark = "ok" if match.group(2) == "SUCCESS" else match.group(2)
                self.terminal.write(f"  {match.group(1):<18} {mark:<8} {time.monotonic() - self.start:6.1f} s\n")
                self.terminal.flush()
        return len(s)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()


@contextlib.contextmanager
def _captured(log_path: Path, verbose: bool) -> Iterator[None]:
    import logging

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        logging.captureWarnings(True)  # kfp.local's warnings go to its stdout handler, so to the log
        try:
            with contextlib.redirect_stdout(_Tee(log, sys.stdout, verbose)):
                yield
        finally:
            logging.captureWarnings(False)


def failure_reason(log_text: str) -> str:
    """The most specific error line in a run log (a ShipyardError if there is one)."""
    lines = [ANSI.sub("", line) for line in log_text.splitlines()]
    matches = [m for m in (ERROR_LINE.match(line) for line in lines) if m]
    typed = [m for m in matches if m.group(1).startswith("shipyard.errors.")]
    if not matches:
        return "see the log for details"
    best = (typed or matches)[-1]
    return f"{best.group(1).rsplit('.', 1)[-1]}: {best.group(2).strip()}"


TASK_START = re.compile(r"Executing task '([^']+)'")


def task_logs(log_text: str) -> dict[str, tuple[str, str]]:
    """Each task's final status (``SUCCESS``/``FAILURE``) and the log of its last attempt, from a run log.

    kfp.local logs ``Executing task 'X'`` before a task's own output and ``Task 'X' finished
    with status S`` after it, once per attempt.
    """
    found: dict[str, tuple[str, str]] = {}
    current: str | None = None
    lines: list[str] = []
    for line in ANSI.sub("", log_text).splitlines():
        start = TASK_START.search(line)
        if start:
            current, lines = start.group(1), []
            continue
        done = TASK_DONE.search(line)
        if done:
            found[done.group(1)] = (done.group(2), "\n".join(lines) if done.group(1) == current else "")
            current, lines = None, []
        elif current is not None:
            lines.append(line)
    return found


def without_retries(pipeline: Any) -> Any:
    """A copy of a compiled pipeline whose tasks have no retry policy (the original is unchanged)."""
    local_copy = copy.deepcopy(pipeline)
    spec = local_copy.pipeline_spec
    for dag in [spec.root.dag, *(c.dag for c in spec.components.values() if c.HasField("dag"))]:
        for task in dag.tasks.values():
            task.ClearField("retry_policy")
    return local_copy


def without_checkpoint_volume(pipeline: Any) -> Any:
    """A copy of a compiled pipeline whose steps do not get ``$SHIPYARD_CHECKPOINT_URI`` (the original is
    unchanged): it names where the checkpoint PVC (:mod:`shipyard.placement`) is mounted on a cluster, and
    kfp.local mounts no volume but passes the steps' environment on."""
    from google.protobuf import json_format

    from shipyard.placement import CHECKPOINT_URI_ENV

    local_copy = copy.deepcopy(pipeline)
    spec = local_copy.pipeline_spec
    deployment = json_format.MessageToDict(spec.deployment_spec)
    for executor in deployment.get("executors", {}).values():
        container = executor.get("container", {})
        env = [var for var in container.get("env", []) if var.get("name") != CHECKPOINT_URI_ENV]
        if env:
            container["env"] = env
        else:
            container.pop("env", None)
    spec.deployment_spec.Clear()
    spec.deployment_spec.update(deployment)
    return local_copy


@dataclasses.dataclass
class RunResult:
    """Where a local run left its artifacts and log, what failed (if anything), and every task's status."""

    run_dir: Path
    log_path: Path
    failed_task: str | None = None
    error: str | None = None
    #: Task → (final status, one-line error when it failed), as the log shows them.
    tasks: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

    def raise_for_failure(self) -> None:
        """Raises PipelineFailedError naming the failed task and its error, if the run failed."""
        if self.error is not None:
            where = f"task {self.failed_task!r}" if self.failed_task else "the pipeline"
            also = [
                f"; task {task!r} failed too: {error}"
                for task, (state, error) in self.tasks.items()
                if state == "FAILURE" and task != self.failed_task
            ]
            raise PipelineFailedError(f"{where} failed: {self.error}{''.join(also)} (log: {self.log_path})")


def run(
    pipeline: Any, arguments: dict[str, Any], output: Path, verbose: bool = False, retries: bool = False
) -> RunResult:
    """Runs ``pipeline`` with ``arguments`` under kfp.local (SubprocessRunner, no venv).

    Args:
        pipeline: The compiled pipeline (a ``@dsl.pipeline`` object).
        arguments: Its run arguments.
        output: Where the artifacts (``artifacts/``) and the log (``logs/``) go.
        verbose: Also stream the components' logs to stdout.
        retries: Keep the compiled retry policies (by default a local run drops them).

    Returns:
        The run's artifact directory, its log and, when a task failed, which and why.
    """
    from kfp import local

    root = output / "artifacts"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = output / "logs" / f"{pipeline.name}-{stamp}.log"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    runnable = without_checkpoint_volume(pipeline if retries else without_retries(pipeline))
    before = set(root.glob("*")) if root.exists() else set()
    failure: Exception | None = None
    with _captured(log_path, verbose):
        try:
            runnable(**arguments)
        except RuntimeError as exc:
            failure = exc
    new = sorted(set(root.glob("*")) - before, key=lambda p: p.stat().st_mtime)
    run_dir = new[-1] if new else root
    log_text = log_path.read_text()
    result = RunResult(run_dir, log_path)
    result.tasks = {
        task: (state, failure_reason(text) if state != "SUCCESS" else "")
        for task, (state, text) in task_logs(log_text).items()
    }
    if failure is not None:
        task = re.search(r"Inner task failed: '([^']+)'", ANSI.sub("", str(failure)))
        result.failed_task = task.group(1) if task else None
        state, error = result.tasks.get(result.failed_task or "", ("", ""))
        result.error = error if state == "FAILURE" else failure_reason(log_text)
    return result


def _params(task_dir: Path) -> dict[str, Any]:
    path = task_dir / "executor_output.json"
    return json.loads(path.read_text()).get("parameterValues", {}) if path.is_file() else {}


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _fig_validate(d: Path, p: dict[str, Any]) -> str:
    return f"{p.get('rows', '?')} rows validated, {p.get('errors', '?')} errors, {p.get('warnings', '?')} warnings"


def _fig_tune(d: Path, p: dict[str, Any]) -> str:
    result = _json(d / "study" / "trials.json").get("result", {})
    trials = f"{result.get('trials', '?')} trials, {result.get('pruned', 0)} pruned"
    return f"best val loss {p.get('best_value', float('nan')):.4f} ({trials})"


def _fig_evaluate(d: Path, p: dict[str, Any]) -> str:
    ev = _json(d / "evaluation")
    metric = ev.get("primary_metric", "?")
    value = ev.get("metrics", {}).get(metric, float("nan"))
    return f"test {metric} {value:.4f}; blessed {'yes' if ev.get('blessed') else 'no'}"


def _fig_train(d: Path, p: dict[str, Any]) -> str:
    """The candidate and every family's validation primary metric, e.g. ``candidate gbdt: val
    roc_auc gbdt 0.991, mlp 0.987, linear 0.984``."""
    comparison = _json(d / "comparison_json")
    metric = comparison.get("primary_metric", "?")
    table = comparison.get("table", {})
    scores = ", ".join(f"{name} {row.get('metrics', {}).get(metric, float('nan')):.4f}" for name, row in table.items())
    candidate = p.get("candidate", comparison.get("candidate", "?"))
    return f"candidate {candidate}: val {metric} {scores} ({p.get('device')})"


def _fig_deploy(d: Path, p: dict[str, Any]) -> str:
    rep = _json(d / "deployment" / "result.json")
    smoke = rep.get("smoke")
    if smoke:
        return f"{rep['target']}: V1 {smoke['v1']}, V2 {smoke['v2']} at {rep['endpoint']} (stopped)"
    return f"{rep.get('target', '?')}: {rep.get('action') or 'rendered'} {rep.get('endpoint', '')}".rstrip()


def _fig_rollout(d: Path, p: dict[str, Any]) -> str:
    rep = _json(d / "rollout" / "rollout.json")
    steps = [e["weight"] for e in rep.get("timeline", []) if str(e.get("decision", "")).startswith("weight")]
    walked = f" through {'/'.join(map(str, steps))}%" if steps else ""
    return f"{rep.get('phase', p.get('Output', '?'))}{walked}: {rep.get('reason') or 'promoted'}"[:120]


FIGURES: dict[str, Callable[[Path, dict[str, Any]], str]] = {
    "ingest-data": lambda d, p: f"{p.get('Output', '?')} rows",
    "validate-data": _fig_validate,
    "split-data": lambda d, p: f"{p.get('train_rows')}/{p.get('val_rows')}/{p.get('test_rows')} train/val/test rows",
    "tune-hyperparams": _fig_tune,
    "train-model": lambda d, p: _fig_train(d, p),
    "quantize-model": lambda d, p: f"{p.get('variant')}, size ratio {p.get('size_ratio', float('nan')):.2f}",
    "evaluate-model": _fig_evaluate,
    "register-model": lambda d, p: f"version {p.get('version')} (run {str(p.get('run_id', ''))[:8]})",
    "deploy-model": _fig_deploy,
    "roll-out": _fig_rollout,
    "record-outcome": lambda d, p: _fig_outcome(d, p),
    "drift-check": lambda d, p: _fig_drift(d),
}


def _fig_outcome(d: Path, p: dict[str, Any]) -> str:
    outcome = _json(d / "outcome")
    run = str(outcome.get("mlflow_run_id", ""))[:8]
    recorded = f"recorded {outcome['failed_step']} failed" if outcome.get("failed_step") else "recorded"
    return f"outcome {p.get('Output')}: {recorded} (MLflow run {run})"


def _fig_drift(d: Path) -> str:
    result = _json(d / "drift")
    verdict = "DATASET DRIFT" if result.get("dataset_drift") else "no dataset drift"
    return f"{verdict}: {len(result.get('drifted_columns', []))} of {len(result.get('columns', []))} columns"


def _artifact_names(task_dir: Path) -> str:
    path = task_dir / "executor_output.json"
    names = json.loads(path.read_text()).get("artifacts", {}) if path.is_file() else {}
    return ", ".join(sorted(names))


def planned_tasks(pipeline: Any) -> list[str]:
    """Every container task of a compiled pipeline, sub-DAGs opened, in dependency order."""
    spec = pipeline.pipeline_spec
    executors = spec.deployment_spec["executors"]
    names: list[str] = []

    def walk(dag: Any) -> None:
        pending = dict(dag.tasks.items())
        placed: set[str] = set()
        while pending:  # Kahn's order; names break ties so the listing is stable
            ready = sorted(n for n, t in pending.items() if set(t.dependent_tasks) <= placed) or sorted(pending)
            for name in ready:
                task = pending.pop(name)
                placed.add(name)
                component = spec.components[task.component_ref.name]
                if component.HasField("dag"):
                    walk(component.dag)
                elif "container" in executors[component.executor_label]:
                    names.append(name)

    walk(spec.root.dag)
    return names


def _take(pool: dict[str, Any], task: str) -> tuple[str, Any] | None:
    """Removes and returns the entry for ``task`` (or ``task-N``, a nested repeat) from ``pool``."""
    name = task if task in pool else next((n for n in pool if re.fullmatch(re.escape(task) + r"-\d+", n)), None)
    return (name, pool.pop(name)) if name is not None else None


def summarize(result: RunResult, planned: list[str]) -> list[StageRow]:
    """One row per planned task, in dependency order: its status, key figure and outputs.

    kfp.local names a task's directory after the task, with ``-2``, ``-3``... when a nested
    pipeline repeats a name. A task that did not finish is FAILED (the log shows it failed:
    the failed step, or the exit handler itself), ``not run`` (after a failure) or ``skipped``
    (its condition was false).
    """
    ran = (
        [d for d in result.run_dir.iterdir() if (d / "executor_output.json").is_file()]
        if result.run_dir.is_dir()
        else []
    )
    unused = {d.name: d for d in sorted(ran, key=lambda d: (d / "executor_output.json").stat().st_mtime)}
    failed = {task: error for task, (state, error) in result.tasks.items() if state == "FAILURE"}
    rows = []
    for task in planned:
        match = _take(unused, task)
        if match is not None:
            directory = match[1]
            failed.pop(directory.name, None)  # this task's own (not a nested repeat's): a later attempt succeeded
            figure = FIGURES.get(task, lambda d, p: "")(directory, _params(directory))
            rows.append(StageRow(directory.name, "done", figure, _artifact_names(directory)))
            continue
        failure = _take(failed, task)
        if failure is not None or task == result.failed_task:
            name, error = failure if failure is not None else (task, result.error or "")
            rows.append(StageRow(name, "FAILED", (error or "see the log")[:90], ""))
        elif result.failed_task is None:
            rows.append(StageRow(task, "skipped", "condition not met", ""))
        else:
            rows.append(StageRow(task, "not run", "", ""))
    rows += [StageRow(d.name, "done", "", _artifact_names(d)) for d in unused.values()]
    return rows
