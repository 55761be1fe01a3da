"""Driving the pure rollout controller against a backend: the only place a rollout waits or does I/O.

:func:`run_rollout` feeds :func:`serving.rollout.controller.advance` its events (the canary's
readiness, one analysis per interval, webhook answers, an operator's command) and carries out the
actions it returns on a :class:`serving.rollout.backend.Backend`. Each analysis runs the policy's
PromQL templates through the backend's Prometheus for the canary (and, for ratio and distance checks,
the stable model), so the same decisions are taken on a laptop and on a cluster. Every transition is
published (``shipyard rollout status`` reads it) and recorded in the :class:`RolloutReport`.

The clock and the sleep are parameters, so tests drive whole rollouts without waiting.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from serving.rollout import controller as ctl
from serving.rollout.backend import Backend
from serving.rollout.policy import RolloutPolicy, analyse, evaluate, measure, render_query
from serving.rollout.report import RolloutReport
from shipyard.errors import ConfigError, DeploymentError

#: How often an interval's wait looks for an operator's command.
COMMAND_POLL_S = 1.0

Poster = Callable[[str, dict[str, Any], float], tuple[bool, str]]


def post_webhook(url: str, payload: dict[str, Any], timeout_s: float) -> tuple[bool, str]:
    """POSTs ``payload`` as JSON; a 2xx answer is ``(True, detail)``, anything else ``(False, detail)``."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return True, f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"no answer: {getattr(exc, 'reason', exc)}"


