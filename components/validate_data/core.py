"""Schema inference, schema enforcement and an anomaly report for a Dataset artifact.

The validation schema (``schema.json`` in the schema artifact) records, per column, its kind
(int/float/bool/string/datetime), role, for a feature how it is used (``feature_kind``: numeric or
categorical, as the Dataset schema says), observed range, null-fraction limit and, for strings,
booleans and categorical features, the category domain. Checking a Dataset against it yields
typed anomalies, each with a severity; error-severity anomalies fail the step with
:class:`DataValidationError`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from components.validate_data.schema import SCHEMA_VERSION, load_schema  # noqa: F401 - load_schema re-exported
from components.validate_data.stats import (
    NUMERIC_KINDS,
    ColumnStats,
    duplicate_rows,
    float_values,
    frame_stats,
    text_counts,
)
from serving.preprocess import resolve_kind
from shipyard import attempts
from shipyard.artifacts import read_dataset, write_json, write_text
from shipyard.config import Config, require
from shipyard.errors import ConfigError, DataValidationError
from shipyard.report import html_page, markdown_table

#: Quantiles an inferred schema records for numeric columns (informational; not enforced).
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
ANOMALY_SEVERITY = {
    "empty_dataset": "error",
    "too_few_rows": "error",
    "missing_column": "error",
    "unexpected_column": "warning",
    "wrong_dtype": "error",
    "out_of_range": "warning",
    "unseen_category": "warning",
    "null_fraction": "error",
    "non_finite": "error",
    "missing_label": "error",
    "constant_label": "error",
    "duplicate_rows": "warning",
    "unusable_feature": "error",
    "kind_mismatch": "error",
    "rare_class": "error",
    "duplicate_id": "error",
}


@dataclasses.dataclass(frozen=True)
class ValidateConfig(Config):
    """Validation policy.

    Attributes:
        min_rows: Fewer rows than this is a ``too_few_rows`` anomaly.
        max_domain_size: String columns with more distinct values get no domain in the schema.
        severity: Overrides of the default severity per anomaly type (``error``/``warning``).
        fail_on_error: Raise DataValidationError when any error-severity anomaly is found.
        profile: Also write the drift reference profile (``profile/``) beside ``schema.json``, so a
            later ``drift_check`` compares new data with this data in about one pass over it
            (only when no error-severity anomaly was found).
        model_ready: Also check what ``train_model`` needs: every feature column something it
            can use, numbers (nulls allowed), strings, booleans or categories, with at least one
            value (``unusable_feature`` otherwise: a datetime, a complex or other dtype, a
            feature declared numeric that holds strings, an all-null feature), and every class
            of a classification label with at least ``min_class_rows`` rows (``rare_class``),
            so such data fails here, once, and not in a retried tuning or training step.
        min_class_rows: Rows each class of a classification label needs (``model_ready``). The
            default 7 is what split_data's default 15 % validation and test fractions need to
            stratify (7 x 0.15 >= 1), so that every class is in train, validation and test;
            with fewer, a class can be missing from the training split and tuning fails on it.
    """

    section = "validation"  # the pipeline parameter, so messages name what to fix
    min_rows: int = 10
    max_domain_size: int = 100
    severity: dict = dataclasses.field(default_factory=dict)
    column_severity: dict = dataclasses.field(default_factory=dict)
    fail_on_error: bool = True
    model_ready: bool = True
    min_class_rows: int = 7
    profile: bool = True

    def validate(self) -> None:
        require(self.min_rows >= 1, self.section, "min_rows must be >= 1")
        require(self.min_class_rows >= 1, self.section, "min_class_rows must be >= 1")
        unknown = sorted(set(self.severity) - set(ANOMALY_SEVERITY))
        require(
            not unknown, self.section, f"severity: unknown anomaly type(s) {unknown}; known: {sorted(ANOMALY_SEVERITY)}"
        )
        bad = {k: v for k, v in self.severity.items() if v not in ("error", "warning")}
        require(not bad, self.section, f"severity: values must be 'error' or 'warning', got {bad}")
        for column, overrides in self.column_severity.items():
            require(
                isinstance(overrides, dict), self.section, f"column_severity.{column}: expected {{anomaly: severity}}"
            )
            unknown = sorted(set(overrides) - set(ANOMALY_SEVERITY))
            require(not unknown, self.section, f"column_severity.{column}: unknown anomaly type(s) {unknown}")
            bad = {k: v for k, v in overrides.items() if v not in ("error", "warning")}
            require(not bad, self.section, f"column_severity.{column}: values must be 'error' or 'warning', got {bad}")


@dataclasses.dataclass(frozen=True)
class Anomaly:
    """One finding: its type, column, severity, how many rows and a few example values."""

    type: str
    column: str | None
    severity: str
    count: int
    fraction: float
    message: str
    examples: tuple = ()


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for messages)."""
    return value.item() if hasattr(value, "item") else value


