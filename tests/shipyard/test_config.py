"""Tests for shipyard.config: strict ``Config.from_dict`` parsing and ``validate()``."""

import dataclasses
import math

import pytest

from shipyard.config import Config, require
from shipyard.errors import ConfigError, ShipyardError


@dataclasses.dataclass(frozen=True)
class SampleConfig(Config):
    """A config with one field of every kind ``_coerce`` handles."""

    section = "sample"
    width: int = 8
    rate: float = 0.5
    name: str = "mlp"
    enabled: bool = True
    limit: int | None = None
    tags: tuple[str, ...] = ()
    extra: dict = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        require(self.width >= 1, self.section, "width must be >= 1")
        require(0 <= self.rate <= 1, self.section, "rate must be in [0, 1]")


FIELDS = ["enabled", "extra", "limit", "name", "rate", "tags", "width"]


@pytest.mark.parametrize("values", [None, {}])
def test_none_or_empty_gives_defaults(values):
    assert SampleConfig.from_dict(values) == SampleConfig()


def test_values_are_used():
    config = SampleConfig.from_dict({"width": 16, "rate": 0.25, "name": "x", "enabled": False})
    assert (config.width, config.rate, config.name, config.enabled) == (16, 0.25, "x", False)


def test_unknown_key_names_the_key_and_the_allowed_keys():
    with pytest.raises(ConfigError) as info:
        SampleConfig.from_dict({"widht": 16})
    message = str(info.value)
    assert message.startswith("sample:")
    assert "'widht'" in message
    assert "expected one of: " + ", ".join(FIELDS) in message


def test_every_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"'aaa', 'zzz'"):
        SampleConfig.from_dict({"zzz": 1, "width": 3, "aaa": 2})


def test_config_error_is_in_the_error_tree():
    assert issubclass(ConfigError, ShipyardError)
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("width", "8", "int"),
        ("width", [8], "int"),
        ("rate", "0.5", "float"),
        ("name", 3, "str"),
        ("enabled", "yes", "bool"),
        ("enabled", 1, "bool"),
        ("tags", "ab", "tuple"),
        ("extra", [1, 2], "dict"),
    ],
)
def test_wrong_type_names_field_expected_type_and_value(field, value, expected):
    with pytest.raises(ConfigError) as info:
        SampleConfig.from_dict({field: value})
    message = str(info.value)
    assert f"sample: {field!r} must be {expected}" in message
    assert repr(value) in message


def test_integral_float_is_accepted_for_int():
    # KFP passes every number in a dict parameter through protobuf Struct, i.e. as a float.
    config = SampleConfig.from_dict({"width": 16.0})
    assert config.width == 16
    assert type(config.width) is int


@pytest.mark.parametrize("value", [16.5, 0.1, math.nan, math.inf])
def test_non_integral_float_is_rejected_for_int(value):
    with pytest.raises(ConfigError, match=r"'width' must be int"):
        SampleConfig.from_dict({"width": value})


def test_int_is_widened_to_float():
    config = SampleConfig.from_dict({"rate": 1})
    assert config.rate == 1.0
    assert type(config.rate) is float


@pytest.mark.parametrize(("field", "expected"), [("width", "int"), ("rate", "float"), ("limit", "int")])
def test_bool_is_not_a_number(field, expected):
    with pytest.raises(ConfigError, match=rf"'{field}' must be {expected}, got True \(bool\)"):
        SampleConfig.from_dict({field: True})


def test_optional_field_accepts_none():
    assert SampleConfig.from_dict({"limit": None}).limit is None


def test_optional_int_accepts_integral_float():
    config = SampleConfig.from_dict({"limit": 3.0})
    assert config.limit == 3
    assert type(config.limit) is int


def test_optional_int_rejects_wrong_kind_naming_the_field():
    with pytest.raises(ConfigError, match=r"sample: 'limit' must be int, got 'x' \(str\)"):
        SampleConfig.from_dict({"limit": "x"})


@pytest.mark.parametrize("field", ["width", "rate", "name", "tags"])
def test_non_optional_field_rejects_none(field):
    with pytest.raises(ConfigError, match=rf"'{field}' must be"):
        SampleConfig.from_dict({field: None})


def test_list_becomes_tuple():
    config = SampleConfig.from_dict({"tags": ["a", "b"]})
    assert config.tags == ("a", "b")


def test_validate_is_called():
    with pytest.raises(ConfigError, match=r"^sample: width must be >= 1$"):
        SampleConfig.from_dict({"width": 0})
    with pytest.raises(ConfigError, match=r"^sample: rate must be in \[0, 1\]$"):
        SampleConfig.from_dict({"rate": 1.5})


def test_validate_is_called_once_per_from_dict(monkeypatch):
    calls = []
    monkeypatch.setattr(SampleConfig, "validate", lambda self: calls.append(self))
    config = SampleConfig.from_dict({"width": 2})
    assert calls == [config]


@pytest.mark.parametrize(("values", "kind"), [(["width"], "list"), ("width=3", "str"), (3, "int")])
def test_non_mapping_input_is_rejected(values, kind):
    with pytest.raises(ConfigError, match=rf"^sample: expected a mapping, got {kind}$"):
        SampleConfig.from_dict(values)


def test_config_is_frozen_and_round_trips_through_to_dict():
    config = SampleConfig.from_dict({"width": 4, "tags": ["a"], "extra": {"k": 1}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.width = 5  # type: ignore[misc]
    assert SampleConfig.from_dict(config.to_dict()) == config


def test_base_section_name_is_used_when_not_overridden():
    @dataclasses.dataclass(frozen=True)
    class Plain(Config):
        size: int = 1

    with pytest.raises(ConfigError, match=r"^config: unknown key\(s\) 'other'; expected one of: size$"):
        Plain.from_dict({"other": 1})


def test_require_raises_only_when_condition_fails():
    require(True, "s", "never raised")
    with pytest.raises(ConfigError, match=r"^s: broken$"):
        require(False, "s", "broken")
