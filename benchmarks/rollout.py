"""How fast a bad canary is rolled back, and how much of the traffic it answered first, for a few policies.

Each row is one real local rollout (serving.rollout.local: two ``shipyard serve`` processes behind
HAProxy, Prometheus scraping them every second) of the breast-cancer baseline against itself, the
canary started with a fault (``--fault-error-rate`` or ``--fault-delay-ms``), under a bounded load of
40 requests/s sent through HAProxy by a separate process (serving.rollout.load). Printed per row:

- the outcome and the check that failed;
- seconds from the first failed analysis to the rollback decision (weight 0), from the report;
- seconds from the canary's first bad answer to its last answer, from the load's per-second counts;
- the share of all requests the canary answered before the rollback, and how many were bad;
- the stable model's failed answers and connection errors (must be 0).

Run: ``PYTHONPATH=. .venv/bin/python -m benchmarks.rollout`` (about 4 minutes on 2 cores).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from serving.rollout.load import LoadGenerator
from serving.rollout.local import LocalBackend
from serving.rollout.policy import RolloutPolicy
from serving.rollout.run import run_rollout

BASE = {"min_requests": 5, "step_weights": [10, 25, 50, 100], "max_inconclusive": 6}
TOLERANT = {"p99_max_s": 2.0, "p99_max_ratio": 20.0}
CASES = [
    ("errors 30%", ["--fault-error-rate", "0.3"], {"interval_s": 3, "failure_threshold": 1, **TOLERANT}),
    ("errors 30%", ["--fault-error-rate", "0.3"], {"interval_s": 3, "failure_threshold": 2, **TOLERANT}),
    ("errors 30%", ["--fault-error-rate", "0.3"], {"interval_s": 6, "failure_threshold": 2, **TOLERANT}),
    ("errors 5%", ["--fault-error-rate", "0.05"], {"interval_s": 3, "failure_threshold": 2, **TOLERANT}),
    ("700 ms late", ["--fault-delay-ms", "700"], {"interval_s": 3, "failure_threshold": 1, "p99_max_s": 0.5}),
    ("700 ms late", ["--fault-delay-ms", "700"], {"interval_s": 3, "failure_threshold": 2, "p99_max_s": 0.5}),
]
RATE = 40.0


def one(model: Path, body: dict[str, Any], fault: list[str], policy: dict[str, Any], work: Path) -> dict[str, Any]:
    backend = LocalBackend(model, model, "bc", work / "rollout", canary_args=fault)
    try:
        backend.start()
        backend.wait_scraped()
        load = LoadGenerator(backend.predict_url, body, work, rate=RATE, duration_s=180, max_requests=7200, threads=8)
        with load:
            report = run_rollout(RolloutPolicy.from_dict({**BASE, **policy}), backend, "bc", "classification")
            counts = load.stop() or {}
    finally:
        backend.close()
    canary = counts.get("by_server", {}).get("canary", {})
    stable = counts.get("by_server", {}).get("stable", {})
    seconds = counts.get("per_second", [])
    bad = [r["second"] for r in seconds if r.get("canary", {}).get("5xx")]
    answered = [r["second"] for r in seconds if r.get("canary")]
    figures = report.rollback_figures() or {}
    delayed_first = next((r["second"] for r in seconds if r.get("canary")), None)
    first_bad = bad[0] if bad else delayed_first
    return {
        "phase": report.phase,
        "reason": report.reason.split(": ", 1)[-1][:60],
        "decision_s": figures.get("seconds_to_weight_zero"),
        "bad_to_last_canary_s": (answered[-1] - first_bad) if answered and first_bad is not None else None,
        "canary_share": sum(canary.values()) / max(counts.get("answered", 0), 1),
        "canary_5xx": canary.get("5xx", 0),
        "stable_failed": sum(n for cls, n in stable.items() if cls != "2xx") + counts.get("connection_errors", 0),
        "requests": counts.get("requests", 0),
    }


def _s(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.1f}"


def main() -> int:
    from components.reference import build_reference
    from shipyard.artifacts import read_dataset

    with tempfile.TemporaryDirectory(prefix="shipyard-bench-rollout-") as tmp:
        ref = build_reference(Path(tmp) / "ref")
        df, _ = read_dataset(ref["test"])
        body = {"instances": df.drop(columns=["target"]).head(4).to_numpy().tolist()}
        rows = []
        for i, (fault_name, fault, policy) in enumerate(CASES):
            r = one(ref["baseline"], body, fault, policy, Path(tmp) / f"case{i}")
            rows.append({"fault": fault_name, "interval_s": policy["interval_s"], **policy, **r})
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(
        "| canary fault | interval | failure threshold | outcome | failed analysis → weight 0 (s) "
        "| canary's first bad answer → its last answer (s) | canary's share of requests | its 5xx | stable failures |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['fault']} | {r['interval_s']} s | {r['failure_threshold']} | {r['phase']} ({r['reason']}) "
            f"| {_s(r['decision_s'])} | {r['bad_to_last_canary_s']} | {r['canary_share']:.1%} | {r['canary_5xx']} "
            f"| {r['stable_failed']} of {r['requests']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
