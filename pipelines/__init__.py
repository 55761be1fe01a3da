"""Pipeline definitions (wiring only) and the registry the CLI compiles and runs.

Importing this package does not import the pipeline modules (and so neither kfp nor the
components); :func:`load` imports one on demand.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

#: Pipeline name → "module:function".
PIPELINES = {
    "train_and_deploy": "pipelines.train_and_deploy:train_and_deploy",
    "drift_check": "pipelines.drift_check:drift_check_pipeline",
}


#: Pipeline name → the parameter an empty ``model_name`` is derived from.
DATA_PARAMETER = {"train_and_deploy": "data", "drift_check": "current_data"}


def check_options(name: str, arguments: dict[str, Any]) -> None:
    """Parses every options dict in ``arguments`` with its component's Config.

    Raises:
        ConfigError: An unknown key or a bad value, named by parameter and key.
    """
    module = importlib.import_module(PIPELINES[name].split(":")[0])
    for param, target in getattr(module, "OPTIONS", {}).items():
        if param in arguments:
            module_name, cls = target.split(":")
            getattr(importlib.import_module(module_name), cls).from_dict(arguments[param])


def model_name(name: str, arguments: dict[str, Any]) -> str | None:
    """The model name a run of pipeline ``name`` registers and serves under: given, or derived from its data.

    Returns:
        The name (see :func:`shipyard.names.resolve_model_name`), or None when the pipeline has
        no model name or its data parameter is required and not given.

    Raises:
        ConfigError: The given ``model_name`` is not usable as a model name and URL path segment.
    """
    from shipyard.names import resolve_model_name

    params = inspect.signature(load(name).pipeline_func).parameters
    if "model_name" not in params or name not in DATA_PARAMETER:
        return None
    data = arguments.get(DATA_PARAMETER[name], params[DATA_PARAMETER[name]].default)
    if data is inspect.Parameter.empty:
        return None
    return resolve_model_name(arguments.get("model_name", params["model_name"].default), str(data))


def preflight(name: str, arguments: dict[str, Any], local: bool) -> str | None:
    """Rejects, before any step runs, arguments that no step (and no retry of one) could succeed with.

    Checks the options dicts (:func:`check_options`), the data URI's scheme, that Optuna's storage and
    the MLflow store are apart, the model name (:func:`model_name`) and a
    ``train.device`` of ``cuda``: a local run trains on this machine, which needs a CUDA
    device; a cluster run needs the training step to request a GPU (``SHIPYARD_TRAIN_GPUS``).

    Args:
        name: The pipeline.
        arguments: Its run arguments.
        local: Whether the run is a local one (kfp.local on this machine).

    Returns:
        The run's model name, as :func:`model_name`.

    Raises:
        ConfigError: Naming the parameter, the value and what would work instead.
    """
    from shipyard import storage
    from shipyard.errors import ConfigError, ShipyardError

    check_options(name, arguments)
    for param in ("data", "current_data"):  # s3://, https://...: refused by name now, not by ingest later
        if isinstance(arguments.get(param), str):
            from components.ingest_data.core import SUPPORTED_SOURCES

            try:
                storage.check_supported(arguments[param], SUPPORTED_SOURCES)
            except ShipyardError as exc:
                raise ConfigError(f"{param}: {exc}") from exc
    if isinstance(arguments.get("tune"), dict):  # Optuna and MLflow in one schema break each other
        from components.tune_hyperparams.core import check_storage_apart

        check_storage_apart(str(arguments["tune"].get("storage", "")), str(arguments.get("mlflow_tracking_uri", "")))
    from shipyard import images

    tune = arguments.get("tune")
    for field, options, gpus in (
        ("train", arguments.get("train"), images.TRAIN_GPUS),
        ("tune.base", tune.get("base") if isinstance(tune, dict) else None, 0),  # the tune step requests no GPU
    ):
        if isinstance(options, dict) and options.get("device") == "cuda":
            _check_cuda(field, local, gpus)
    return model_name(name, arguments)


def _check_cuda(field: str, local: bool, gpus: int) -> None:
    """Refuses ``device: cuda`` in ``field`` where the step cannot get a GPU: a local run on a machine
    without CUDA, or a cluster step that requests none (``gpus``).

    Raises:
        ConfigError: Naming the field and what would work instead.
    """
    from shipyard.errors import ConfigError

    if local:
        from components.train_model.core import pick_device

        try:
            pick_device("cuda")
        except ConfigError as exc:
            message = str(exc).replace("train:", f"{field}:", 1)
            raise ConfigError(f"{message}; a --local run trains on this machine: use device 'auto' or 'cpu'") from exc
    elif not gpus:
        step = (
            "training step requests no GPU (compiled with SHIPYARD_TRAIN_GPUS=0)"
            if field == "train"
            else ("tuning step requests no GPU")
        )
        raise ConfigError(f"{field}: device 'cuda' requested but the {step}; use device 'auto' or 'cpu'")


def load(name: str) -> Any:
    """Returns the ``@dsl.pipeline`` object called ``name``.

    Raises:
        ConfigError: No pipeline has that name.
    """
    from shipyard.errors import ConfigError

    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; expected one of: {', '.join(PIPELINES)}")
    module, attr = PIPELINES[name].split(":")
    return getattr(importlib.import_module(module), attr)
