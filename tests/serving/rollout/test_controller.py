"""The rollout controller: table-driven runs of the pure state machine over sequences of analyses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from serving.rollout.controller import (
    Analyse,
    Analysed,
    BackendFailed,
    CallWebhook,
    CanaryReady,
    CheckReady,
    OperatorCommand,
    Phase,
    Promote,
    Promoted,
    Rollback,
    RolloutState,
    SetWeight,
    Started,
    WebhookAnswered,
    advance,
)
from serving.rollout.policy import MetricCheck, RolloutPolicy, analyse, evaluate
from shipyard.errors import ConfigError

ERRORS = MetricCheck("error-rate", "q", "threshold", max=0.01)
P99 = MetricCheck("latency-p99", "q", "threshold", max=0.5)
# One interval's verdicts, made by the real policy functions (min_requests 10).
ANALYSES = {
    "P": analyse(RolloutPolicy(), 100, [evaluate(ERRORS, 0.0), evaluate(P99, 0.1)]),
    "F": analyse(RolloutPolicy(), 100, [evaluate(ERRORS, 0.2), evaluate(P99, 0.1)]),
    "S": analyse(RolloutPolicy(), 100, [evaluate(ERRORS, 0.2), evaluate(P99, 0.9)]),
    "I": analyse(RolloutPolicy(), 3, [evaluate(ERRORS, 0.0)]),
}
HOOKS = {"pre_rollout": "http://127.0.0.1:9/pre", "confirm_promotion": "http://127.0.0.1:9/confirm"}


def step(policy: RolloutPolicy, state: RolloutState, token: Any) -> tuple[RolloutState, list]:
    """One event; a letter of :data:`ANALYSES` stands for ``Analysed`` of that verdict."""
    event = Analysed(ANALYSES[token]) if isinstance(token, str) else token
    return advance(policy, state, event)


def progressing(policy: RolloutPolicy) -> RolloutState:
    """Started and ready: Progressing at the plan's first weight."""
    state, actions = advance(policy, RolloutState(), Started())
    assert actions == [CheckReady()]
    state, actions = advance(policy, state, CanaryReady(True))
    assert actions == [SetWeight(policy.plan()[0]), Analyse()]
    assert (state.phase, state.step, state.weight) == (Phase.PROGRESSING, 0, policy.plan()[0])
    return state


def run(policy: RolloutPolicy, tokens: str) -> tuple[RolloutState, list[int], list, list[int]]:
    """Feeds the analyses; returns the last state, the weight after each, the last actions and every SetWeight."""
    state = progressing(policy)
    weights, set_weights, actions = [], [policy.plan()[0]], []
    for token in tokens:
        assert not state.phase.terminal, f"analysis {token!r} after the rollout ended"
        state, actions = step(policy, state, token)
        weights.append(state.weight)
        set_weights += [a.weight for a in actions if isinstance(a, SetWeight)]
    return state, weights, actions, set_weights


ROLLED_BACK_2 = Rollback("2 failed intervals (failure_threshold 2): error-rate 0.2 > 0.01")


