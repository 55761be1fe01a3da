"""The RolloutReport: every event, decision, weight and metric value of one rollout, as JSON and HTML.

The driver (:mod:`serving.rollout.run`) records each transition of the controller; the report
derives the figures people ask about afterwards: the final phase and its reason, how long the
rollout took, and for a rollback the time from the first failed interval to weight 0.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
from pathlib import Path
from typing import Any

REPORT_JSON = "rollout.json"
REPORT_HTML = "rollout.html"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).isoformat(timespec="seconds")


def _plain(obj: Any) -> Any:
    """A dataclass event/action/analysis as plain JSON values (enums as their value)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    value = getattr(obj, "value", obj)  # enum members
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return str(value)
    return value


def _event_text(event: Any) -> str:
    name = type(event).__name__
    if name == "Analysed":
        a = event.analysis
        return f"analysis: {a.outcome}" + (f" ({a.reason})" if getattr(a, "reason", "") else "")
    if name == "WebhookAnswered":
        return f"webhook {event.hook}: {'accepted' if event.ok else 'refused'} ({event.detail})"
    if name == "CanaryReady":
        return f"canary {'ready' if event.ready else 'not ready'}" + (f" ({event.detail})" if event.detail else "")
    if name == "OperatorCommand":
        return f"operator: {event.command}"
    if name == "BackendFailed":
        return f"backend failed: {event.detail}"
    return {"Started": "started", "Promoted": "promoted"}.get(name, name)


def _action_text(action: Any) -> str:
    name = type(action).__name__
    if name == "SetWeight":
        return f"weight → {action.weight}%"
    if name == "CallWebhook":
        return f"ask webhook {action.hook}"
    if name == "Rollback":
        return f"roll back: {action.reason}"
    return {"CheckReady": "wait for the canary", "Analyse": "analyse one interval", "Promote": "promote"}.get(
        name, name
    )


