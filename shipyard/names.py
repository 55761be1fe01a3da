"""Model names: derived from the data when not given, usable everywhere a run puts them.

A run's model name is the registered MLflow model (and its experiment ``shipyard/<name>``), the
served route (``/v2/models/<name>/infer``) and, through :func:`service_name`, the KServe
InferenceService (a Kubernetes DNS-1035 label). An empty ``model_name`` means "derive it from the
data": the dataset name of ``sklearn:NAME``, else the file stem, as a DNS-1035 label
(``sklearn:diabetes`` → ``diabetes``, ``gs://b/x/Churn Export.csv`` → ``churn-export``). A
derived name is valid in all three places; a given one is checked to be a URL path segment and
an MLflow name, and the service name derives from it.
"""

from __future__ import annotations

import re

from shipyard.errors import ConfigError

SKLEARN_PREFIX = "sklearn:"
#: File suffixes dropped from a file name to get its stem (repeatedly: ``x.csv.gz`` → ``x``).
DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".gz", ".bz2", ".xz", ".zst", ".zip")
#: Longest DNS-1035 label.
MAX_LENGTH = 63
#: What a given model name may hold: it becomes one URL path segment and an MLflow model name.
GIVEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def dns1035(text: str) -> str:
    """``text`` as a Kubernetes DNS-1035 label: lower-case letters, digits and '-', starting with a letter.

    Every run of other characters becomes one '-', leading and trailing '-' go, a label that
    would not start with a letter gets an ``m-`` prefix, and the result is cut to 63
    characters (``Breast_Cancer`` → ``breast-cancer``, ``2024 churn`` → ``m-2024-churn``).
    Empty input gives ``m``.
    """
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if not label[:1].isalpha():
        label = f"m-{label}".rstrip("-")
    return label[:MAX_LENGTH].rstrip("-")


def data_stem(source: str) -> str:
    """The dataset name of ``sklearn:NAME``, else the last path segment without its data suffixes."""
    if source.startswith(SKLEARN_PREFIX):
        return source[len(SKLEARN_PREFIX) :]
    stem = source.rstrip("/").rsplit("/", 1)[-1]
    while True:
        lowered = stem.lower()
        suffix = next((s for s in DATA_SUFFIXES if lowered.endswith(s) and len(stem) > len(s)), None)
        if suffix is None:
            return stem
        stem = stem[: -len(suffix)]


def derive_model_name(source: str) -> str:
    """The model name a run on ``source`` gets when none is given (see the module docstring).

    Raises:
        ConfigError: ``source`` is empty, so there is nothing to derive a name from.
    """
    if not source.strip():
        raise ConfigError("model_name '' is empty and there is no data source to derive it from")
    return dns1035(data_stem(source.strip()))


def resolve_model_name(model_name: str, source: str) -> str:
    """``model_name`` when given (checked), else the name derived from ``source``.

    Args:
        model_name: The name a user gave; empty means derived.
        source: The run's data: a path, URI or ``sklearn:NAME``.

    Returns:
        A name usable as an MLflow registered model name and as a URL path segment.

    Raises:
        ConfigError: The given name is not a URL path segment (letters, digits, '-', '_', '.',
            starting with a letter or digit), or there is neither a name nor a source.
    """
    if not model_name:
        return derive_model_name(source)
    if not GIVEN_NAME.fullmatch(model_name):
        raise ConfigError(
            f"model_name {model_name!r}: expected letters, digits, '-', '_' and '.' (no '/' or spaces), starting "
            "with a letter or digit: it names the MLflow model and a URL path segment; empty derives it from the data"
        )
    return model_name


def service_name(model_name: str) -> str:
    """The InferenceService name for a model name (``Breast_Cancer`` → ``breast-cancer``); see :func:`dns1035`."""
    return dns1035(model_name)