@pytest.mark.parametrize(
    ("policy", "tokens", "weights", "phase", "actions"),
    [
        pytest.param({}, "PPPPP", [10, 25, 50, 100, 100], Phase.PROMOTING, [Promote()], id="good canary"),
        pytest.param({}, "PPP", [10, 25, 50], Phase.PROGRESSING, [SetWeight(50), Analyse()], id="mid-way"),
        pytest.param(
            {}, "PFPPPP", [10, 10, 25, 50, 100, 100], Phase.PROMOTING, [Promote()], id="one failure tolerated"
        ),
        pytest.param({}, "FF", [5, 0], Phase.ROLLED_BACK, [ROLLED_BACK_2], id="rollback at the threshold"),
        pytest.param({}, "PPFF", [10, 25, 25, 0], Phase.ROLLED_BACK, [ROLLED_BACK_2], id="rollback at a later step"),
        pytest.param(
            {},
            "FS",
            [5, 0],
            Phase.ROLLED_BACK,
            [Rollback("2 failed intervals (failure_threshold 2): error-rate 0.2 > 0.01, latency-p99 0.9 > 0.5")],
            id="reason names every failed check",
        ),
        pytest.param(
            {"failure_threshold": 1},
            "PF",
            [10, 0],
            Phase.ROLLED_BACK,
            [Rollback("1 failed interval (failure_threshold 1): error-rate 0.2 > 0.01")],
            id="threshold 1",
        ),
        pytest.param(
            {"failure_threshold": 3},
            "FPFPF",
            [5, 10, 10, 25, 0],
            Phase.ROLLED_BACK,
            [Rollback("3 failed intervals (failure_threshold 3): error-rate 0.2 > 0.01")],
            id="failures count over the whole rollout",
        ),
        pytest.param(
            {"consecutive_successes": 2},
            "PFPP",
            [5, 5, 5, 10],
            Phase.PROGRESSING,
            [SetWeight(10), Analyse()],
            id="a failure resets the streak",
        ),
        pytest.param(
            {"consecutive_successes": 2},
            "PPPPPPPPPP",
            [5, 10, 10, 25, 25, 50, 50, 100, 100, 100],
            Phase.PROMOTING,
            [Promote()],
            id="two in a row at every step",
        ),
        pytest.param(
            {"iterations": 2},
            "PPFPP",
            [5, 10, 10, 10, 25],
            Phase.PROGRESSING,
            [SetWeight(25), Analyse()],
            id="iterations 2",
        ),
        pytest.param(
            {"iterations": 2, "consecutive_successes": 2},
            "PFPPP",
            [5, 5, 5, 10, 10],
            Phase.PROGRESSING,
            [Analyse()],
            id="iterations and streak",
        ),
        pytest.param({}, "IIIP", [5, 5, 5, 10], Phase.PROGRESSING, [SetWeight(10), Analyse()], id="inconclusive waits"),
        pytest.param(
            {}, "PIIFF", [10, 10, 10, 10, 0], Phase.ROLLED_BACK, [ROLLED_BACK_2], id="inconclusive is no pass"
        ),
        pytest.param(
            {"max_inconclusive": 3},
            "IIPIII",
            [5, 5, 10, 10, 10, 0],
            Phase.FAILED,
            [
                Rollback(
                    "3 inconclusive intervals in a row (max_inconclusive 3): "
                    "3 canary requests, fewer than min_requests 10"
                )
            ],
            id="max_inconclusive fails",
        ),
        pytest.param(
            {"max_inconclusive": 3, "failure_threshold": 5},
            "IIFIIPII",
            [5, 5, 5, 5, 5, 10, 10, 10],
            Phase.PROGRESSING,
            [Analyse()],
            id="a conclusive interval ends the inconclusive run",
        ),
        pytest.param(
            {"max_inconclusive": 0},
            "I" * 50 + "P",
            [5] * 50 + [10],
            Phase.PROGRESSING,
            [SetWeight(10), Analyse()],
            id="no limit",
        ),
        pytest.param(
            {"step_weight": 10, "max_weight": 50},
            "PPPPP",
            [20, 30, 40, 50, 100],
            Phase.PROMOTING,
            [Promote()],
            id="step_weight up to max_weight 50",
        ),
        pytest.param(
            {"step_weights": [1, 2, 10, 80]}, "PPPP", [2, 10, 80, 100], Phase.PROMOTING, [Promote()], id="last step 80"
        ),
        pytest.param({"step_weights": [100]}, "P", [100], Phase.PROMOTING, [Promote()], id="one step"),
    ],
)
def test_runs(policy, tokens, weights, phase, actions):
    policy = RolloutPolicy.from_dict(policy)
    state, seen, last, _ = run(policy, tokens)
    assert seen == weights
    assert state.phase is phase
    assert last == actions
    assert state.intervals == len(tokens)
    if phase is Phase.PROMOTING:
        state, actions = advance(policy, state, Promoted())
        assert (state.phase, state.weight, actions) == (Phase.SUCCEEDED, 100, [])