@dataclasses.dataclass
class RolloutReport:
    """What happened in one rollout; :meth:`to_dict` is ``rollout.json``, :meth:`html` ``rollout.html``."""

    model: str
    backend: str
    policy: dict[str, Any]
    checks: list[dict[str, Any]]
    plan: list[int]
    started_at: str
    timeline: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    phase: str = "Initializing"
    reason: str = ""
    weight: int = 0
    finished_at: str = ""
    duration_s: float = 0.0
    version: str = ""

    @classmethod
    def begin(cls, model: str, backend: str, policy: Any, checks: Any) -> RolloutReport:
        """A report for a rollout that starts now."""
        return cls(
            model=model,
            backend=backend,
            policy=_plain(policy.to_dict()),  # an infinite bound as "inf": the JSON stays strict
            checks=[_plain(c) for c in checks],
            plan=list(policy.plan()),
            started_at=_now(),
        )

    def record(self, at_s: float, event: Any, state: Any, actions: list[Any]) -> None:
        """One transition: the event, the state it led to, the actions decided."""
        entry: dict[str, Any] = {
            "t_s": round(at_s, 3),
            "event": _event_text(event),
            "phase": _plain(state.phase),
            "weight": state.weight,
            "failures": state.failures,
            "decision": "; ".join(_action_text(a) for a in actions) or "–",
        }
        if type(event).__name__ == "Analysed":
            entry["analysis"] = _plain(event.analysis)
        self.timeline.append(entry)
        self.phase, self.reason, self.weight = entry["phase"], state.reason, state.weight
        for action in actions:
            if type(action).__name__ in ("Rollback",):
                self.weight = 0
            elif type(action).__name__ == "SetWeight":
                self.weight = action.weight

    def note(self, at_s: float, text: str) -> None:
        """A remark that is not a transition (a webhook notification's answer, a failed status write)."""
        self.timeline.append({"t_s": round(at_s, 3), "event": text, "phase": self.phase, "weight": self.weight})

    def finish(self, at_s: float, state: Any) -> None:
        """Closes the report at the terminal state."""
        self.phase, self.reason = _plain(state.phase), state.reason
        self.weight = 100 if self.phase == "Succeeded" else self.weight
        self.finished_at, self.duration_s = _now(), round(at_s, 3)

    def rollback_figures(self) -> dict[str, float] | None:
        """For a rollback after failed analyses: when the first failed interval ended, when the canary
        went to weight 0, and the difference (seconds from the start)."""
        first_fail = next(
            (e["t_s"] for e in self.timeline if e.get("analysis", {}).get("outcome") == "fail"),
            None,
        )
        zero = next((e["t_s"] for e in self.timeline if str(e.get("decision", "")).startswith("roll back")), None)
        if first_fail is None or zero is None:
            return None
        return {
            "first_failed_interval_s": first_fail,
            "weight_zero_s": zero,
            "seconds_to_weight_zero": zero - first_fail,
        }

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["rollback"] = self.rollback_figures()
        return out

    def html(self) -> str:
        """A self-contained page: the outcome, a weight-over-time chart, and the timeline table."""
        from shipyard.report import fmt, html_table

        rows = []
        for e in self.timeline:
            checks = ""
            for r in (e.get("analysis") or {}).get("results", []):
                checks += f"{r['name']} {fmt(r.get('value'))} ({r.get('threshold')}): {r.get('outcome')}; "
            rows.append([e["t_s"], e["event"], e["phase"], e["weight"], checks.rstrip("; ") or "–", e.get("decision")])
        color = {"Succeeded": "#2e7d32", "RolledBack": "#c62828", "Failed": "#c62828"}.get(self.phase, "#555")
        figures = self.rollback_figures()
        extra = (
            f"<p>First failed interval at {figures['first_failed_interval_s']:g} s; weight 0 at "
            f"{figures['weight_zero_s']:g} s ({figures['seconds_to_weight_zero']:g} s later).</p>"
            if figures
            else ""
        )
        policy = html_table(["option", "value"], [[k, fmt(v)] for k, v in self.policy.items() if k != "checks"])
        checks = html_table(
            ["check", "kind", "min", "max", "query"],
            [[c.get("name"), c.get("kind"), c.get("min"), c.get("max"), c.get("query")] for c in self.checks],
        )
        return (
            f"<!doctype html><meta charset='utf-8'><title>Rollout of {html.escape(self.model)}</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left;vertical-align:top}"
            "table{border-collapse:collapse}tr{border-bottom:1px solid #ddd}</style>"
            f"<h1>Rollout of {html.escape(self.model)}"
            + (f" version {html.escape(self.version)}" if self.version else "")
            + f"</h1><p style='color:{color};font-weight:bold'>{html.escape(self.phase)}"
            + (f": {html.escape(self.reason)}" if self.reason else "")
            + f"</p><p>{html.escape(self.backend)}; steps {self.plan}; {self.duration_s:g} s "
            f"from {html.escape(self.started_at)}.</p>{extra}"
            + self.weight_chart()
            + "<h2>Timeline</h2>"
            + html_table(["t (s)", "event", "phase", "canary weight %", "checks", "decision"], rows)
            + "<h2>Checks</h2>"
            + checks
            + "<h2>Policy</h2>"
            + policy
        )

    def weight_chart(self, width: int = 640, height: int = 160) -> str:
        """The canary's weight over time as an inline SVG step line, failed analyses marked red."""
        if not self.timeline:
            return ""
        end = max(self.duration_s, self.timeline[-1]["t_s"], 1e-9)
        pad = 30

        def x(t: float) -> float:
            return pad + (width - 2 * pad) * t / end

        def y(w: float) -> float:
            return height - pad - (height - 2 * pad) * w / 100

        points, last = [], 0
        for e in self.timeline:
            points += [(x(e["t_s"]), y(last)), (x(e["t_s"]), y(e["weight"]))]
            last = e["weight"]
        points.append((x(end), y(last)))
        line = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
        marks = "".join(
            f"<circle cx='{x(e['t_s']):.1f}' cy='{y(e['weight']):.1f}' r='4' fill='"
            + ("#c62828" if e["analysis"].get("outcome") == "fail" else "#888")
            + "'/>"
            for e in self.timeline
            if e.get("analysis")
        )
        return (
            f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"
            f"<text x='{pad}' y='15' font-size='12'>canary weight % over {end:.0f} s</text>"
            f"<line x1='{pad}' y1='{y(0)}' x2='{width - pad}' y2='{y(0)}' stroke='#ccc'/>"
            f"<line x1='{pad}' y1='{y(100)}' x2='{width - pad}' y2='{y(100)}' stroke='#eee'/>"
            f"<text x='2' y='{y(100) + 4}' font-size='10'>100</text><text x='12' y='{y(0) + 4}' font-size='10'>0</text>"
            f"<polyline fill='none' stroke='#1565c0' stroke-width='2' points='{line}'/>{marks}</svg>"
        )

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """Writes ``rollout.json`` and ``rollout.html`` into ``directory`` (atomically, each)."""
        from shipyard.artifacts import write_json, write_text

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / REPORT_JSON, self.to_dict())
        write_text(out / REPORT_HTML, self.html())
        return out / REPORT_JSON, out / REPORT_HTML
