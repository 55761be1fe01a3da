"""The model card: what a registered model is, what it was trained and judged on, and its limits.

Written by the pipeline (Markdown and HTML, the same content) from the artifacts the run already
produced, and attached to the registered version. Sections, after Google's Model Cards and TFX's
model-card toolkit: model details, intended use, data (summary and sha256), validation verdict,
evaluation (verdict, every check, metrics with their uncertainty, slices), the comparison with the
champion, how the candidate was chosen, quantization (the variant and its measured cost),
limitations (stated in the options, plus those read off the artifacts: a small test set, class
imbalance, drifted columns, categories unseen in training, a forced blessing, no champion to
compare with) and lineage (KFP run, MLflow run, registered version, parent version, git commit,
image).

:func:`gather` reads the artifacts into plain facts (every input but the model is optional: a
missing report leaves its section saying so); :func:`render_markdown` and :func:`render_html`
render the same facts.
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path
from typing import Any

from shipyard.artifacts import DATA_FILE, read_dataset, read_json, read_model_manifest, sha256_file
from shipyard.config import Config, require
from shipyard.report import fmt, html_table, markdown_table

#: A card section for both renderers: ``(title, paragraphs, [(headers, rows)])``.
Section = tuple[str, list[str], list[tuple[list[str], list[list[Any]]]]]
#: Validation anomalies that say a column moved away from the reference it was checked against.
DRIFT_ANOMALIES = ("out_of_range", "unseen_category")


@dataclasses.dataclass(frozen=True)
class CardConfig(Config):
    """What the card says that the artifacts cannot.

    Attributes:
        intended_use: Who the model is for and what decisions it supports.
        out_of_scope: Uses it must not be put to.
        limitations: Known limitations, listed before the automatic ones.
        owners: The people or team who answer for the model.
        min_test_rows: Below this many test rows the card warns that the metrics are noisy.
        min_class_share: Below this share of the test rows a class is called rare.
    """

    section = "model_card"
    intended_use: str = ""
    out_of_scope: str = ""
    limitations: tuple = ()
    owners: tuple = ()
    min_test_rows: int = 200
    min_class_share: float = 0.1

    def validate(self) -> None:
        require(
            all(isinstance(x, str) and x.strip() for x in self.limitations),
            self.section,
            "limitations must be a list of non-empty strings",
        )
        require(all(isinstance(x, str) and x.strip() for x in self.owners), self.section, "owners must be strings")
        require(self.min_test_rows >= 0, self.section, "min_test_rows must be >= 0")
        require(0 <= self.min_class_share < 1, self.section, "min_class_share must be in [0, 1)")


def _optional_json(path: str | None, what: str) -> Any:
    return read_json(path, what) if path and Path(path).is_file() else None


def _dataset_facts(dataset_dir: str | None) -> dict[str, Any] | None:
    if not dataset_dir or not (Path(dataset_dir) / DATA_FILE).is_file():
        return None
    df, schema = read_dataset(dataset_dir)
    roles: dict[str, list[str]] = {}
    for c in schema.columns:
        key = f"{c.role} ({c.kind})" if c.role == "feature" and c.kind else c.role
        roles.setdefault(key, []).append(c.name)
    facts: dict[str, Any] = {
        "rows": int(len(df)),
        "sha256": sha256_file(Path(dataset_dir) / DATA_FILE),
        "columns": {k: v for k, v in sorted(roles.items())},
        "nulls": {c: int(n) for c, n in df.isna().sum().items() if n},
    }
    if schema.label and schema.label in df.columns:
        counts = df[schema.label].astype(str).value_counts()
        if len(counts) <= 50:
            facts["label_counts"] = {str(k): int(v) for k, v in counts.items()}
    return facts


def gather(
    model_dir: str,
    name: str = "",
    version: int | None = None,
    evaluation_json: str | None = None,
    dataset_dir: str | None = None,
    test_dir: str | None = None,
    validation_json: str | None = None,
    comparison_json: str | None = None,
    quantize_json: str | None = None,
    lineage: dict[str, Any] | None = None,
    config: CardConfig | None = None,
) -> dict[str, Any]:
    """Reads the artifacts into the card's facts (plain JSON-able values).

    Args:
        model_dir: The Model artifact the card describes (verified).
        name: The registered model name.
        version: The registered version, when known.
        evaluation_json: evaluate_model's ``evaluation.json``.
        dataset_dir: The ingested Dataset (its summary and the data file's sha256).
        test_dir: The test split (its size and class balance).
        validation_json: validate_data's anomaly report.
        comparison_json: train_model's comparison of the families.
        quantize_json: quantize_model's variant table.
        lineage: ``{"registered_version", "parent_version", "kfp_run", "mlflow_run", "data_uri",
            "git_commit", "image"}`` (any subset; empty values are left out).
        config: The card's options.

    Returns:
        The facts, with ``limitations`` (stated, then automatic) computed.

    Raises:
        ArtifactError / IntegrityError: The model artifact is malformed or altered.
    """
    config = config or CardConfig()
    manifest = read_model_manifest(model_dir)
    features = [c.name for c in manifest.input_schema]
    facts: dict[str, Any] = {
        "name": name or manifest.label,
        "version": version,
        "task": manifest.task,
        "format": manifest.format,
        "family": manifest.details.get("family", ""),
        "label": manifest.label,
        "classes": [str(c) for c in manifest.label_names],
        "features": features,
        "intended_use": config.intended_use,
        "out_of_scope": config.out_of_scope,
        "owners": list(config.owners),
        "evaluation": _optional_json(evaluation_json, "evaluation report"),
        "data": _dataset_facts(dataset_dir),
        "test": _dataset_facts(test_dir),
        "validation": _optional_json(validation_json, "validation report"),
        "selection": _optional_json(comparison_json, "family comparison"),
        "quantization": _optional_json(quantize_json, "quantization report"),
        "lineage": {k: v for k, v in (lineage or {}).items() if v not in (None, "")},
    }
    facts["limitations"] = list(config.limitations) + automatic_limitations(facts, config)
    return facts


def automatic_limitations(facts: dict[str, Any], config: CardConfig) -> list[str]:
    """The limitations the artifacts show (module docstring), as sentences."""
    out = []
    evaluation = facts.get("evaluation") or {}
    rows = evaluation.get("rows") or (facts.get("test") or {}).get("rows")
    if rows is not None and rows < config.min_test_rows:
        out.append(
            f"Small test set: {rows} rows (fewer than {config.min_test_rows}); a metric moves by "
            f"about {1 / max(rows, 1):.2%} per row, so small differences between models are noise."
        )
    counts = (facts.get("test") or {}).get("label_counts") or {}
    total = sum(counts.values())
    if facts.get("task") != "regression" and total:
        rare = {k: v for k, v in counts.items() if v / total < config.min_class_share}
        if rare:
            shown = ", ".join(f"{k} ({v / total:.1%})" for k, v in sorted(rare.items()))
            out.append(
                f"Class imbalance: {shown} of the test rows; overall accuracy says little about these classes, "
                "read their per-class metrics."
            )
    anomalies = (facts.get("validation") or {}).get("anomalies") or []
    drifted = sorted({a["column"] for a in anomalies if a.get("type") in DRIFT_ANOMALIES and a.get("column")})
    if drifted:
        out.append(
            f"Drifted columns: {', '.join(drifted)} have values outside the reference schema they were validated "
            "against (out of range or unseen categories)."
        )
    unknown = {k: v for k, v in (evaluation.get("unknown_categories") or {}).items() if v}
    if unknown:
        shown = ", ".join(f"{k} ({v} rows)" for k, v in sorted(unknown.items()))
        out.append(f"Categories unseen in training reached the test split: {shown}; they score as the unknown bucket.")
    forced = evaluation.get("forced")
    if forced:
        out.append(f"Blessed by force, not by its checks: {forced.get('reason', '')}.")
    if evaluation and not evaluation.get("champion"):
        out.append("No champion to compare with: only the value thresholds judged this model.")
    return out


# --- rendering ---------------------------------------------------------------------------------------


def _sections(facts: dict[str, Any]) -> list[Section]:
    """The card's content, for both renderers."""
    out: list[Section] = []
    details = [
        ["name", facts["name"]],
        ["version", facts["version"]],
        ["task", facts["task"]],
        ["family", facts["family"] or None],
        ["format", facts["format"]],
        ["label", facts["label"]],
        ["classes", ", ".join(facts["classes"]) or None],
        ["features", f"{len(facts['features'])}: {', '.join(facts['features'][:30])}"],
        ["owners", ", ".join(facts["owners"]) or None],
    ]
    out.append(("Model details", [], [(["field", "value"], details)]))
    use = [facts["intended_use"] or "Not stated (model_card.intended_use)."]
    if facts["out_of_scope"]:
        use.append(f"Out of scope: {facts['out_of_scope']}")
    out.append(("Intended use", use, []))
    data, tables = facts.get("data"), []
    if data:
        paras = [f"{data['rows']} rows; data file sha256 `{data['sha256']}`."]
        if facts["lineage"].get("data_uri"):
            paras.append(f"Source: {facts['lineage']['data_uri']}")
        tables.append((["role", "columns"], [[k, ", ".join(v)] for k, v in data["columns"].items()]))
        if data["nulls"]:
            tables.append((["column", "null rows"], [[k, v] for k, v in data["nulls"].items()]))
    else:
        paras = ["No dataset artifact was given."]
    out.append(("Data", paras, tables))
    validation = facts.get("validation")
    if validation:
        s = validation.get("summary", {})
        anomalies = validation.get("anomalies") or []
        rows = [[a.get("severity"), a.get("type"), a.get("column"), a.get("message")] for a in anomalies[:20]]
        out.append(
            (
                "Validation",
                [f"{s.get('errors', 0)} error(s), {s.get('warnings', 0)} warning(s) on {s.get('rows')} rows."],
                [(["severity", "anomaly", "column", "detail"], rows)] if rows else [],
            )
        )
    out.append(_evaluation_section(facts.get("evaluation")))
    selection = facts.get("selection")
    if selection and selection.get("table"):
        metric = selection.get("primary_metric", "")
        rows = [
            [
                f,
                r.get("metrics", {}).get(metric),
                r.get("val_loss"),
                r.get("cv_loss"),
                "✔" if f == selection.get("candidate") else "",
            ]
            for f, r in selection["table"].items()
        ]
        out.append(
            (
                "Candidate selection",
                [f"{selection.get('candidate')}: {selection.get('reason', '')}."],
                [(["family", f"validation {metric}", "val loss", "cv loss", "chosen"], rows)],
            )
        )
    quant = facts.get("quantization")
    if quant:
        ratio = fmt(quant.get("size_ratio"))
        rows = [
            [v, r.get("bytes"), r.get("latency_us_1"), _tick(v == quant.get("variant"))]
            for v, r in (quant.get("table") or {}).items()
        ]
        out.append(
            (
                "Quantization",
                [f"Served variant: {quant.get('variant')} ({quant.get('reason', '')}); size ratio {ratio}."],
                [(["variant", "bytes", "one-row latency µs", "chosen"], rows)] if rows else [],
            )
        )
    out.append(("Limitations", facts["limitations"] or ["None recorded."], []))
    lineage = [[k, v] for k, v in facts["lineage"].items()]
    out.append(
        ("Lineage", [] if lineage else ["No lineage recorded."], [(["what", "value"], lineage)] if lineage else [])
    )
    return out


def _interval(entry: Any) -> str | None:
    ci = entry.get("interval") if isinstance(entry, dict) else None
    return " … ".join(fmt(x) for x in ci) if ci else None


def _evaluation_section(evaluation: dict[str, Any] | None) -> Section:
    if not evaluation:
        return ("Evaluation", ["No evaluation report was given."], [])
    primary = evaluation.get("primary_metric")
    verdict = "BLESSED" if evaluation.get("blessed") else "NOT blessed"
    if evaluation.get("forced"):
        verdict += f" (forced: {evaluation['forced'].get('reason', '')})"
    paras = [f"{verdict} on {evaluation.get('rows')} test rows; primary metric {primary}."]
    paras += [f"Warning: {w}" for w in evaluation.get("warnings") or []]
    champion = evaluation.get("champion") or None
    baseline = evaluation.get("baseline_metrics") or {}
    uncertainty = evaluation.get("uncertainty") or {}
    level = f"{uncertainty['confidence']:.0%} " if isinstance(uncertainty.get("confidence"), float) else ""
    main: dict[str, Any] = uncertainty["primary"] if isinstance(uncertainty.get("primary"), dict) else {}
    rows = [
        [
            k,
            v,
            _interval(main) if k == main.get("metric") else None,
            (champion or {}).get("metrics", {}).get(k),
            baseline.get(k),
        ]
        for k, v in (evaluation.get("metrics") or {}).items()
    ]
    tables = [(["metric", "candidate", f"{level}interval", "champion", "baseline"], rows)]
    checks = evaluation.get("checks") or []
    if checks:
        tables.append(
            (
                ["check", "value", "threshold", "passed"],
                [[c.get("check"), c.get("value"), c.get("threshold"), c.get("passed")] for c in checks],
            )
        )
    if champion:
        paras.append(f"Champion: version {champion.get('version')}.")
        delta = uncertainty.get("champion_delta")
        if isinstance(delta, dict) and delta.get("interval"):
            paras.append(
                f"Improvement over the champion in {delta.get('metric')}: {fmt(delta.get('value'))} "
                f"({level}interval {_interval(delta)})."
            )
    else:
        paras.append("Champion: none (no comparison was made).")
    slices = evaluation.get("slices") or {}
    slice_rows = [
        [column, s.get("value"), s.get("rows"), (s.get("metrics") or {}).get(primary)]
        for column, entry in (slices.items() if isinstance(slices, dict) else [])
        for s in (entry.get("slices") or [])
    ]
    if slice_rows:
        tables.append((["slice column", "value", "rows", str(primary)], slice_rows))
    gaps = evaluation.get("fairness_gaps") or []
    if gaps:
        tables.append(
            (
                ["slice column", "metric", "gap", "highest", "lowest"],
                [[g.get("column"), g.get("metric"), g.get("gap"), g.get("highest"), g.get("lowest")] for g in gaps],
            )
        )
    return ("Evaluation", paras, tables)


def _tick(chosen: bool) -> str:
    return "✔" if chosen else ""


def render_markdown(facts: dict[str, Any]) -> str:
    """The card as Markdown."""
    title = f"# Model card: {facts['name']}" + (f" version {facts['version']}" if facts["version"] is not None else "")
    parts = [title, ""]
    for heading, paras, tables in _sections(facts):
        parts += [f"## {heading}", ""]
        if heading == "Limitations":
            parts += [f"- {p}" for p in paras] + [""]
        else:
            parts += [p + "\n" for p in paras]
        parts += [markdown_table(h, r) for h, r in tables]
    return "\n".join(parts).rstrip() + "\n"


def render_html(facts: dict[str, Any]) -> str:
    """The card as one self-contained HTML page (every value escaped)."""

    title = f"Model card: {facts['name']}" + (f" version {facts['version']}" if facts["version"] is not None else "")
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, paras, tables in _sections(facts):
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if heading == "Limitations":
            body.append("<ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in paras) + "</ul>")
        else:
            body += [f"<p>{html.escape(p)}</p>" for p in paras]
        body += [html_table(h, r) for h, r in tables]
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:72em}td,th{padding:2px 8px;text-align:left}"
        "table{border-collapse:collapse;margin:.5em 0}tr{border-bottom:1px solid #ddd}</style>" + "".join(body) + "\n"
    )


def write_card(facts: dict[str, Any], markdown_path: str | None, html_path: str | None) -> None:
    """Writes the renderings asked for (a None path is skipped), each atomically."""
    from shipyard.artifacts import write_text

    if markdown_path:
        write_text(markdown_path, render_markdown(facts))
    if html_path:
        write_text(html_path, render_html(facts))