@pytest.mark.parametrize(
    ("policy", "set_weights"),
    [({}, [5, 10, 25, 50, 100]), ({"step_weight": 10, "max_weight": 50}, [10, 20, 30, 40, 50])],
)
def test_the_weights_set_follow_the_plan_then_promote(policy, set_weights):
    policy = RolloutPolicy.from_dict(policy)
    state, _, last, seen = run(policy, "P" * len(set_weights))
    assert seen == set_weights == policy.plan()
    assert last == [Promote()]
    assert (state.phase, state.weight, state.step) == (Phase.PROMOTING, 100, len(set_weights) - 1)


def test_counters():
    policy = RolloutPolicy(iterations=3, failure_threshold=5)
    state, _, _, _ = run(policy, "PFIP")
    assert (state.failures, state.streak, state.passes_at_step, state.inconclusive, state.intervals) == (1, 1, 2, 0, 4)
    state, _ = step(policy, state, "I")
    assert (state.inconclusive, state.reason) == (1, "3 canary requests, fewer than min_requests 10")
    state, _ = step(policy, state, "P")  # the third pass at the first step
    assert (state.step, state.weight, state.streak, state.passes_at_step, state.inconclusive) == (1, 10, 0, 0, 0)


def test_pre_rollout_refused():
    policy = RolloutPolicy(webhooks={"pre_rollout": HOOKS["pre_rollout"]})
    state, actions = advance(policy, RolloutState(), Started())
    assert (state.phase, state.awaiting, actions) == (Phase.INITIALIZING, "pre_rollout", [CallWebhook("pre_rollout")])
    with pytest.raises(ValueError, match="not expected in phase Initializing awaiting pre_rollout"):
        advance(policy, state, CanaryReady(True))
    refused, actions = advance(policy, state, WebhookAnswered("pre_rollout", False, "HTTP 403"))
    assert actions == [Rollback("pre_rollout webhook refused the rollout: HTTP 403")]
    assert (refused.phase, refused.weight, refused.awaiting) == (Phase.FAILED, 0, "")
    accepted, actions = advance(policy, state, WebhookAnswered("pre_rollout", True, "HTTP 200"))
    assert (accepted.phase, accepted.awaiting, actions) == (Phase.INITIALIZING, "", [CheckReady()])


def test_confirm_promotion_refused_then_accepted():
    policy = RolloutPolicy(step_weights=(50, 100), webhooks=HOOKS)
    state, actions = advance(policy, RolloutState(), Started())
    state, actions = advance(policy, state, WebhookAnswered("pre_rollout", True))
    state, actions = advance(policy, state, CanaryReady(True))
    state, actions = step(policy, state, "P")
    assert actions == [SetWeight(100), Analyse()]
    state, actions = step(policy, state, "P")
    assert (state.phase, state.weight, state.awaiting) == (Phase.PROGRESSING, 100, "confirm_promotion")
    assert actions == [CallWebhook("confirm_promotion")]
    with pytest.raises(ValueError, match="awaiting confirm_promotion"):
        step(policy, state, "P")
    state, actions = advance(policy, state, WebhookAnswered("confirm_promotion", False, "HTTP 409"))
    assert actions == [Analyse()]
    assert (state.phase, state.awaiting, state.passes_at_step, state.streak) == (Phase.PROGRESSING, "", 0, 0)
    assert state.reason == "confirm_promotion webhook refused: HTTP 409; analysing on"
    state, actions = step(policy, state, "I")
    assert actions == [Analyse()]
    state, actions = step(policy, state, "P")  # the step is complete again: ask again
    assert actions == [CallWebhook("confirm_promotion")]
    state, actions = advance(policy, state, WebhookAnswered("confirm_promotion", True, "HTTP 200"))
    assert (state.phase, state.weight, actions) == (Phase.PROMOTING, 100, [Promote()])
    state, actions = advance(policy, state, Promoted())
    assert (state.phase, actions) == (Phase.SUCCEEDED, [])