def default_feature_kind(st: ColumnStats) -> str:
    """How a feature with no declared kind is used: categorical for strings and booleans, numeric
    for numbers, none for what training cannot use (datetimes, other dtypes)."""
    return "categorical" if st.kind in ("string", "bool") else "numeric" if st.kind in NUMERIC_KINDS else ""


def infer_schema(
    df: Any,
    roles: dict[str, str],
    config: ValidateConfig,
    stats: dict[Any, ColumnStats] | None = None,
    kinds: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Infers a validation schema from a DataFrame.

    Args:
        df: The data.
        roles: Column name → role, from the Dataset's ``schema.json``.
        config: Domain-size cap.
        stats: The columns' statistics when already computed (see :func:`frame_stats`).
        kinds: Feature name → ``numeric`` / ``categorical``, from the Dataset's ``schema.json``;
            a feature not in it gets :func:`default_feature_kind`.

    Returns:
        The schema as a JSON-able dict (``version``, ``min_rows``, ``columns``).
    """
    stats = stats if stats is not None else frame_stats(df)
    columns: dict[str, Any] = {}
    for name in df.columns:
        st = stats[name]
        role = roles.get(name, "feature")
        # A label may never be null, whatever the sample shows.
        null_fraction = st.nulls / st.rows if st.rows and role != "label" else 0.0
        spec: dict[str, Any] = {
            "kind": st.kind,
            "role": role,
            "nullable": null_fraction > 0,
            # Rounded up, so the data the schema was inferred from always passes its own limit.
            "max_null_fraction": math.ceil(null_fraction * 1e6) / 1e6,
        }
        feature_kind = ""
        if role == "feature":
            feature_kind = (kinds or {}).get(name) or default_feature_kind(st)
            if feature_kind:
                spec["feature_kind"] = feature_kind
        if role == "id":
            spec["unique"] = bool(not df[name].duplicated().any())
        counts = st.counts
        if feature_kind == "categorical" and counts is None and st.kind in NUMERIC_KINDS:
            counts = text_counts(df[name])  # integer codes declared categorical: a domain, not a range
        elif st.lo is not None and st.hi is not None:
            spec["min"], spec["max"] = st.lo, st.hi
        if counts is not None and len(counts) <= config.max_domain_size:
            spec["domain"] = sorted(counts)
        columns[name] = spec
    return {"version": SCHEMA_VERSION, "min_rows": config.min_rows, "columns": columns}


def find_anomalies(
    df: Any,
    schema: dict[str, Any],
    config: ValidateConfig,
    stats: dict[Any, ColumnStats] | None = None,
    kinds: dict[str, str] | None = None,
) -> list[Anomaly]:
    """Checks ``df`` against ``schema`` and returns every anomaly found.

    Args:
        df: The data.
        schema: The validation schema (inferred, or see :func:`load_schema`).
        config: The validation policy.
        stats: The columns' statistics when already computed (see :func:`frame_stats`).
        kinds: Feature name → kind as the Dataset's ``schema.json`` says (what training will
            use); a schema ``feature_kind`` that differs is a ``kind_mismatch``.
    """
    found: list[Anomaly] = []
    n = len(df)

    def add(kind: str, column: str | None, count: int, message: str, examples: Any = ()) -> None:
        severity = config.column_severity.get(column or "", {}).get(kind) or config.severity.get(
            kind, ANOMALY_SEVERITY[kind]
        )
        found.append(Anomaly(kind, column, severity, int(count), count / n if n else 1.0, message, tuple(examples)[:5]))

    if n == 0:
        add("empty_dataset", None, 0, "the dataset has no rows")
        return found
    if n < schema.get("min_rows", config.min_rows):
        add("too_few_rows", None, n, f"{n} rows; expected at least {schema.get('min_rows', config.min_rows)}")
    expected = schema["columns"]
    for name in expected:
        if name not in df.columns:
            add("missing_column", name, n, f"column {name!r} is missing")
    for name in df.columns:
        if name not in expected:
            add("unexpected_column", name, n, f"column {name!r} is not in the schema")
    stats = stats if stats is not None else frame_stats(df)
    for name, spec in expected.items():
        if name in df.columns:
            _check_column(df[name], name, spec, add, stats[name])
            is_feature = spec.get("role", "feature") == "feature"
            declared, used = spec.get("feature_kind"), (kinds or {}).get(name)
            if is_feature and declared and used and declared != used:
                add(
                    "kind_mismatch",
                    name,
                    n,
                    f"feature {name!r} is {declared} in the validation schema but {used} in the Dataset, and "
                    f"training uses the Dataset's kind; declare it in the ingest options "
                    f'({{"{declared}": ["{name}"]}})',
                )
            if config.model_ready and is_feature:
                _check_model_input(
                    df[name], name, add, stats[name], declared or used or default_feature_kind(stats[name])
                )
            if config.model_ready and spec.get("role") == "label":
                _check_classes(df[name], name, add, stats[name], config.min_class_rows)
    dup = duplicate_rows(df)
    if dup:
        add("duplicate_rows", None, dup, f"{dup} duplicate row(s)")
    return found


def _check_column(s: Any, name: str, spec: dict[str, Any], add: Any, st: ColumnStats) -> None:
    if spec.get("unique"):
        repeated = s[s.duplicated(keep=False) & s.notna()]
        if len(repeated):
            add(
                "duplicate_id",
                name,
                len(repeated),
                f"id column {name!r} repeats values",
                repeated.unique()[:3].tolist(),
            )
    want = spec.get("kind")
    if want and st.kind != want and not (st.kind in NUMERIC_KINDS and want in NUMERIC_KINDS):
        examples = s.dropna().head(3).astype(str).tolist()
        add("wrong_dtype", name, len(s), f"column {name!r} is {st.kind}; expected {want}", examples)
        return
    limit = spec.get("max_null_fraction", 0.0) if spec.get("nullable", False) else 0.0
    if st.nulls and st.nulls / st.rows > limit:
        add(
            "null_fraction",
            name,
            st.nulls,
            f"column {name!r} is {st.nulls / st.rows:.1%} null; at most {limit:.1%} allowed",
        )
    if spec.get("role") == "label":
        if st.nulls == st.rows:
            add("missing_label", name, st.nulls, f"label {name!r} has no values")
        elif (len(st.counts) if st.counts is not None else s.nunique(dropna=True)) < 2:
            add("constant_label", name, len(s), f"label {name!r} has a single value {_plain(s.dropna().iloc[0])!r}")
    if st.kind in NUMERIC_KINDS:
        if st.infinite:
            add("non_finite", name, st.infinite, f"column {name!r} holds ±Inf", st.inf_examples)
        lo, hi = spec.get("min"), spec.get("max")
        below = lo is not None and st.lo is not None and st.lo < lo
        above = hi is not None and st.hi is not None and st.hi > hi
        if below or above:  # only now go back to the rows, to count and quote them
            values = float_values(s)
            out = (values < lo) if below else np.zeros(len(values), bool)
            if above:
                out |= values > hi
            out &= np.isfinite(values)
            add(
                "out_of_range",
                name,
                int(out.sum()),
                f"column {name!r} has values outside [{lo}, {hi}]",
                values[out][:3].tolist(),
            )
    counts = st.counts
    if counts is None and "domain" in spec and spec.get("feature_kind") == "categorical" and st.kind in NUMERIC_KINDS:
        counts = text_counts(s)
    if "domain" in spec and counts is not None:
        domain = {_domain_key(v) for v in spec["domain"]}
        unseen = {value: k for value, k in counts.items() if _domain_key(value) not in domain}
        if unseen:
            add(
                "unseen_category",
                name,
                sum(unseen.values()),
                f"column {name!r} has values not in its domain",
                sorted(unseen, key=unseen.__getitem__, reverse=True)[:3],
            )


def _domain_key(value: Any) -> str:
    """A domain value as text, so a hand-written ``1``, ``1.0`` and ``"1"`` are one value, as are
    ``true`` and ``"True"`` (data values are counted as text: :func:`text_counts`)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and re.fullmatch(r"-?\d+\.0+", value):
        return value.split(".")[0]
    return str(value)


