"""Pipeline definitions (wiring only) and the registry the CLI compiles and runs.

Importing this package does not import the pipeline modules (and so neither kfp nor the
components); :func:`load` imports one on demand.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Pipeline name → "module:function".
PIPELINES = {
    "train_and_deploy": "pipelines.train_and_deploy:train_and_deploy",
    "drift_check": "pipelines.drift_check:drift_check_pipeline",
}


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