@dataclasses.dataclass
class Driver:
    """One rollout of ``model`` on ``backend`` under ``policy``; :meth:`run` returns the report."""

    policy: RolloutPolicy
    backend: Backend
    model: str
    task: str
    namespace: str = ""
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    post: Poster = post_webhook
    report: RolloutReport = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.checks = self.policy.metric_checks(self.task)
        self.report = RolloutReport.begin(self.model, self.backend.description, self.policy, self.checks)
        self.start = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def query(self, template: str, side: str) -> list[Any]:
        promql = render_query(
            template, self.backend.selector(side), self.policy.interval_s, model=self.model, namespace=self.namespace
        )
        return self.backend.query(promql)

    def measure(self, weight: int) -> Any:
        """One analysis of the interval just waited: canary traffic, then every check.

        At weight 100 the stable model gets no traffic, so checks against it (ratio, distance) are
        left out of that analysis: they were judged at every lower weight.
        """
        samples = self.query(self.policy.requests_query, "canary")
        requests = float(sum(s.value for s in samples)) if samples else None
        results = []
        for check in self.checks:
            if weight >= 100 and check.kind in ("ratio", "distance"):
                continue
            canary = measure(check, self.query(check.query, "canary"))
            stable = measure(check, self.query(check.query, "stable")) if check.kind in ("ratio", "distance") else None
            results.append(evaluate(check, canary, stable))
        return analyse(self.policy, requests, results)

    def wait_interval(self) -> str | None:
        """Waits one interval, looking for an operator's command; returns it as soon as one comes."""
        deadline = self.clock() + self.policy.interval_s
        while True:
            command = self.backend.command()
            if command:
                return command
            left = deadline - self.clock()
            if left <= 0:
                return None
            self.sleep(min(COMMAND_POLL_S, left))

    def wait_ready(self) -> ctl.CanaryReady:
        deadline = self.clock() + self.policy.ready_timeout_s
        while not self.backend.canary_ready():
            if self.clock() >= deadline:
                return ctl.CanaryReady(False, f"the canary was not ready after {self.policy.ready_timeout_s:g} s")
            self.sleep(min(COMMAND_POLL_S, self.policy.ready_timeout_s))
        return ctl.CanaryReady(True, "ready")

    def webhook(self, hook: str, state: ctl.RolloutState) -> ctl.WebhookAnswered:
        url = self.policy.webhook(hook)
        payload = {"hook": hook, "model": self.model, "backend": self.backend.description, "state": state.to_dict()}
        ok, detail = self.post(url, payload, self.policy.webhook_timeout_s)
        return ctl.WebhookAnswered(hook, ok, detail)

    def carry_out(self, action: Any, state: ctl.RolloutState) -> ctl.Event | None:
        """Performs one action; returns the event it produced, if any."""
        if isinstance(action, ctl.CallWebhook):
            return self.webhook(action.hook, state)
        if isinstance(action, ctl.CheckReady):
            return self.wait_ready()
        if isinstance(action, ctl.SetWeight):
            self.backend.set_weight(action.weight)
            return None
        if isinstance(action, ctl.Analyse):
            command = self.wait_interval()
            if command:
                return ctl.OperatorCommand(command)
            return ctl.Analysed(self.measure(state.weight))
        if isinstance(action, ctl.Promote):
            self.backend.promote()
            return ctl.Promoted()
        if isinstance(action, ctl.Rollback):
            self.backend.rollback()
            if self.policy.webhook("rollback"):
                answered = self.webhook("rollback", state)  # a notification: its answer changes nothing
                self.report.note(self.elapsed(), f"rollback webhook: {answered.detail}")
            return None
        raise TypeError(f"unknown rollout action {action!r}")

    def publish(self, state: ctl.RolloutState) -> None:
        try:
            self.backend.publish({**state.to_dict(), "model": self.model, "elapsed_s": round(self.elapsed(), 3)})
        except DeploymentError as exc:  # status is for people; a failed write does not stop the rollout
            self.report.note(self.elapsed(), f"could not publish the state: {exc}")

    def run(self) -> RolloutReport:
        """Runs the rollout to a terminal phase; the backend is left as the last action put it.

        Anything else that escapes (a transport error of a client, Ctrl-C) first takes the canary's
        traffic away (best effort), publishes Failed and is noted in the report, then propagates.
        """
        state = ctl.RolloutState()
        try:
            return self._run(state)
        except BaseException as exc:
            self.report.note(self.elapsed(), f"rollout interrupted: {type(exc).__name__}: {exc}")
            try:
                self.backend.rollback()
                self.report.note(self.elapsed(), "canary traffic set to 0 after the interruption")
            except BaseException as cleanup:  # noqa: BLE001 - best effort; the first error is what matters
                self.report.note(self.elapsed(), f"rollback after the interruption failed: {cleanup}")
            self.publish(ctl.RolloutState(phase=ctl.Phase.FAILED, reason=f"interrupted: {type(exc).__name__}"))
            raise

    def _run(self, state: ctl.RolloutState) -> RolloutReport:
        pending: list[ctl.Event] = [ctl.Started()]
        while pending:
            event = pending.pop(0)
            state, actions = ctl.advance(self.policy, state, event)
            self.report.record(self.elapsed(), event, state, actions)
            self.publish(state)
            for action in actions:
                try:
                    produced = self.carry_out(action, state)
                except (DeploymentError, ConfigError) as exc:  # a backend's failure, or a query the data refutes
                    if state.phase.terminal:  # already rolling back: record, nothing more to decide
                        self.report.note(self.elapsed(), f"{type(action).__name__} failed: {exc}")
                        continue
                    pending = [ctl.BackendFailed(str(exc))]
                    break
                if produced is not None:
                    pending.append(produced)
        self.report.finish(self.elapsed(), state)
        return self.report


def run_rollout(
    policy: RolloutPolicy,
    backend: Backend,
    model: str,
    task: str,
    *,
    namespace: str = "",
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    post: Poster = post_webhook,
) -> RolloutReport:
    """Rolls the backend's canary out under ``policy`` and returns the report (see :class:`Driver`).

    Args:
        policy: Steps, interval, checks, thresholds and webhooks.
        backend: Where the stable model and the canary run.
        model: The served model name (``{{ model }}`` in the templates).
        task: ``classification`` or ``regression`` (picks the default checks).
        namespace: ``{{ namespace }}`` in the templates.
        clock: Seconds, monotonic.
        sleep: Waits that many seconds.
        post: Sends a webhook: ``(url, payload, timeout_s) -> (ok, detail)``.

    Returns:
        The report; its ``phase`` is Succeeded, RolledBack or Failed.
    """
    return Driver(policy, backend, model, task, namespace, clock, sleep, post).run()
