"""The serving runtime's settings: one frozen config, from CLI flags or ``SHIPYARD_SERVE_*`` variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from shipyard.config import Config, require
from shipyard.errors import ConfigError
from shipyard.formats import FORMATS

ENV_PREFIX = "SHIPYARD_SERVE_"


@dataclasses.dataclass(frozen=True)
class ServeConfig(Config):
    """How the model server behaves.

    Attributes:
        batching: Adaptive batching: ``auto`` (on for TorchScript and ONNX, off for scikit-learn),
            ``on`` or ``off``.
        max_batch_size: The most rows one batched model call takes.
        max_batch_wait_ms: How long a batch that already has company may wait for more (0: batch
            what is queued, with no added delay; requests that arrive alone are never held).
        max_body_bytes: Larger request bodies get 413.
        payload_log: Where to write request/response JSON lines (a directory or ``gs://``);
            empty is off.
        shutdown_delay_s: On SIGTERM, how long readiness reports 503 before the server stops
            accepting requests (time for the load balancer to stop routing here).
        grace_period_s: The most time in-flight requests get to finish after that.
    """

    section = "serve"
    batching: str = "auto"
    max_batch_size: int = 64
    max_batch_wait_ms: float = 0.0
    max_body_bytes: int = 8 * 1024 * 1024
    payload_log: str = ""
    shutdown_delay_s: float = 0.0
    grace_period_s: float = 30.0

    def validate(self) -> None:
        require(self.batching in ("auto", "on", "off"), self.section, "batching must be auto, on or off")
        require(self.max_batch_size >= 1, self.section, "max_batch_size must be >= 1")
        require(0 <= self.max_batch_wait_ms <= 1000, self.section, "max_batch_wait_ms must be in [0, 1000]")
        require(self.max_body_bytes >= 1024, self.section, "max_body_bytes must be >= 1024")
        require(self.shutdown_delay_s >= 0, self.section, "shutdown_delay_s must be >= 0")
        require(self.grace_period_s >= 0, self.section, "grace_period_s must be >= 0")

    def batching_for(self, model_format: str) -> bool:
        """Whether a model of this format is served with adaptive batching."""
        if self.batching == "auto":
            known = FORMATS.get(model_format)
            return known is not None and known.batched
        return self.batching == "on"

    @classmethod
    def from_env(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> ServeConfig:
        """Defaults, then ``SHIPYARD_SERVE_<FIELD>`` variables, then ``overrides`` (CLI flags).

        Raises:
            ConfigError: A value that does not parse or is out of range, naming the variable.
        """
        environ = os.environ if environ is None else environ
        known = {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)
        if unknown:  # a misspelt variable would otherwise be ignored without a word
            raise ConfigError(f"serve: unknown variable(s) {unknown}; expected some of {sorted(known)}")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _parse(raw, field.type)
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(values)


def _parse(raw: str, annotation: Any) -> Any:
    """An environment string as the field's type (int/float parsed; the rest kept as text)."""
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        return raw  # from_dict names the field and the expected type
    return raw
