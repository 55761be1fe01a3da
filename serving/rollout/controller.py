"""The canary rollout as a pure state machine: ``advance(policy, state, event) -> (state, actions)``.

No I/O, no sleeping, no clock (Flagger's scheduler with the side effects taken out): the driver
(``serving.rollout.run``) performs each returned action against a backend and feeds what happened back
as the next event. Phases: ``Initializing → Progressing → Promoting → Succeeded``, or ``RolledBack``
(the metrics failed, or an operator aborted) / ``Failed`` (a webhook refused, the canary never became
ready, too many inconclusive intervals, the backend failed). Events in a terminal phase change nothing.

Flow:

- ``Started``: ``CallWebhook("pre_rollout")`` when the policy names one (refused: Failed + Rollback),
  then ``CheckReady``; ``CanaryReady(True)``: Progressing, ``SetWeight(plan[0])``, ``Analyse``;
  ``CanaryReady(False)``: Failed + Rollback.
- ``Analysed``: inconclusive waits (``Analyse``) until ``max_inconclusive`` in a row (Failed + Rollback);
  a fail adds to ``failures`` and breaks the streak (``failure_threshold`` failures: RolledBack +
  Rollback); a pass adds to the streak and the step's passes. A step is complete with ``iterations``
  passes and ``consecutive_successes`` in a row; then the next weight, or after the last
  ``CallWebhook("confirm_promotion")`` when configured (refused: keep analysing, ask again after the
  next complete step), else Promoting + ``Promote`` (weight 100, also after a ``max_weight`` below 100).
- ``Promoted``: Succeeded. ``BackendFailed``: Failed + Rollback. ``OperatorCommand("promote")``: Promoting
  + Promote; ``OperatorCommand("abort")``: RolledBack + Rollback. ``WebhookAnswered("rollback", ok=True)``
  (Flagger's rollback hook, if the driver polls it): RolledBack + Rollback.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from shipyard.errors import ConfigError

from .policy import Analysis, RolloutPolicy

#: Operator commands (``serving.rollout.backend.COMMANDS``).
COMMANDS = ("promote", "abort")


class Phase(enum.StrEnum):
    """Where a rollout stands (Flagger's canary phases); the values are what reports and annotations show."""

    INITIALIZING = "Initializing"
    PROGRESSING = "Progressing"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        """Whether the rollout is over (Succeeded, RolledBack, Failed)."""
        return self in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED)


@dataclasses.dataclass(frozen=True)
class RolloutState:
    """Everything the controller remembers between events (JSON-able through :meth:`to_dict`).

    Attributes:
        phase: The phase.
        step: Index into ``policy.plan()``; -1 before the first step.
        weight: The canary's traffic share in percent as the controller last set it.
        failures: Failed intervals over the whole rollout.
        streak: Passing intervals in a row at this step.
        passes_at_step: Passing intervals at this step.
        inconclusive: Inconclusive intervals in a row.
        intervals: Analysed intervals, all outcomes.
        awaiting: The webhook whose answer is awaited (``pre_rollout``, ``confirm_promotion``) or ``""``.
        reason: Why the last decision was taken (a rollback's failed checks, ...).
    """

    phase: Phase = Phase.INITIALIZING
    step: int = -1
    weight: int = 0
    failures: int = 0
    streak: int = 0
    passes_at_step: int = 0
    inconclusive: int = 0
    intervals: int = 0
    awaiting: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The state as plain JSON-able values (the phase as its text)."""
        values = dataclasses.asdict(self)
        values["phase"] = self.phase.value
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RolloutState:
        """Reads what :meth:`to_dict` wrote (a published state); missing keys take their defaults.

        Args:
            values: Keys among the field names.

        Returns:
            The state.

        Raises:
            ConfigError: A key is unknown, the phase is not a :class:`Phase`, or a value has the wrong kind.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"rollout state: expected a mapping, got {type(values).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(
                f"rollout state: unknown key(s) {', '.join(map(repr, unknown))}; expected one of: {', '.join(fields)}"
            )
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name == "phase":
                try:
                    kwargs[name] = Phase(value)
                except ValueError:
                    raise ConfigError(
                        f"rollout state: phase {value!r} is not one of {', '.join(p.value for p in Phase)}"
                    ) from None
            elif name in ("awaiting", "reason"):
                if not isinstance(value, str):
                    raise ConfigError(f"rollout state: {name!r} must be str, got {value!r}")
                kwargs[name] = value
            else:
                if isinstance(value, float) and value.is_integer():
                    value = int(value)  # JSON through protobuf Struct: every number a float
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ConfigError(f"rollout state: {name!r} must be int, got {value!r}")
                kwargs[name] = value
        return cls(**kwargs)


