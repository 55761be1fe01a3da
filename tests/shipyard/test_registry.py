"""shipyard.registry against a real MLflow store (SQLite under tmp_path): aliases, errors, fetch_model."""

from __future__ import annotations

import pytest

from components.register_model.core import register
from shipyard import registry
from shipyard.artifacts import read_model_manifest
from shipyard.errors import NotBlessedError, RegistryError
from shipyard.registry import CHALLENGER, CHAMPION, PREVIOUS

pytestmark = [pytest.mark.slow]  # each test registers three versions (a few seconds)
NAME = "bc"


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def three(store, baseline_artifacts) -> str:
    """Versions 1 and 2 blessed, 3 not: challenger is 2."""
    for blessed in (True, True, False):
        register(str(baseline_artifacts["baseline"]), NAME, None, blessed, store)
    return store


def _aliases(store: str) -> dict[str, int]:
    model = registry.client_for(store).get_registered_model(NAME)
    return {a: int(v) for a, v in model.aliases.items()}


def test_promote_moves_champion_and_keeps_the_one_before_as_previous(three):
    client = registry.client_for(three)

    first = registry.promote(client, NAME, 1)
    assert (first.champion, first.previous, first.was_champion) == (1, None, None)
    assert first.message == "bc: @champion → version 1; no champion before"
    assert _aliases(three) == {CHALLENGER: 2, CHAMPION: 1}

    second = registry.promote(client, NAME, "2")
    assert (second.champion, second.previous, second.was_champion) == (2, 1, 1)
    assert second.message == "bc: @champion → version 2; version 1 (now @previous)"
    assert _aliases(three) == {CHALLENGER: 2, CHAMPION: 2, PREVIOUS: 1}
    assert registry.PROMOTED_TAG in client.get_model_version(NAME, "2").tags

    again = registry.promote(client, NAME, 2)
    assert "already the champion; nothing moved" in again.message
    assert _aliases(three) == {CHALLENGER: 2, CHAMPION: 2, PREVIOUS: 1}


def test_rollback_returns_to_previous_and_says_what_it_did(three):
    client = registry.client_for(three)
    registry.promote(client, NAME, 1)
    registry.promote(client, NAME, 2)

    move = registry.rollback(client, NAME)

    assert (move.champion, move.previous, move.was_champion) == (1, None, 2)
    assert move.message == "bc: @champion → version 1 (was @previous); version 2 is no longer champion"
    assert _aliases(three) == {CHALLENGER: 2, CHAMPION: 1}
    assert registry.ROLLED_BACK_TAG in client.get_model_version(NAME, "2").tags
    with pytest.raises(RegistryError) as exc:
        registry.rollback(client, NAME)
    assert str(exc.value) == (
        "model 'bc' has no alias 'previous' to roll back to; its aliases: @challenger → 2, @champion → 1"
    )


def test_an_unblessed_version_is_promoted_only_when_allowed(three):
    client = registry.client_for(three)
    with pytest.raises(NotBlessedError, match=r"model 'bc' version 3 was registered unblessed"):
        registry.promote(client, NAME, 3)
    assert CHAMPION not in _aliases(three)
    assert registry.promote(client, NAME, 3, allow_unblessed=True).champion == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: registry.promote(c, "nope", 1), "no registered model 'nope'; registered models: 'bc'"),
        (lambda c: registry.promote(c, NAME, 9), "model 'bc' has no version 9; its versions: 1..3"),
        (lambda c: registry.rollback(c, "nope"), "no registered model 'nope'; registered models: 'bc'"),
        (
            lambda c: registry.describe(c, NAME, "@champion"),
            "model 'bc' has no alias 'champion'; its aliases: @challenger → 2",
        ),
        (lambda c: registry.describe(c, NAME, "latest"), "model 'bc': version 'latest' is neither a number nor @ALIAS"),
    ],
)
def test_unknown_names_versions_and_aliases_are_typed_errors_naming_what_exists(three, call, message):
    with pytest.raises(RegistryError) as exc:
        call(registry.client_for(three))
    assert str(exc.value).startswith(message)
    assert isinstance(exc.value, LookupError)


def test_describe_and_list(three):
    client = registry.client_for(three)
    registry.promote(client, NAME, 1)

    latest = registry.describe(client, NAME)
    assert latest["version"] == 3 and latest["aliases"] == [] and latest["tags"]["shipyard.blessed"] == "false"
    by_alias = registry.describe(client, NAME, "@challenger")
    assert by_alias["version"] == 2 and by_alias["aliases"] == [CHALLENGER]
    assert by_alias["source"].endswith("/model") and by_alias["run_id"] and by_alias["created"].endswith("+00:00")
    assert registry.describe(client, NAME, "1")["aliases"] == [CHAMPION]
    assert registry.list_models(client) == [
        {"name": NAME, "versions": 3, "latest": 3, "aliases": {CHALLENGER: 2, CHAMPION: 1}}
    ]


def test_fetch_model_downloads_the_verified_shipyard_artifact(three, baseline_artifacts, tmp_path):
    registry.promote(registry.client_for(three), NAME, 2)

    got = registry.fetch_model(three, NAME, "@champion", str(tmp_path / "dl"))

    assert got is not None and (got.name, got.version) == (NAME, 2) and got.aliases == (CHALLENGER, CHAMPION)
    assert got.tags["shipyard.format"] == "sklearn-skops" and got.run_id
    assert read_model_manifest(got.path).files == read_model_manifest(baseline_artifacts["baseline"]).files
    from serving.formats import load_model

    assert load_model(got.path).manifest.task == "binary"
    by_number = registry.fetch_model(three, NAME, "3", str(tmp_path / "dl3"))
    assert by_number is not None and by_number.version == 3 and by_number.aliases == ()


def test_fetch_model_is_none_without_a_model_an_alias_or_a_store(three, store, tmp_path):
    assert registry.fetch_model(three, NAME, "@champion", str(tmp_path / "a")) is None  # no champion yet
    assert registry.fetch_model(three, "other", "@champion", str(tmp_path / "b")) is None
    empty = f"sqlite:///{tmp_path}/none/mlflow.db"
    assert registry.fetch_model(empty, NAME, "@champion", str(tmp_path / "c")) is None
    assert not (tmp_path / "none").exists(), "looking created no store"
    with pytest.raises(RegistryError, match="model 'bc' has no version 7; its versions: 1..3"):
        registry.fetch_model(three, NAME, "7", str(tmp_path / "d"))


def test_fetch_model_refuses_an_altered_download(three, tmp_path, monkeypatch):
    """The downloaded artifact is hash-checked: a changed weights file in the store is an IntegrityError."""
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    from shipyard.errors import IntegrityError

    source = registry.client_for(three).get_model_version(NAME, "1").source
    weights = Path(unquote(urlparse(source).path)) / registry.SHIPYARD_SUBDIR / "model.skops"
    with open(weights, "ab") as f:
        f.write(b"\0")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        registry.fetch_model(three, NAME, "1", str(tmp_path / "dl"))


def test_a_store_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(RegistryError, match=r"no MLflow store at 'sqlite:///.*/nowhere.db'"):
        registry.client_for(f"sqlite:///{tmp_path}/nowhere.db")
    assert not (tmp_path / "nowhere.db").exists()