def test_confirm_promotion_waits_for_the_step_after_a_refusal():
    policy = RolloutPolicy(step_weights=(100,), consecutive_successes=2, webhooks={"confirm_promotion": "https://x/ok"})
    state, _, actions, _ = run(policy, "PP")
    assert actions == [CallWebhook("confirm_promotion")]
    state, actions = advance(policy, state, WebhookAnswered("confirm_promotion", False))
    state, actions = step(policy, state, "P")
    assert actions == [Analyse()]  # one pass is not a complete step
    state, actions = step(policy, state, "P")
    assert actions == [CallWebhook("confirm_promotion")]


def _states(policy: RolloutPolicy) -> dict[str, RolloutState]:
    initial = RolloutState()
    awaiting, _ = advance(policy, initial, Started())
    ready, _ = advance(RolloutPolicy(), initial, Started())
    return {
        "initial": initial,
        "awaiting pre_rollout": awaiting,
        "before ready": ready,
        "progressing": run(RolloutPolicy(), "PPF")[0],
    }


@pytest.mark.parametrize("where", ["initial", "awaiting pre_rollout", "before ready", "progressing"])
def test_operator_promote_and_abort(where):
    policy = RolloutPolicy(webhooks=HOOKS)
    state = _states(policy)[where]
    promoted, actions = advance(policy, state, OperatorCommand("promote"))
    assert actions == [Promote()]
    assert (promoted.phase, promoted.weight, promoted.awaiting, promoted.reason) == (
        Phase.PROMOTING,
        100,
        "",
        "promoted by the operator",
    )
    assert advance(policy, promoted, OperatorCommand("abort")) == (promoted, [])  # a promotion under way stands
    assert advance(policy, promoted, OperatorCommand("promote")) == (promoted, [])
    aborted, actions = advance(policy, state, OperatorCommand("abort"))
    assert actions == [Rollback("aborted by the operator")]
    assert (aborted.phase, aborted.weight, aborted.reason) == (Phase.ROLLED_BACK, 0, "aborted by the operator")


def test_operator_promote_while_awaiting_confirmation():
    policy = RolloutPolicy(step_weights=(100,), webhooks={"confirm_promotion": "https://x/ok"})
    state, _, actions, _ = run(policy, "P")
    assert state.awaiting == "confirm_promotion"
    state, actions = advance(policy, state, OperatorCommand("promote"))
    assert (state.phase, state.awaiting, actions) == (Phase.PROMOTING, "", [Promote()])


@pytest.mark.parametrize("state", [RolloutState(), RolloutState(phase=Phase.SUCCEEDED)])
def test_unknown_operator_command(state):
    with pytest.raises(ConfigError, match="unknown operator command 'pause'; expected one of promote, abort"):
        advance(RolloutPolicy(), state, OperatorCommand("pause"))


@pytest.mark.parametrize("where", ["initial", "awaiting pre_rollout", "before ready", "progressing", "promoting"])
def test_backend_failed(where):
    policy = RolloutPolicy(webhooks=HOOKS)
    states = _states(policy)
    states["promoting"] = advance(policy, states["progressing"], OperatorCommand("promote"))[0]
    state, actions = advance(policy, states[where], BackendFailed("haproxy exited (status 1)"))
    assert actions == [Rollback("backend failed: haproxy exited (status 1)")]
    assert (state.phase, state.weight, state.awaiting) == (Phase.FAILED, 0, "")


@pytest.mark.parametrize(
    ("detail", "reason"),
    [("not ready after 300 s", "canary not ready: not ready after 300 s"), ("", "canary not ready")],
)
def test_canary_never_ready(detail, reason):
    state, _ = advance(RolloutPolicy(), RolloutState(), Started())
    state, actions = advance(RolloutPolicy(), state, CanaryReady(False, detail))
    assert (state.phase, state.weight, actions) == (Phase.FAILED, 0, [Rollback(reason)])