def _check_model_input(s: Any, name: str, add: Any, st: ColumnStats, feature_kind: str) -> None:
    """What training cannot use: a datetime or other dtype, strings declared numeric, no values at all."""
    examples = s.dropna().head(3).astype(str).tolist()
    if st.kind in ("datetime", "other"):
        add(
            "unusable_feature",
            name,
            len(s),
            f"feature {name!r} is {st.kind} ({s.dtype}); train_model takes numbers, strings and booleans "
            "(give it another role in the ingest options, e.g. roles: {" + repr(name) + ": 'time'}, or convert it)",
            examples,
        )
    elif feature_kind == "numeric" and st.kind not in ("int", "float", "bool"):
        add(
            "unusable_feature",
            name,
            len(s),
            f"feature {name!r} is used as numeric but holds {st.kind} values; declare it categorical or convert it",
            examples,
        )
    elif st.rows and st.nulls == st.rows:
        add("unusable_feature", name, st.nulls, f"feature {name!r} has no values (all null); train_model needs some")


def _check_classes(s: Any, name: str, add: Any, st: ColumnStats, min_rows: int) -> None:
    """Classes of a classification label (as train_model infers the task) with fewer than ``min_rows`` rows."""
    from shipyard.tasks import infer_task

    if st.counts is not None:  # a text label always means classes
        counts = st.counts
    elif st.kind in NUMERIC_KINDS:
        values = float_values(s)
        values = values[np.isfinite(values)]
        try:
            task = infer_task(values, column=name)
        except DataValidationError:
            return  # a missing or constant label has its own anomaly
        if task == "regression":
            return
        classes, tally = np.unique(values, return_counts=True)
        counts = {str(int(c)): int(k) for c, k in zip(classes.tolist(), tally.tolist(), strict=True)}
    else:
        return
    rare = sorted(((k, c) for c, k in counts.items() if k < min_rows), key=lambda kc: (kc[0], kc[1]))
    if len(counts) < 2 or not rare:
        return
    add(
        "rare_class",
        name,
        sum(k for k, _ in rare),
        f"label {name!r}: {len(rare)} of {len(counts)} classes have fewer than {min_rows} rows "
        f"(fewest: {rare[0][0]}); every class needs {min_rows} (min_class_rows) so that the split "
        "puts it in train, validation and test",
        [c for _, c in rare],
    )


