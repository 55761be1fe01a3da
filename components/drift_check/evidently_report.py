"""Evidently's own data-drift HTML report, offered beside Shipyard's page for users who know it.

The drift decisions stay Shipyard's (:func:`components.drift_check.core.check`, numpy on a stored
reference profile). This module only renders the page Evidently users recognize —
``Report([DataDriftPreset(...)])`` — for the columns the check compared and, when given the
``DriftConfig``, under the same policy (dataset drift share, per-column methods and thresholds).
Evidently's report needs the reference rows themselves: a profile is not enough.

Evidently is an optional extra (``pip install 'shipyard[evidently]'``), imported only when this
report is asked for; without it the report fails with a ``ConfigError`` that says how to install
it. The supported versions are Evidently's 0.7 API (``evidently.presets``), from 0.7.23.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    from components.drift_check.core import DriftConfig

#: The versions this module is written against (the 0.7 API; 0.7.23 is the one benchmarked).
EVIDENTLY_REQUIREMENT = "evidently>=0.7.23,<0.8"
INSTALL_HINT = (
    "install the optional extra with `pip install 'shipyard[evidently]'` "
    "(from a checkout: `pip install -c requirements.lock -e '.[evidently]'`), "
    f"or `pip install '{EVIDENTLY_REQUIREMENT}'` into the same environment"
)
INT_CATEGORICAL = 10  # Evidently types an integer column with at most this many distinct values as categorical


def preset_options(config: DriftConfig) -> dict[str, Any]:
    """``DataDriftPreset`` keyword arguments that apply a drift policy as the decisions do.

    Shipyard's method names (``ks``, ``wasserstein``, ``jensenshannon``, ``chisquare``, ``z``,
    ``psi``) are Evidently's stat-test names, so they pass through unchanged; ``auto`` leaves the
    choice to Evidently (the same defaults the decisions follow). One difference: Evidently applies
    ``num_method`` / ``cat_method`` by its column type, so an integer column with at most
    ``INT_CATEGORICAL`` distinct values gets ``categorical_method`` on the page where the decisions
    apply ``numeric_method`` to it (per-column methods apply alike in both).
    """

    def chosen(method: str | None) -> str | None:
        return None if method in (None, "auto") else method

    methods = {c: chosen(s.get("method")) for c, s in config.per_column.items()}
    thresholds = {c: float(s["threshold"]) for c, s in config.per_column.items() if s.get("threshold") is not None}
    return {
        "drift_share": float(config.drift_share),
        "num_method": chosen(config.numeric_method),
        "cat_method": chosen(config.categorical_method),
        "per_column_method": {c: m for c, m in methods.items() if m is not None} or None,
        "per_column_threshold": thresholds or None,
    }


def _is_number(series: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series.dtype)) and not pd.api.types.is_bool_dtype(series.dtype)


def column_types(current: Any, columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(numerical, categorical)`` columns, declared to Evidently as the decisions type them.

    Floats are numerical; integers are categorical when the current data holds at most
    ``INT_CATEGORICAL`` distinct values (Evidently's own rule, which its inference applies only
    to NumPy ``int*`` dtypes, not to unsigned or nullable ones); everything else (strings,
    categoricals, booleans, datetimes) is categorical. Left to infer, Evidently would take a
    string column with mostly distinct values for free text (a text-model test) and a lone
    datetime column for the timestamp (not compared).
    """
    numerical: list[str] = []
    categorical: list[str] = []
    for name in columns:
        series = current[name]
        counted = not _is_number(series) or (series.dtype.kind in "iu" and series.nunique() <= INT_CATEGORICAL)
        (categorical if counted else numerical).append(name)
    return numerical, categorical


def _has_values(series: Any) -> bool:
    """Whether a column keeps any value once nulls and ±Inf are dropped (as the decisions drop them)."""
    if _is_number(series):
        return bool(np.isfinite(series.to_numpy(dtype=np.float64, na_value=np.nan)).any())
    return bool(series.notna().any())


def _check_columns(reference: Any, current: Any, columns: Sequence[str]) -> list[str]:
    names = list(columns)
    if not names:
        raise DataValidationError("Evidently report: no columns to compare (the drift check compared none)")
    for side, frame in (("reference", reference), ("current", current)):
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise DataValidationError(f"Evidently report: {side} data lacks column(s) {missing}; expected {names}")
        empty = [c for c in names if not _has_values(frame[c])]
        if empty:
            raise DataValidationError(
                f"Evidently report: column(s) {empty} of the {side} data have no finite non-null values"
            )
    return names


def _import_evidently() -> tuple[Any, Any, Any, Any]:
    """``(Report, Dataset, DataDefinition, DataDriftPreset)``, or a ConfigError saying how to install them."""
    try:
        import evidently
    except ImportError as exc:
        raise ConfigError(
            f"Evidently's HTML drift report needs Evidently, which is not installed ({exc}): {INSTALL_HINT}"
        ) from exc
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except ImportError as exc:
        version = getattr(evidently, "__version__", "of unknown version")
        raise ConfigError(
            f"Evidently's HTML drift report needs {EVIDENTLY_REQUIREMENT}; the installed Evidently {version} "
            f"cannot be used ({exc}): {INSTALL_HINT}"
        ) from exc
    return Report, Dataset, DataDefinition, DataDriftPreset


def require_evidently() -> None:
    """Checks that Evidently's report can be written, so a step can fail before writing anything.

    Raises:
        ConfigError: Evidently (0.7, from 0.7.23) is not installed; the message says how to
            install it.
    """
    _import_evidently()


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_evidently_report(
    reference: Any,
    current: Any,
    path: str | os.PathLike[str],
    columns: Sequence[str],
    config: DriftConfig | None = None,
) -> Path:
    """Writes Evidently's ``DataDriftPreset`` HTML report of ``current`` against ``reference``.

    Only ``columns`` are compared, each declared numerical or categorical as the decisions type
    it (:func:`column_types`). The page is self-contained (a few MB: Evidently embeds its
    scripts) and is written through a temp file and a rename.

    Args:
        reference: The reference rows, a pandas DataFrame.
        current: The current rows, a pandas DataFrame.
        path: The HTML file to write (parent directories are created).
        columns: The columns to compare: those the drift check compared.
        config: The drift policy to apply (see :func:`preset_options`); None uses Evidently's
            defaults, which are also ``DriftConfig``'s.

    Returns:
        The path written.

    Raises:
        DataValidationError: ``columns`` is empty, or names a column that either frame lacks or
            that has no finite non-null values there.
        ConfigError: Evidently (0.7, from 0.7.23) is not installed; the message says how to
            install it.
    """
    names = _check_columns(reference, current, columns)
    report_cls, dataset_cls, definition_cls, preset_cls = _import_evidently()
    numerical, categorical = column_types(current, names)
    # One definition for both frames (Evidently would otherwise infer each frame's on its own).
    definition = definition_cls(numerical_columns=numerical, categorical_columns=categorical)
    options = preset_options(config) if config is not None else {}
    for key in ("per_column_method", "per_column_threshold"):  # only the columns compared
        if options.get(key):
            options[key] = {c: v for c, v in options[key].items() if c in names} or None
    preset = preset_cls(columns=names, **options)
    snapshot = report_cls([preset]).run(
        current_data=dataset_cls.from_pandas(current[names], data_definition=definition),
        reference_data=dataset_cls.from_pandas(reference[names], data_definition=definition),
    )
    target = Path(path)
    _write_atomically(target, snapshot.get_html_str(as_iframe=False))
    return target