# Events: what happened (the driver's report of an action's outcome, or an operator's command).


@dataclasses.dataclass(frozen=True)
class Started:
    """The rollout begins (the backend has the canary beside stable at weight 0)."""


@dataclasses.dataclass(frozen=True)
class WebhookAnswered:
    """A webhook answered: ``ok`` a 2xx status, ``detail`` the status or error for the reason text."""

    hook: str
    ok: bool
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class CanaryReady:
    """The readiness check's outcome (``ready`` False: not ready within ``ready_timeout_s``)."""

    ready: bool
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Analysed:
    """One interval was measured and judged (``serving.rollout.policy.analyse``)."""

    analysis: Analysis


@dataclasses.dataclass(frozen=True)
class OperatorCommand:
    """An operator's ``promote`` (skip the remaining steps) or ``abort`` (roll back)."""

    command: str


@dataclasses.dataclass(frozen=True)
class Promoted:
    """The backend promoted the canary."""


@dataclasses.dataclass(frozen=True)
class BackendFailed:
    """A backend call raised; ``detail`` is its message."""

    detail: str


Event = Started | WebhookAnswered | CanaryReady | Analysed | OperatorCommand | Promoted | BackendFailed


# Actions: what the driver is to do next, in order.


@dataclasses.dataclass(frozen=True)
class CallWebhook:
    """POST the rollout's state to the policy's webhook ``hook``; answer with :class:`WebhookAnswered`."""

    hook: str


@dataclasses.dataclass(frozen=True)
class CheckReady:
    """Wait (up to ``ready_timeout_s``) for the canary to be ready; answer with :class:`CanaryReady`."""


@dataclasses.dataclass(frozen=True)
class SetWeight:
    """Send ``weight`` percent of the traffic to the canary."""

    weight: int


@dataclasses.dataclass(frozen=True)
class Analyse:
    """Wait one interval, then measure and judge it; answer with :class:`Analysed`."""


@dataclasses.dataclass(frozen=True)
class Promote:
    """Make the canary the stable model with all the traffic; answer with :class:`Promoted`."""


@dataclasses.dataclass(frozen=True)
class Rollback:
    """Send all the traffic back to stable and take the canary out; ``reason`` says why."""

    reason: str


Action = CallWebhook | CheckReady | SetWeight | Analyse | Promote | Rollback


def _end(state: RolloutState, phase: Phase, reason: str) -> tuple[RolloutState, list[Action]]:
    return dataclasses.replace(state, phase=phase, weight=0, awaiting="", reason=reason), [Rollback(reason)]


def _promote(state: RolloutState, reason: str) -> tuple[RolloutState, list[Action]]:
    return dataclasses.replace(state, phase=Phase.PROMOTING, weight=100, awaiting="", reason=reason), [Promote()]


def _unexpected(state: RolloutState, event: object) -> ValueError:
    awaiting = f" awaiting {state.awaiting}" if state.awaiting else ""
    return ValueError(f"rollout controller: {event!r} is not expected in phase {state.phase.value}{awaiting}")


def advance(policy: RolloutPolicy, state: RolloutState, event: Event) -> tuple[RolloutState, list[Action]]:
    """The next state and the actions to perform, in order, after one event.

    Args:
        policy: The rollout policy (plan, tolerances, webhooks).
        state: The current state (``RolloutState()`` before ``Started``).
        event: What happened.

    Returns:
        The new state and the actions; in a terminal phase the state unchanged and no actions.

    Raises:
        ConfigError: An :class:`OperatorCommand` is not ``promote`` or ``abort``.
        ValueError: The event cannot happen in this state (a driver bug: e.g. ``Analysed`` while a
            webhook's answer is awaited, ``Promoted`` outside Promoting).
    """
    if isinstance(event, OperatorCommand) and event.command not in COMMANDS:
        raise ConfigError(f"rollout: unknown operator command {event.command!r}; expected one of {', '.join(COMMANDS)}")
    phase = state.phase
    if phase.terminal:
        return state, []
    if isinstance(event, BackendFailed):
        return _end(state, Phase.FAILED, f"backend failed: {event.detail}")
    if isinstance(event, OperatorCommand):
        if phase is Phase.PROMOTING:
            return state, []  # the promotion is under way: neither command can change it now
        if event.command == "promote":
            return _promote(state, "promoted by the operator")
        return _end(state, Phase.ROLLED_BACK, "aborted by the operator")
    if phase is Phase.PROMOTING:
        if isinstance(event, Promoted):
            return dataclasses.replace(state, phase=Phase.SUCCEEDED, weight=100), []
        raise _unexpected(state, event)
    if isinstance(event, WebhookAnswered):
        return _webhook(policy, state, event)
    if state.awaiting:
        raise _unexpected(state, event)
    if phase is Phase.INITIALIZING:
        if isinstance(event, Started) and state.step == -1:
            if policy.webhook("pre_rollout"):
                return dataclasses.replace(state, awaiting="pre_rollout"), [CallWebhook("pre_rollout")]
            return state, [CheckReady()]
        if isinstance(event, CanaryReady):
            if not event.ready:
                return _end(state, Phase.FAILED, "canary not ready" + (f": {event.detail}" if event.detail else ""))
            weight = policy.plan()[0]
            return dataclasses.replace(state, phase=Phase.PROGRESSING, step=0, weight=weight), [
                SetWeight(weight),
                Analyse(),
            ]
        raise _unexpected(state, event)
    if isinstance(event, Analysed):
        return _analysed(policy, state, event.analysis)
    raise _unexpected(state, event)