def check_frame(
    df: Any,
    roles: dict[str, str],
    config: ValidateConfig,
    schema: dict[str, Any] | None = None,
    kinds: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[Anomaly], dict[str, Any]]:
    """Infers the schema (unless one is given, see :func:`load_schema`) and finds the anomalies.

    ``kinds`` maps a feature to its kind in the Dataset schema (see :func:`find_anomalies`).

    Returns:
        ``(schema, anomalies, summary)``; the summary counts rows, columns, anomalies, errors
        and warnings.
    """
    stats = frame_stats(df)
    schema = schema if schema is not None else infer_schema(df, roles, config, stats, kinds)
    anomalies = find_anomalies(df, schema, config, stats, kinds)
    errors = sum(a.severity == "error" for a in anomalies)
    summary = {
        "rows": int(len(df)),
        "columns": int(len(df.columns)),
        "anomalies": len(anomalies),
        "errors": errors,
        "warnings": len(anomalies) - errors,
        "profile": False,
    }
    return schema, anomalies, summary


def describe(summary: dict[str, Any], anomalies: list[Anomaly], table: Any) -> str:
    """The human report: counts, then one row per anomaly (``table`` renders Markdown or text)."""
    rows = [(a.severity, a.type, a.column, a.count, f"{a.fraction:.2%}", a.message) for a in anomalies]
    head = (
        f"{summary['rows']} rows, {summary['columns']} columns: "
        f"{summary['errors']} error(s), {summary['warnings']} warning(s).\n\n"
    )
    return head + (
        table(["severity", "anomaly", "column", "count", "share", "detail"], rows) if rows else "No anomalies.\n"
    )


SEVERITY_COLORS = {"error": "#f5c6c0", "warning": "#fcefc7"}


def render_html(summary: dict[str, Any], anomalies: list[Anomaly]) -> str:
    """The anomaly report as a self-contained HTML page (errors red, warnings amber, with examples)."""
    rows = [
        (a.severity, a.type, a.column, a.count, f"{a.fraction:.2%}", a.message, ", ".join(map(str, a.examples)))
        for a in anomalies
    ]
    verdict = "failed" if summary["errors"] else "passed"
    intro = (
        f"{summary['rows']} rows, {summary['columns']} columns: {summary['errors']} error(s), "
        f"{summary['warnings']} warning(s)." + ("" if anomalies else " No anomalies.")
    )
    headers = ["severity", "anomaly", "column", "count", "share", "detail", "examples"]
    colors = [SEVERITY_COLORS.get(a.severity, "") for a in anomalies]
    return html_page(f"Data validation {verdict}", intro, headers, rows, row_colors=colors)


