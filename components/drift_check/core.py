"""Per-column drift between a reference and a current dataset, with Evidently's default tests.

The reference is summarized once into a compact **profile** (sorted values of numeric columns —
or fine quantiles beyond ``max_sorted`` rows —, their std, and category counts), stored beside the
validation schema. Checking a new batch then costs about one pass over the new data: a sort of
each numeric column and a hash count of each categorical one.

Test choice follows Evidently's ``DataDriftPreset`` defaults, so decisions match what users know:

| reference rows | column | distinct values (ref ∪ current) | test | drift when |
|---|---|---|---|---|
| ≤ 1000 | numeric | > 5 | Kolmogorov–Smirnov p-value | p < 0.05 |
| ≤ 1000 | numeric or categorical | 3–5 (numeric), > 2 (categorical) | chi² p-value | p < 0.05 |
| ≤ 1000 | any | ≤ 2 | two-proportion z-test p-value | p < 0.05 |
| > 1000 | numeric | > 5 | Wasserstein distance ÷ reference std | ≥ 0.1 |
| > 1000 | numeric ≤ 5 values, or categorical | — | Jensen–Shannon distance | ≥ 0.1 |

The dataset drifts when at least ``drift_share`` (0.5) of the checked columns drift. Every
column also gets the other scores (KS p, normalized Wasserstein, PSI, Jensen–Shannon) for the
report, and method and threshold can be set per column.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from components.drift_check.profile import (  # noqa: F401 - re-exported: the package's one API
    PROFILE_JSON,
    ColumnProfile,
    Profile,
    _counts,
    _dtype_group,
    _finite,
    _is_numeric,
    build_profile,
    load_profile,
    profile_column,
    quantiles,
    save_profile,
    text_counts,
)
from components.drift_check.stats import (  # noqa: F401 - re-exported
    _fill_zeroes,
    _percents,
    chisquare_pvalue,
    ecdf_distances,
    jensenshannon,
    ks_pvalue,
    psi,
    z_pvalue,
)
from shipyard import attempts
from shipyard.config import Config, require
from shipyard.errors import ArtifactError, ConfigError, DataValidationError
from shipyard.report import html_page

METHODS = ("ks", "wasserstein", "jensenshannon", "chisquare", "z", "psi")
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
DEFAULT_THRESHOLD = {"ks": 0.05, "chisquare": 0.05, "z": 0.05, "wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1}
SMALL_REFERENCE = 1000  # Evidently: at most this many reference rows → statistical tests
FEW_VALUES = 5  # Evidently: numeric columns with at most this many distinct values are counted
HTML_REPORTS = ("shipyard", "evidently")
INT_CATEGORICAL = 10  # Evidently treats integer columns with at most this many current values as categorical


@dataclasses.dataclass(frozen=True)
class DriftConfig(Config):
    """Drift policy.

    Attributes:
        drift_share: The dataset drifts when at least this share of the checked columns drift.
        columns: Columns to check; empty checks every feature and label column of the reference.
        per_column: ``{column: {"method": one of METHODS, "threshold": x}}`` overrides.
        numeric_method: Method for every numeric column (``auto`` = Evidently's choice).
        categorical_method: Method for every categorical column (``auto`` = Evidently's choice).
        max_sorted: When the reference is a Dataset, numeric columns longer than this are kept as
            that many mid-point quantiles (normalized W1 within ~5e-4 of the exact value in our
            tests; no KS p-value from quantiles). validate_data's profiles use the default.
        html_report: What the HTML report holds: ``shipyard`` (our page) or ``evidently``
            (Evidently's own DataDriftPreset page, same policy; needs the ``evidently`` extra and
            a reference Dataset, since a profile keeps no rows). The decisions are ours either way.
    """

    section = "drift"
    drift_share: float = 0.5
    columns: tuple = ()
    per_column: dict = dataclasses.field(default_factory=dict)
    numeric_method: str = "auto"
    categorical_method: str = "auto"
    max_sorted: int = 50_000
    html_report: str = "shipyard"

    def validate(self) -> None:
        require(0 < self.drift_share <= 1, self.section, "drift_share must be in (0, 1]")
        for name in ("numeric_method", "categorical_method"):
            value = getattr(self, name)
            require(value == "auto" or value in METHODS, self.section, f"{name} must be auto or one of {METHODS}")
        for column, spec in self.per_column.items():
            require(
                isinstance(spec, dict) and not set(spec) - {"method", "threshold"},
                self.section,
                f"per_column.{column}: expected keys method and/or threshold, got {spec!r}",
            )
            method = spec.get("method", "auto")
            require(
                method == "auto" or method in METHODS,
                self.section,
                f"per_column.{column}: method {method!r} is not one of {METHODS}",
            )
            threshold = spec.get("threshold")
            require(
                threshold is None or (isinstance(threshold, (int, float)) and threshold > 0),
                self.section,
                f"per_column.{column}: threshold must be a positive number, got {threshold!r}",
            )
        require(self.max_sorted >= 1000, self.section, "max_sorted must be >= 1000")
        require(self.html_report in HTML_REPORTS, self.section, f"html_report must be one of {HTML_REPORTS}")


# --- checking a column and a dataset ------------------------------------------------------------


@dataclasses.dataclass
class ColumnDrift:
    """One column's decision and scores."""

    column: str
    kind: str
    method: str
    score: float
    threshold: float
    drifted: bool
    scores: dict[str, float]
    reference_rows: int
    current_rows: int


def auto_method(ref: ColumnProfile, n_values: int) -> str:
    """Evidently's default test for a column (see the module docstring)."""
    small = ref.n <= SMALL_REFERENCE
    if ref.kind == "numeric" and n_values > FEW_VALUES:
        return "ks" if small else "wasserstein"
    if small:
        return "chisquare" if n_values > 2 else "z"
    return "jensenshannon"


def check_column(ref: ColumnProfile, current: Any, method: str = "auto", threshold: float | None = None) -> ColumnDrift:
    """Compares one current column with its reference profile (nulls and ±Inf dropped, as Evidently does).

    Raises:
        DataValidationError: The current column has no values left, or changed type.
    """
    group = _dtype_group(current)
    if ref.dtype and {ref.dtype, group} - {"int", "float"} and ref.dtype != group:
        raise DataValidationError(
            f"column {ref.name!r}: reference is {ref.dtype}, current is {group} ({current.dtype})"
        )
    data = _finite(current)
    if len(data) == 0 or ref.n == 0:
        raise DataValidationError(
            f"column {ref.name!r}: no finite non-null values to compare ({ref.n} in the reference, {len(data)} now)"
        )
    scores: dict[str, float] = {}
    kind = ref.kind
    if ref.kind == "numeric":
        if not _is_numeric(data):
            raise DataValidationError(f"column {ref.name!r}: reference is numeric, current is {data.dtype}")
        cur = np.sort(data.to_numpy(dtype=np.float64))
        cur_counts = _counts(data) if ref.counts is not None else None
        n_values = len(set(ref.counts or {}) | set(cur_counts)) if cur_counts is not None else FEW_VALUES + 1
        assert ref.values is not None
        w1, d = ecdf_distances(ref.values, cur)
        scores["wasserstein"] = w1 / max(ref.std, 0.001)
        if ref.exact:
            scores["ks"] = ks_pvalue(ref.values, cur, d)
        binned: Any = cur_counts if cur_counts is not None else cur
        # Evidently types an integer column with at most 10 distinct current values as categorical.
        if group == "int" and cur_counts is not None and len(cur_counts) <= INT_CATEGORICAL:
            kind = "categorical"
    else:
        cur_counts = text_counts(data)
        n_values = len(set(ref.counts or {}) | set(cur_counts))
        binned = cur_counts
    r, c = _percents(ref, binned)
    scores["jensenshannon"] = jensenshannon(r, c)
    scores["psi"] = psi(_fill_zeroes(r), _fill_zeroes(c))
    if cur_counts is not None:
        scores["chisquare"] = chisquare_pvalue(ref, cur_counts)
        if n_values <= 2:
            scores["z"] = z_pvalue(ref, cur_counts)
    chosen = auto_method(dataclasses.replace(ref, kind=kind), n_values) if method == "auto" else method
    if chosen not in scores:
        raise DataValidationError(f"column {ref.name!r}: method {chosen!r} does not apply to this {ref.kind} column")
    limit = DEFAULT_THRESHOLD[chosen] if threshold is None else float(threshold)
    score = scores[chosen]
    drifted = score < limit if chosen in P_VALUE_METHODS else score >= limit
    return ColumnDrift(ref.name, kind, chosen, score, limit, bool(drifted), scores, ref.n, int(len(data)))


def check(profile: Profile, current: Any, config: DriftConfig) -> dict[str, Any]:
    """Checks every profiled column of ``current``; returns the per-column results and the verdict.

    Raises:
        DataValidationError: A profiled column is missing from ``current`` or not comparable.
    """
    columns = list(config.columns) or list(profile.columns)
    unknown = [c for c in columns if c not in profile.columns]
    if unknown:
        raise DataValidationError(f"drift: column(s) {unknown} are not in the reference profile")
    missing = [c for c in columns if c not in current.columns]
    if missing:
        raise DataValidationError(f"drift: current data lacks column(s) {missing}")
    stray = sorted(set(config.per_column) - set(columns))
    if stray:
        raise ConfigError(f"drift: per_column names column(s) {stray} that are not checked; checked: {columns}")
    results, skipped = [], []
    for name in columns:
        ref = profile.columns[name]
        if ref.n == 0 or _finite(current[name]).empty:
            # Nothing to compare on one side (an all-null column): reported, not counted.
            skipped.append({"column": name, "reason": f"no finite values ({ref.n} in the reference)"})
            continue
        spec = config.per_column.get(name, {})
        method = spec.get("method") or (config.numeric_method if ref.kind == "numeric" else config.categorical_method)
        results.append(check_column(ref, current[name], method, spec.get("threshold")))
    drifted = [r.column for r in results if r.drifted]
    share = len(drifted) / len(results) if results else 0.0
    return {
        "skipped_columns": skipped,
        "dataset_drift": bool(results) and share >= config.drift_share,
        "drift_share": share,
        "drifted_columns": drifted,
        "threshold_share": config.drift_share,
        "columns": [dataclasses.asdict(r) for r in results],
        "reference_rows": profile.rows,
        "current_rows": int(len(current)),
    }


# --- the component's entry point ------------------------------------------------------------------

PROFILE_DIR = "profile"  # where validate_data keeps the profile inside its schema artifact
CHECKED_ROLES = ("feature", "label")


def load_reference(path: str | Path, config: DriftConfig) -> Profile:
    """A profile from a profile directory, a schema artifact holding one, or a Dataset artifact.

    Raises:
        ArtifactError: ``path`` is none of those.
    """
    from shipyard.artifacts import DATA_FILE, read_dataset

    root = Path(path)
    for candidate in (root, root / PROFILE_DIR):
        if (candidate / PROFILE_JSON).is_file():
            return load_profile(candidate)
    if (root / DATA_FILE).is_file():
        df, schema = read_dataset(root)
        columns = [c.name for c in schema.columns if c.role in CHECKED_ROLES]
        return build_profile(df, columns, config.max_sorted)
    raise ArtifactError(f"{root}: expected a drift profile, a schema artifact with {PROFILE_DIR}/, or a Dataset")


def render_html(result: dict[str, Any]) -> str:
    """A self-contained HTML report: verdict and one row per column with its score bar."""
    rows = []
    for c in result["columns"]:
        p_value = c["method"] in P_VALUE_METHODS
        # Bar: how far past (or short of) its threshold the score is, on a 0..2× scale.
        ratio = (c["threshold"] / max(c["score"], 1e-12)) if p_value else c["score"] / c["threshold"]
        color = "#c0392b" if c["drifted"] else "#27ae60"
        bar = f"<div style='background:{color};width:{min(100.0, 50.0 * ratio):.0f}%;height:10px'></div>"
        when = f"{'<' if p_value else '≥'} {c['threshold']:g}"
        rows.append((c["column"], c["kind"], c["method"], c["score"], when, bar, "drift" if c["drifted"] else "ok"))
    intro = (
        f"{len(result['drifted_columns'])} of {len(result['columns'])} columns drifted "
        f"(share {result['drift_share']:.2f}; dataset drift at ≥ {result['threshold_share']:.2f}). "
        f"Reference {result['reference_rows']} rows, current {result['current_rows']} rows."
    )
    verdict = "DATASET DRIFT" if result["dataset_drift"] else "no dataset drift"
    headers = ["column", "kind", "test", "score", "drift when", "", ""]
    return html_page(f"Drift: {verdict}", intro, headers, rows, markup_columns=(5,))


def describe(result: dict[str, Any], table: Any) -> str:
    """The human summary: verdict, counts, one row per column (``table`` renders Markdown or text)."""
    rows = [
        (c["column"], c["method"], c["score"], c["threshold"], "DRIFT" if c["drifted"] else "ok")
        for c in result["columns"]
    ]
    skipped = (
        f" Skipped (no values): {[s['column'] for s in result['skipped_columns']]}."
        if result["skipped_columns"]
        else ""
    )
    return (
        f"{'DATASET DRIFT' if result['dataset_drift'] else 'no dataset drift'}: "
        f"{len(result['drifted_columns'])} of {len(result['columns'])} columns drifted "
        f"(share {result['drift_share']:.2f}, dataset drift at ≥ {result['threshold_share']:.2f}).{skipped}\n\n"
        + table(["column", "test", "score", "threshold", "verdict"], rows)
    )


def write_reports(
    result: dict[str, Any], report_json: str | Path, report_md: str | Path, report_html: str | Path
) -> None:
    """Writes a drift result as JSON, Markdown and HTML."""
    from shipyard.artifacts import write_json, write_text
    from shipyard.report import markdown_table

    write_json(report_json, result)
    write_text(report_md, "# Drift\n\n" + describe(result, markdown_table))
    write_text(report_html, render_html(result))


@attempts.step
def drift_check(
    reference: str, current: Any, report_json: str, report_md: str, report_html: str, config: DriftConfig
) -> dict[str, Any]:
    """Checks ``current`` (a DataFrame or Dataset artifact) against ``reference`` and writes the reports.

    Returns:
        The result of :func:`check`, also written as JSON, Markdown and HTML.

    Raises:
        ConfigError: ``html_report: evidently`` without Evidently installed, or with a reference
            that is not a Dataset (checked before anything is written).
    """
    from shipyard.artifacts import DATA_FILE, read_dataset

    evidently = config.html_report == "evidently"
    if evidently:
        from components.drift_check.evidently_report import require_evidently, write_evidently_report

        require_evidently()
        if not (Path(reference) / DATA_FILE).is_file():
            raise ConfigError(
                f"drift: html_report 'evidently' needs the reference rows, so reference must be a Dataset "
                f"artifact (a profile keeps none): {reference}"
            )
    profile = load_reference(reference, config)
    frame = read_dataset(current)[0] if isinstance(current, (str, Path)) else current
    result = check(profile, frame, config)
    write_reports(result, report_json, report_md, report_html)
    columns = [c["column"] for c in result["columns"]]
    if evidently and columns:  # Evidently's page replaces ours; the decisions, JSON and Markdown stay ours
        write_evidently_report(read_dataset(reference)[0], frame, report_html, columns, config)
    # With no column compared (all skipped) Evidently has nothing to draw: our page, which says so, stays.
    return result