def _webhook(policy: RolloutPolicy, state: RolloutState, event: WebhookAnswered) -> tuple[RolloutState, list[Action]]:
    detail = f": {event.detail}" if event.detail else ""
    if event.hook == "rollback":
        # Flagger's rollback hook: a driver polling it hands over its answer; a 2xx rolls back.
        if event.ok:
            return _end(state, Phase.ROLLED_BACK, f"rolled back by the rollback webhook{detail}")
        return state, []
    if event.hook != state.awaiting:
        raise _unexpected(state, event)
    if event.hook == "pre_rollout":
        if not event.ok:
            return _end(state, Phase.FAILED, f"pre_rollout webhook refused the rollout{detail}")
        return dataclasses.replace(state, awaiting=""), [CheckReady()]
    # confirm_promotion
    if event.ok:
        return _promote(state, f"all {len(policy.plan())} steps passed; promotion confirmed{detail}")
    return (
        dataclasses.replace(
            state,
            awaiting="",
            streak=0,
            passes_at_step=0,
            reason=f"confirm_promotion webhook refused{detail}; analysing on",
        ),
        [Analyse()],
    )


def _analysed(policy: RolloutPolicy, state: RolloutState, analysis: Analysis) -> tuple[RolloutState, list[Action]]:
    state = dataclasses.replace(state, intervals=state.intervals + 1)
    if analysis.outcome == "inconclusive":
        inconclusive = state.inconclusive + 1
        state = dataclasses.replace(state, inconclusive=inconclusive, reason=analysis.reason)
        if policy.max_inconclusive and inconclusive >= policy.max_inconclusive:
            return _end(
                state,
                Phase.FAILED,
                f"{inconclusive} inconclusive intervals in a row (max_inconclusive {policy.max_inconclusive}): "
                f"{analysis.reason}",
            )
        return state, [Analyse()]
    if analysis.outcome == "fail":
        failures = state.failures + 1
        state = dataclasses.replace(state, failures=failures, streak=0, inconclusive=0, reason=analysis.reason)
        if failures >= policy.failure_threshold:
            return _end(
                state,
                Phase.ROLLED_BACK,
                f"{failures} failed interval{'s' if failures != 1 else ''} "
                f"(failure_threshold {policy.failure_threshold}): {analysis.reason}",
            )
        return state, [Analyse()]
    if analysis.outcome != "pass":
        raise ValueError(f"rollout controller: analysis outcome {analysis.outcome!r} is not pass, fail or inconclusive")
    state = dataclasses.replace(
        state,
        streak=state.streak + 1,
        passes_at_step=state.passes_at_step + 1,
        inconclusive=0,
        reason=analysis.reason,
    )
    if state.passes_at_step < policy.iterations or state.streak < policy.consecutive_successes:
        return state, [Analyse()]
    plan = policy.plan()
    if state.step + 1 < len(plan):
        weight = plan[state.step + 1]
        return dataclasses.replace(state, step=state.step + 1, weight=weight, streak=0, passes_at_step=0), [
            SetWeight(weight),
            Analyse(),
        ]
    if policy.webhook("confirm_promotion"):
        return dataclasses.replace(state, awaiting="confirm_promotion"), [CallWebhook("confirm_promotion")]
    return _promote(state, f"all {len(plan)} steps passed")