def write_reports(
    summary: dict[str, Any],
    anomalies: list[Anomaly],
    report_json: str | Path,
    report_md: str | Path,
    report_html: str | Path | None = None,
) -> None:
    """Writes the anomaly report as JSON (machine), Markdown and, when asked, HTML (KFP UI)."""
    write_json(report_json, {"summary": summary, "anomalies": [dataclasses.asdict(a) for a in anomalies]})
    write_text(report_md, "# Data validation\n\n" + describe(summary, anomalies, markdown_table))
    if report_html is not None:
        write_text(report_html, render_html(summary, anomalies))


def check_dataset(
    dataset_dir: str, schema_out_dir: str, config: ValidateConfig, schema_in: str | None = None
) -> tuple[dict[str, Any], list[Anomaly]]:
    """Checks a Dataset artifact and writes the schema used and its profile; anomalies are returned, not raised.

    The one implementation behind both the ``validate_data`` component (through :func:`validate`)
    and ``shipyard validate``: the column roles come from the Dataset's ``schema.json`` (written
    by ``ingest_data``), string columns are read as categoricals, the schema is inferred (with
    quantiles) or enforced, and the profile is written when no error-severity anomaly was found.

    Args:
        dataset_dir: The Dataset artifact.
        schema_out_dir: Where ``schema.json`` (and ``profile/``) go.
        config: The validation policy (``fail_on_error`` is not looked at here).
        schema_in: A schema to enforce (file or schema artifact dir); inferred when omitted.

    Returns:
        ``(summary, anomalies)``; the summary as :func:`validate` returns it.

    Raises:
        ConfigError: ``column_severity`` names a column the data does not have.
        StorageError, ArtifactError, DataValidationError: The dataset or ``schema_in`` is unusable
            (nothing is written then).
    """
    df, dschema = read_dataset(dataset_dir, text_as_category=True)
    stray = sorted(set(config.column_severity) - set(df.columns))
    if stray:
        raise ConfigError(f"{config.section}: column_severity names column(s) {stray} that are not in the data")
    roles = {c.name: c.role for c in dschema.columns}
    kinds = {c.name: resolve_kind(c.dtype, c.kind) for c in dschema.columns if c.role == "feature"}
    enforced = load_schema(schema_in) if schema_in else None
    schema, anomalies, summary = check_frame(df, roles, config, enforced, kinds)
    errors = [a for a in anomalies if a.severity == "error"]
    if config.profile and not errors and len(df):
        from components.drift_check import core as drift

        checked = [c.name for c in dschema.columns if c.role in drift.CHECKED_ROLES]
        profile = drift.build_profile(df, checked)
        drift.save_profile(profile, Path(schema_out_dir) / drift.PROFILE_DIR)
        summary["profile"] = True
        if not schema_in:  # an inferred schema also records quantiles, read off the profile's sorted values
            for name, column in profile.columns.items():
                spec = schema["columns"].get(name)
                if column.values is not None and len(column.values) and spec and "min" in spec:
                    schema["columns"][name]["quantiles"] = drift.quantiles(column.values, QUANTILES)
    write_json(Path(schema_out_dir) / "schema.json", schema)
    return summary, anomalies


@attempts.step
def validate(
    dataset_dir: str,
    schema_out_dir: str,
    report_json: str,
    report_md: str,
    config: ValidateConfig,
    schema_in: str | None = None,
    report_html: str | None = None,
) -> dict[str, Any]:
    """Validates a Dataset artifact, writing the schema used and the anomaly report.

    Args:
        dataset_dir: The Dataset artifact.
        schema_out_dir: Where the schema artifact (``schema.json``) goes.
        report_json: Path of the machine-readable report.
        report_md: Path of the Markdown report for the KFP UI.
        config: The validation policy.
        schema_in: A schema to enforce (file or schema artifact dir); inferred when omitted.
        report_html: Path of the HTML report (KFP UI's HTML viewer), when wanted.

    Returns:
        ``{"rows", "columns", "anomalies", "errors", "warnings", "profile"}`` (profile: whether
        the drift reference profile was written).

    Raises:
        DataValidationError: An error-severity anomaly was found and ``fail_on_error`` is set;
            the reports are written first so the reason can be read.
    """
    summary, anomalies = check_dataset(dataset_dir, schema_out_dir, config, schema_in)
    write_reports(summary, anomalies, report_json, report_md, report_html)
    errors = [a for a in anomalies if a.severity == "error"]
    if errors and config.fail_on_error:
        first = errors[0]
        raise DataValidationError(
            f"{len(errors)} error-severity anomal{'y' if len(errors) == 1 else 'ies'}; first: {first.type} "
            f"in {first.column or 'dataset'}: {first.message}"
        )
    return summary
