"""Tests for components.tune_hyperparams.core: seeded studies, trials.json, search-space errors."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import pytest
from scratch_postgres import in_schema, tables

from components.train_model.core import TrainConfig
from components.tune_hyperparams.core import DEFAULT_SPACE, TuneConfig, check_storage_apart, tune
from shipyard.artifacts import read_model_manifest
from shipyard.errors import ConfigError

BASE = {"max_epochs": 3, "patience": 3, "ensemble": 2}


def _tune(artifacts, out: Path, **overrides) -> dict:
    config = TuneConfig.from_dict({"n_trials": 3, "seed": 0, "base": BASE, **overrides})
    result = tune(str(artifacts["train"]), str(artifacts["val"]), str(out / "study"), str(out / "report.md"), config)
    return result


@pytest.fixture(scope="module")
def runs(baseline_artifacts, tmp_path_factory) -> dict:
    """The same seeded study run twice into two directories, and once with another seed."""
    root = tmp_path_factory.mktemp("tune")
    return {
        "a": (_tune(baseline_artifacts, root / "a"), root / "a"),
        "b": (_tune(baseline_artifacts, root / "b"), root / "b"),
        "other": (_tune(baseline_artifacts, root / "other", seed=1), root / "other"),
    }


def test_same_seed_gives_the_same_best_params(runs):
    (a, _), (b, _) = runs["a"], runs["b"]
    assert a["best_params"] == b["best_params"]
    assert a["best_value"] == pytest.approx(b["best_value"], rel=1e-6)
    assert a["best_trial"] == b["best_trial"]


def test_another_seed_samples_other_params(runs):
    trials_a = json.loads((runs["a"][1] / "study" / "trials.json").read_text())["trials"]
    trials_other = json.loads((runs["other"][1] / "study" / "trials.json").read_text())["trials"]
    assert [t["params"] for t in trials_a] != [t["params"] for t in trials_other]


def test_result_summarizes_the_study(runs):
    result, _ = runs["a"]
    assert result["trials"] == 3 and result["pruned"] == 0
    assert result["storage"] == "sqlite (artifact)"
    # best_params is a complete TrainConfig: defaults, then base, then the best trial's draw.
    assert set(result["best_params"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert result["best_params"]["max_epochs"] == BASE["max_epochs"]
    assert result["best_params"]["batch_size"] == TrainConfig().batch_size
    TrainConfig.from_dict(result["best_params"])


def test_trials_json_contents(runs):
    result, out = runs["a"]
    data = json.loads((out / "study" / "trials.json").read_text())

    assert data["result"] == result
    trials = data["trials"]
    assert [t["number"] for t in trials] == [0, 1, 2]
    assert {t["state"] for t in trials} == {"COMPLETE"}
    assert all(set(t["params"]) == set(DEFAULT_SPACE) for t in trials)
    values = [t["value"] for t in trials]
    assert result["best_value"] == min(values)
    best = trials[result["best_trial"]]
    assert best["value"] == min(values)
    assert {k: result["best_params"][k] for k in DEFAULT_SPACE} == best["params"]
    for t in trials:
        for name, spec in DEFAULT_SPACE.items():
            assert spec["low"] <= t["params"][name] <= spec["high"], (name, t["params"][name])
        assert t["seconds"] is not None and t["seconds"] >= 0
    assert (out / "study" / "study.db").is_file()


def test_report_markdown_lists_every_trial(runs):
    result, out = runs["a"]
    report = (out / "report.md").read_text()
    assert report.startswith("# Hyperparameter search")
    assert "3 trials, 0 pruned" in report and f"best trial #{result['best_trial']}" in report
    for name in DEFAULT_SPACE:
        assert name in report


def test_categorical_space_draws_only_the_choices(baseline_artifacts, tmp_path):
    space = {"width": {"type": "categorical", "choices": [8, 24]}, "depth": {"type": "int", "low": 1, "high": 2}}

    result = _tune(baseline_artifacts, tmp_path, n_trials=3, search_space=space)

    assert result["best_params"]["width"] in (8, 24)
    trials = json.loads((tmp_path / "study" / "trials.json").read_text())["trials"]
    assert all(t["params"]["width"] in (8, 24) and t["params"]["depth"] in (1, 2) for t in trials)
    assert all(set(t["params"]) == {"width", "depth"} for t in trials)


def test_diverging_trials_fail_and_the_study_goes_on(baseline_artifacts, tmp_path):
    space = {"lr": {"type": "categorical", "choices": [1e12, 1e-3]}}

    result = _tune(baseline_artifacts, tmp_path, n_trials=6, search_space=space)

    trials = json.loads((tmp_path / "study" / "trials.json").read_text())["trials"]
    states = {t["params"]["lr"]: t["state"] for t in trials}
    assert states == {1e12: "FAIL", 1e-3: "COMPLETE"}
    assert result["best_params"]["lr"] == 1e-3 and result["trials"] == 6


def test_no_completed_trial_is_a_config_error_and_writes_no_artifact(baseline_artifacts, tmp_path):
    space = {"lr": {"type": "categorical", "choices": [1e12]}}
    with pytest.raises(ConfigError, match="no trial completed"):
        _tune(baseline_artifacts, tmp_path, n_trials=2, search_space=space)
    assert not (tmp_path / "study").exists() and not (tmp_path / "report.md").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".study")]


@pytest.mark.parametrize(
    ("space", "fragments"),
    [
        ({"widht": {"type": "int", "low": 8, "high": 16}}, ["'widht' is not a train parameter", "width"]),
        ({"width": {"type": "integer", "low": 8, "high": 16}}, ["search_space.width", "type must be int, float"]),
        ({"width": {"low": 8, "high": 16}}, ["search_space.width", "type must be"]),
        ({"width": 16}, ["search_space.width", "type must be"]),
        ({"lr": {"type": "float", "low": 0.1, "high": 0.1}}, ["search_space.lr", "needs low < high"]),
        ({"lr": {"type": "float", "low": 0.2, "high": 0.1}}, ["search_space.lr", "needs low < high"]),
        ({"depth": {"type": "int", "low": 1}}, ["search_space.depth", "low and high (and step) must be numbers"]),
        (
            {"dropout": {"type": "float", "low": 0.0, "high": 0.3, "lg": True}},
            ["search_space.dropout", "unknown key(s) ['lg']"],
        ),
        ({"width": {"type": "categorical", "choices": [8], "low": 1}}, ["search_space.width", "['low']"]),
        ({"width": {"type": "categorical", "choices": []}}, ["search_space.width", "choices must be a non-empty"]),
    ],
)
def test_search_space_errors_name_the_param(space, fragments):
    with pytest.raises(ConfigError) as exc:
        TuneConfig.from_dict({"search_space": space})
    for fragment in fragments:
        assert fragment in str(exc.value), (fragment, str(exc.value))


def test_non_numeric_bound_is_a_config_error():
    with pytest.raises(ConfigError, match="search_space.width"):
        TuneConfig.from_dict({"search_space": {"width": {"type": "int", "low": "8", "high": 16}}})


def test_categorical_choices_must_be_a_list():
    with pytest.raises(ConfigError, match="search_space.width"):
        TuneConfig.from_dict({"search_space": {"width": {"type": "categorical", "choices": 5}}})


def test_base_is_checked_as_a_train_config():
    with pytest.raises(ConfigError, match="unknown key\\(s\\) 'epochs'"):
        TuneConfig.from_dict({"base": {"epochs": 3}})


def test_tune_config_rejects_zero_trials():
    with pytest.raises(ConfigError, match="n_trials must be >= 1"):
        TuneConfig.from_dict({"n_trials": 0})


def test_unreachable_storage_is_a_config_error_and_writes_no_artifact(baseline_artifacts, tmp_path):
    with pytest.raises(ConfigError) as exc:
        _tune(baseline_artifacts, tmp_path, n_trials=1, storage="nosuchdb://nowhere/x")
    assert "cannot open Optuna storage 'nosuchdb://nowhere/x'" in str(exc.value)
    assert not (tmp_path / "study").exists() and not (tmp_path / "report.md").exists()


PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL_PSYCOPG2 = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _require_psycopg2() -> None:
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed; needed for PostgreSQL storage")


def _check_study_in_postgres(artifacts, tmp_path: Path, url: str) -> None:
    import optuna

    name = f"shipyard-test-{uuid.uuid4().hex[:12]}"
    try:
        result = _tune(artifacts, tmp_path, n_trials=2, storage=url, study_name=name)

        study = optuna.load_study(study_name=name, storage=PG_URL_PSYCOPG2)
        assert len(study.trials) == 2 == result["trials"]
        assert study.best_value == pytest.approx(result["best_value"])
        assert result["storage"] == url
        assert not (tmp_path / "study" / "study.db").exists()
        assert (tmp_path / "study" / "trials.json").is_file()
    finally:
        if name in optuna.get_all_study_names(storage=PG_URL_PSYCOPG2):
            optuna.delete_study(study_name=name, storage=PG_URL_PSYCOPG2)
    assert name not in optuna.get_all_study_names(storage=PG_URL_PSYCOPG2)


@pytest.mark.integration
def test_postgresql_storage_with_explicit_psycopg2_driver_holds_the_study(baseline_artifacts, tmp_path, postgres):
    _require_psycopg2()
    _check_study_in_postgres(baseline_artifacts, tmp_path, PG_URL_PSYCOPG2)


@pytest.mark.integration
def test_postgresql_storage_url_holds_the_study(baseline_artifacts, tmp_path, postgres):
    _require_psycopg2()
    _check_study_in_postgres(baseline_artifacts, tmp_path, PG_URL)


def test_shared_storage_gets_a_new_study_per_run_unless_named(baseline_artifacts, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = _tune(baseline_artifacts, tmp_path / "a", n_trials=1, storage=storage)
    second = _tune(baseline_artifacts, tmp_path / "b", n_trials=1, storage=storage)
    assert first["study_name"] != second["study_name"]
    named = [
        _tune(baseline_artifacts, tmp_path / f"n{i}", n_trials=1, storage=storage, study_name="bc") for i in range(2)
    ]
    assert named[1]["trials"] == 2, "a named study is resumed"
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    assert names == sorted([first["study_name"], second["study_name"], "bc"])


def test_storage_errors_are_one_line_without_the_password(baseline_artifacts, tmp_path):
    from shipyard import attempts
    from shipyard.errors import StorageError

    with pytest.raises(StorageError) as exc:  # port 1 refuses at once: no PostgreSQL is needed
        _tune(baseline_artifacts, tmp_path, n_trials=1, storage="postgresql://u:s3cret@127.0.0.1:1/x")
    assert not attempts.is_deterministic(exc.value), "a database that cannot be reached may come back: retry it"
    message = str(exc.value)
    assert message.startswith("tune: cannot open Optuna storage 'postgresql://u:***@127.0.0.1:1/x': ")
    assert "s3cret" not in message and "\n" not in message


# --- Optuna beside MLflow in one PostgreSQL database ----------------------------------------------

PG_DB = "postgresql://postgres@127.0.0.1:5432/shipyard"


def test_storage_and_tracking_uri_in_one_schema_are_refused():
    with pytest.raises(ConfigError) as exc:
        check_storage_apart(PG_DB, PG_DB.replace("127.0.0.1", "localhost"))
    message = str(exc.value)
    assert message.startswith(f"tune.storage {PG_DB!r} and mlflow_tracking_uri ")
    assert "alembic_version" in message and "options=-csearch_path%3Doptuna" in message


@pytest.mark.parametrize(
    ("storage", "tracking"),
    [("", PG_DB), (PG_DB, ""), (in_schema(PG_DB, "optuna"), in_schema(PG_DB, "mlflow")), (PG_DB, "http://mlflow:5000")],
)
def test_storage_apart_from_the_tracking_store_passes(storage, tracking):
    check_storage_apart(storage, tracking)


@pytest.mark.slow  # the CLI in a subprocess, twice (pipelines.preflight is tested in-process in test_preflight)
@pytest.mark.parametrize("where", [["--local", "--output", "{out}"], ["--host", "http://127.0.0.1:1"]])
def test_shipyard_run_refuses_one_schema_for_both_before_any_step(cli, tmp_path, where):
    out = tmp_path / "out"
    proc = cli(
        "run",
        "train_and_deploy",
        *[arg.format(out=out) for arg in where],
        "--set",
        f"mlflow_tracking_uri={PG_DB}",
        "--set",
        f"tune={json.dumps({'storage': PG_DB, 'n_trials': 1})}",
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"tune.storage {PG_DB!r} and mlflow_tracking_uri {PG_DB!r}" in lines[0]
    assert not out.exists(), "refused before anything ran"


@pytest.fixture
def postgres_db(scratch_postgres):
    with scratch_postgres("shipyard_optuna") as url:
        yield url


@pytest.mark.integration
def test_a_schema_holding_an_mlflow_store_is_refused_before_optuna_touches_it(
    baseline_artifacts, tmp_path, postgres_db
):
    from mlflow.tracking import MlflowClient

    MlflowClient(postgres_db).search_experiments()  # creates and migrates MLflow's store in public
    before = tables(postgres_db)
    with pytest.raises(ConfigError) as exc:
        _tune(baseline_artifacts, tmp_path, n_trials=1, storage=postgres_db)
    message = str(exc.value)
    assert message.startswith(f"tune: {postgres_db!r} is the schema public of PostgreSQL database")
    assert "holds MLflow's revision" in message and "?options=-csearch_path%3Doptuna" in message
    assert tables(postgres_db) == before, "Optuna created no table beside MLflow's"
    assert not (tmp_path / "study").exists()


@pytest.mark.integration
def test_storage_in_its_own_schema_creates_the_schema(baseline_artifacts, tmp_path, postgres_db):
    import optuna

    storage = in_schema(postgres_db, "optuna")
    result = _tune(baseline_artifacts, tmp_path, n_trials=2, storage=storage, study_name="bc")
    assert result["storage"] == storage
    assert len(optuna.load_study(study_name="bc", storage=storage).trials) == 2
    found = tables(postgres_db)
    assert set(found) == {"optuna"} and {"studies", "alembic_version"} <= found["optuna"]


@pytest.mark.integration
def test_a_schema_that_cannot_be_created_is_a_config_error(baseline_artifacts, tmp_path, postgres_db):
    import psycopg

    role = f"shipyard_no_create_{uuid.uuid4().hex[:10]}"  # may connect (trust), may not create schemas
    with psycopg.connect(postgres_db, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
    storage = in_schema(postgres_db.replace("postgres@", f"{role}@"), "optuna")
    try:
        with pytest.raises(ConfigError, match=r"^tune: cannot create schema 'optuna' for .*permission denied"):
            _tune(baseline_artifacts, tmp_path, n_trials=1, storage=storage)
    finally:
        with psycopg.connect(postgres_db, autocommit=True) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


# --- the budget and the best trial's model -------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "columns", "values", "expected"),
    [
        (400, 30, {}, {"n_trials": 12, "timeout_s": None, "base": {}}),  # small: the same trials everywhere
        (140_000, 30, {}, {"n_trials": 4, "timeout_s": 252.0}),
        (140_000, 30, {"n_trials": 40}, {"n_trials": 10}),
        (140_000, 30, {"auto_budget": False, "timeout_s": 0}, {"n_trials": 12, "timeout_s": None, "base": {}}),
        (1_000_000, 60, {}, {"n_trials": 4, "timeout_s": 1800.0}),
        (140_000, 30, {"base": {"max_epochs": 50}}, {"n_trials": 4}),
    ],
)
def test_budget_shrinks_with_the_data_size(rows, columns, values, expected):
    from components.tune_hyperparams.core import MIN_EPOCHS, budget

    plan = budget(rows, columns, TuneConfig.from_dict(values))
    assert {k: plan[k] for k in expected} == expected
    if rows * columns > 1_000_000 and values.get("auto_budget", True):
        epochs = plan["base"]["max_epochs"]
        assert epochs == values.get("base", {}).get("max_epochs", epochs) and epochs >= MIN_EPOCHS
        TrainConfig.from_dict(plan["base"])


def test_tune_writes_the_best_trial_and_train_reuses_it(baseline_artifacts, tmp_path, capfd):
    from components.train_model import core as train_core

    config = TuneConfig.from_dict({"n_trials": 2, "seed": 0, "base": BASE})
    result = tune(
        str(baseline_artifacts["train"]),
        str(baseline_artifacts["val"]),
        str(tmp_path / "study"),
        str(tmp_path / "report.md"),
        config,
        best_model_dir=str(tmp_path / "best"),
    )
    assert result["best_model"] is True
    assert "tune: trial 0 done" in capfd.readouterr().err  # one progress line per trial

    def run(params: dict, name: str) -> dict:
        return train_core.train(
            str(baseline_artifacts["train"]),
            str(baseline_artifacts["val"]),
            str(tmp_path / name),
            str(tmp_path / f"{name}-baseline"),
            TrainConfig.from_dict({**params, "candidate": "mlp", "families": ["mlp"]}),
            tuned_dir=str(tmp_path / "best"),
        )

    reused = run(result["best_params"], "reused")
    err = capfd.readouterr().err
    assert "mlp reused from tuning" in err and reused["table"]["mlp"]["reused"] is True
    assert reused["table"]["mlp"]["val_loss"] == pytest.approx(result["best_value"], rel=1e-6)
    assert reused["epochs"] == read_model_manifest(tmp_path / "best").details["training"]["epochs"]

    retrained = run({**result["best_params"], "dropout": 0.3}, "retrained")
    assert "not reused: its data, parameters or device differ" in capfd.readouterr().err
    assert retrained["table"]["mlp"]["reused"] is False
