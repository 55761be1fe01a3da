"""Frozen-dataclass configuration with one ``validate()`` and strict ``from_dict``.

Components take plain ``dict`` parameters (what KFP passes) and their cores parse them with
``Config.from_dict``, so a typo in a key is a :class:`~shipyard.errors.ConfigError` that names the
key and the keys that are allowed, never a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from shipyard.errors import ConfigError

C = TypeVar("C", bound="Config")


@dataclasses.dataclass(frozen=True)
class Config:
    """Base class: subclasses are ``@dataclasses.dataclass(frozen=True)`` with defaults."""

    #: Name used in error messages ("train config", "thresholds", ...).
    section: ClassVar[str] = "config"

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any] | None) -> C:
        """Builds the config from a mapping, rejecting unknown keys and wrong value kinds.

        Args:
            values: Keys are field names; ``None`` or ``{}`` gives the defaults.

        Returns:
            The validated config.

        Raises:
            ConfigError: A key is unknown or a value has the wrong kind or range.
        """
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{cls.section}: expected a mapping, got {type(values).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(
                f"{cls.section}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"expected one of: {', '.join(sorted(fields))}"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {name: _coerce(cls.section, name, value, hints[name]) for name, value in values.items()}
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        """Checks ranges and cross-field rules; subclasses override. Raises ConfigError."""

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as plain JSON-able values."""
        return dataclasses.asdict(self)


def _coerce(section: str, name: str, value: Any, hint: Any) -> Any:
    """Checks one value against its annotation, converting only where it loses nothing."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(section, name, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{section}: {name!r} may not be null")
    expected = origin or hint
    if expected is Any:
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, float) and value.is_integer():
        return int(value)  # KFP passes dict values through protobuf Struct: every number is a float
    if expected is tuple and isinstance(value, list):
        value = tuple(value)
    if expected in (dict, tuple, list) and isinstance(value, expected):
        return value
    if isinstance(expected, type) and isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    raise ConfigError(
        f"{section}: {name!r} must be {getattr(expected, '__name__', expected)}, got {value!r} ({type(value).__name__})"
    )


def require(condition: bool, section: str, message: str) -> None:
    """Raises ConfigError with ``section: message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{section}: {message}")