def test_rollback_webhook():
    policy = RolloutPolicy(webhooks={"rollback": "http://127.0.0.1:9/rollback"})
    state = run(policy, "P")[0]
    assert advance(policy, state, WebhookAnswered("rollback", False, "HTTP 404")) == (state, [])
    state, actions = advance(policy, state, WebhookAnswered("rollback", True, "HTTP 200"))
    assert (state.phase, state.weight) == (Phase.ROLLED_BACK, 0)
    assert actions == [Rollback("rolled back by the rollback webhook: HTTP 200")]


EVENTS = [
    Started(),
    WebhookAnswered("pre_rollout", True),
    WebhookAnswered("confirm_promotion", True),
    WebhookAnswered("rollback", True),
    CanaryReady(True),
    CanaryReady(False),
    Analysed(ANALYSES["P"]),
    Analysed(ANALYSES["F"]),
    Analysed(ANALYSES["I"]),
    OperatorCommand("promote"),
    OperatorCommand("abort"),
    Promoted(),
    BackendFailed("x"),
]


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED])
@pytest.mark.parametrize("event", EVENTS, ids=repr)
def test_terminal_phases_are_inert(phase, event):
    state = RolloutState(phase=phase, step=2, weight=0 if phase is not Phase.SUCCEEDED else 100, reason="done")
    assert phase.terminal
    assert advance(RolloutPolicy(webhooks=HOOKS), state, event) == (state, [])


@pytest.mark.parametrize(
    ("state", "event", "message"),
    [
        (RolloutState(), Analysed(ANALYSES["P"]), "not expected in phase Initializing"),
        (RolloutState(), Promoted(), "not expected in phase Initializing"),
        (RolloutState(), WebhookAnswered("pre_rollout", True), "not expected in phase Initializing"),
        (RolloutState(phase=Phase.PROGRESSING, step=0, weight=5), Promoted(), "not expected in phase Progressing"),
        (
            RolloutState(phase=Phase.PROGRESSING, step=0, weight=5),
            CanaryReady(True),
            "not expected in phase Progressing",
        ),
        (RolloutState(phase=Phase.PROGRESSING, step=0, weight=5), Started(), "not expected in phase Progressing"),
        (RolloutState(phase=Phase.PROMOTING, weight=100), Analysed(ANALYSES["P"]), "not expected in phase Promoting"),
    ],
)
def test_unexpected_events_are_driver_bugs(state, event, message):
    with pytest.raises(ValueError, match=message):
        advance(RolloutPolicy(), state, event)


def test_state_round_trip_through_json():
    policy = RolloutPolicy(webhooks=HOOKS)
    state = run(RolloutPolicy(), "PFI")[0]
    awaiting = advance(policy, RolloutState(), Started())[0]
    for s in (RolloutState(), state, awaiting, RolloutState(phase=Phase.ROLLED_BACK, reason="aborted by the operator")):
        values = json.loads(json.dumps(s.to_dict()))
        assert RolloutState.from_dict(values) == s
    values = state.to_dict()
    assert values["phase"] == "Progressing" and values["failures"] == 1
    # Numbers as floats (through protobuf Struct) read back as ints.
    assert RolloutState.from_dict({**values, "weight": 10.0}).weight == 10
    assert RolloutState.from_dict({"phase": "Failed"}) == RolloutState(phase=Phase.FAILED)


def test_phase_values():
    assert [p.value for p in Phase] == ["Initializing", "Progressing", "Promoting", "Succeeded", "RolledBack", "Failed"]
    assert [p.terminal for p in Phase] == [False, False, False, True, True, True]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"phase": "Paused"}, "phase 'Paused' is not one of Initializing, Progressing"),
        ({"weight": "5"}, "'weight' must be int"),
        ({"weight": 5.5}, "'weight' must be int"),
        ({"failures": True}, "'failures' must be int"),
        ({"reason": 3}, "'reason' must be str"),
        ({"phases": "Failed"}, r"unknown key\(s\) 'phases'"),
        ([], "expected a mapping"),
    ],
)
def test_state_from_dict_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        RolloutState.from_dict(values)
