"""``shipyard models``: list, describe, promote and rollback on a real SQLite store, and one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest

NAME = "bc"


@pytest.fixture
def store(tmp_path, monkeypatch, baseline_artifacts) -> str:
    """Versions 1 and 2 of ``bc``, both blessed (challenger is 2), and version 3 unblessed."""
    from components.register_model.core import register

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    for blessed in (True, True, False):
        register(str(baseline_artifacts["baseline"]), NAME, None, blessed, uri)
    return uri


def _error(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.slow
def test_list_describe_promote_rollback(store, cli):
    listed = cli("models", "list", "--tracking-uri", store)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == ["name", "versions", "latest", "aliases"]
    assert "bc    3         3       @challenger → 2" in listed.stdout

    promoted = cli("models", "promote", NAME, "1", "--tracking-uri", store)
    assert promoted.returncode == 0 and promoted.stdout.strip() == "bc: @champion → version 1; no champion before"
    promoted = cli("models", "promote", NAME, "2", "--tracking-uri", store, "--json")
    assert json.loads(promoted.stdout) == {
        "name": NAME,
        "champion": 2,
        "previous": 1,
        "was_champion": 1,
        "message": "bc: @champion → version 2; version 1 (now @previous)",
    }

    described = cli("models", "describe", NAME, "@champion", "--tracking-uri", store)
    assert described.returncode == 0, described.stderr
    assert "model:    bc version 2" in described.stdout and "aliases:  @challenger, @champion" in described.stdout
    assert "shipyard.blessed" in described.stdout and "shipyard.promoted_at" in described.stdout
    as_json = json.loads(cli("models", "describe", NAME, "1", "--tracking-uri", store, "--json").stdout)
    assert as_json["version"] == 1 and as_json["aliases"] == ["previous"]

    rolled = cli("models", "rollback", NAME, "--tracking-uri", store)
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.strip() == "bc: @champion → version 1 (was @previous); version 2 is no longer champion"


@pytest.mark.slow
def test_the_default_store_is_the_one_register_model_uses(store, cli, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = cli("models", "list", env={**env, "MLFLOW_TRACKING_URI": store})
    assert proc.returncode == 0 and "@challenger → 2" in proc.stdout
    empty = cli("models", "list", env={**env, "SHIPYARD_HOME": str(tmp_path / "home")})
    assert empty.returncode == 2 and "no MLflow store at" in empty.stderr and "home/mlflow.db" in empty.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("describe", "nope"), ["shipyard models: error: no registered model 'nope'; registered models: 'bc'"]),
        (("describe", NAME, "9"), ["model 'bc' has no version 9; its versions: 1..3"]),
        (("describe", NAME, "@champion"), ["model 'bc' has no alias 'champion'; its aliases: @challenger → 2"]),
        (("promote", NAME, "@challenger"), ["VERSION '@challenger' is not a version number"]),
        (("promote", "nope", "1"), ["no registered model 'nope'"]),
        (("rollback", NAME), ["model 'bc' has no alias 'previous' to roll back to"]),
    ],
)
def test_unknown_names_versions_and_aliases_exit_2_with_one_line(store, cli, args, words):
    line = _error(cli("models", *args, "--tracking-uri", store))
    for word in words:
        assert word in line, line


@pytest.mark.slow
def test_an_unblessed_version_needs_force(store, cli):
    proc = cli("models", "promote", NAME, "3", "--tracking-uri", store)
    assert proc.returncode == 1 and "registered unblessed" in proc.stderr and "--force" in proc.stderr
    assert cli("models", "promote", NAME, "3", "--force", "--tracking-uri", store).returncode == 0


@pytest.mark.parametrize("action", [[], ["list"], ["describe"], ["promote"], ["rollback"]])
def test_help(cli, action):
    proc = cli("models", *action, "--help")
    assert proc.returncode == 0 and "usage: shipyard models" in proc.stdout
