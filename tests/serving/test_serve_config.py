"""Tests for serving.config: ServeConfig from the environment and overrides, and its errors.

(Named test_serve_config.py: tests/shipyard/test_config.py already holds the basename test_config.)
"""

from __future__ import annotations

import pytest

from serving.config import ServeConfig
from shipyard.errors import ConfigError


def test_serve_config_reads_the_environment_then_overrides():
    env = {"SHIPYARD_SERVE_BATCHING": "on", "SHIPYARD_SERVE_MAX_BATCH_SIZE": "16", "SHIPYARD_SERVE_PAYLOAD_LOG": "/x"}
    config = ServeConfig.from_env({"max_batch_size": 32, "payload_log": None}, environ=env)
    assert (config.batching, config.max_batch_size, config.payload_log) == ("on", 32, "/x")
    assert config.batching_for("sklearn-skops")
    assert ServeConfig().batching_for("torchscript") and not ServeConfig().batching_for("sklearn-skops")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHIPYARD_SERVE_BATCHING": "maybe"}, "batching must be auto, on or off"),
        ({"SHIPYARD_SERVE_MAX_BATCH_SIZE": "many"}, "max_batch_size"),
        ({"SHIPYARD_SERVE_MAX_BODY_BYTES": "10"}, "max_body_bytes must be >= 1024"),
    ],
)
def test_bad_serve_settings_are_config_errors_naming_the_setting(env, message):
    with pytest.raises(ConfigError, match=message):
        ServeConfig.from_env(environ=env)


def test_unknown_serve_variables_are_errors():
    with pytest.raises(ConfigError, match="SHIPYARD_SERVE_SHUTDOWN_DELAY"):
        ServeConfig.from_env(environ={"SHIPYARD_SERVE_SHUTDOWN_DELAY": "5"})
