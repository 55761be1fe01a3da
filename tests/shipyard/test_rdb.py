"""shipyard.rdb: where a database URL keeps its tables, and refusing MLflow and Optuna in one namespace."""

from __future__ import annotations

import pytest

from shipyard import rdb
from shipyard.errors import ConfigError

PG = "postgresql://postgres@127.0.0.1:5432/shipyard"
HERE = ("postgresql", "localhost:5432", "shipyard")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (PG, rdb.Place(*HERE)),
        ("postgresql+psycopg2://u:pw@LOCALHOST/shipyard", rdb.Place(*HERE)),
        ("postgresql://db.internal:6543/x", rdb.Place("postgresql", "db.internal:6543", "x")),
        (f"{PG}?options=-csearch_path%3Dmlflow", rdb.Place(*HERE, "mlflow")),
        (
            f"{PG}?options=-c%20search_path%3DOptuna,public",
            rdb.Place(*HERE, "optuna"),
        ),
        (f'{PG}?options=--search_path%3D"Mixed"', rdb.Place(*HERE, "Mixed")),
        (f"{PG}?options=-c%20statement_timeout%3D5000", rdb.Place(*HERE)),
        (f'{PG}?options=-csearch_path%3D"$user",public', rdb.Place(*HERE)),
        ("mysql+pymysql://u@127.0.0.1/reg", rdb.Place("mysql", "localhost:3306", "reg")),
        ("http://mlflow:5000", None),
        ("gs://bucket/x", None),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
    ],
)
def test_place_reads_backend_server_database_and_schema(uri, expected):
    assert rdb.place(uri) == expected


def test_sqlite_place_is_the_resolved_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert rdb.place("sqlite:///sub/../x.db") == rdb.Place("sqlite", "", str(tmp_path.resolve() / "x.db"))
    assert rdb.place(f"sqlite:///{tmp_path}/x.db") == rdb.place("sqlite:///x.db")


def test_redact_hides_only_the_password():
    assert rdb.redact("postgresql://u:s3cret@h/db?options=x") == "postgresql://u:***@h/db?options=x"
    assert rdb.redact(PG) == PG


def test_same_postgres_schema_is_refused_naming_both_uris_and_why():
    with pytest.raises(ConfigError) as exc:
        rdb.check_apart(
            "postgresql://optuna:pw@localhost/shipyard", PG, optuna_field="tune.storage", mlflow_field="tracking"
        )
    message = str(exc.value)
    assert "\n" not in message
    assert "tune.storage 'postgresql://optuna:***@localhost/shipyard'" in message and "pw" not in message
    assert f"tracking {PG!r}" in message
    assert "schema public of PostgreSQL database 'shipyard'" in message
    assert "alembic_version" in message and "options=-csearch_path%3Doptuna" in message


def test_same_named_schema_is_refused_too():
    uri = f"{PG}?options=-csearch_path%3Dshared"
    with pytest.raises(ConfigError, match="schema shared of PostgreSQL database"):
        rdb.check_apart(uri, uri.replace("127.0.0.1", "localhost"), "a", "b")


def test_no_schema_and_an_explicit_public_are_the_same_schema():
    with pytest.raises(ConfigError, match="schema public of PostgreSQL database"):
        rdb.check_apart(PG, f"{PG}?options=-csearch_path%3Dpublic", "a", "b")


@pytest.mark.parametrize(
    ("storage", "tracking"),
    [
        (f"{PG}?options=-csearch_path%3Doptuna", f"{PG}?options=-csearch_path%3Dmlflow"),
        (f"{PG}?options=-csearch_path%3Doptuna", PG),
        (PG, PG.replace("/shipyard", "/mlflow")),
        (PG, PG.replace("127.0.0.1", "db.internal")),
        (PG, "http://mlflow:5000"),
        ("sqlite:///a.db", "sqlite:///b.db"),
    ],
)
def test_separate_namespaces_pass(storage, tracking):
    rdb.check_apart(storage, tracking, "a", "b")


def test_same_sqlite_file_is_refused_with_a_database_hint(tmp_path):
    uri = f"sqlite:///{tmp_path}/both.db"
    with pytest.raises(ConfigError, match=r"same SQLite file .*both\.db: .*use a separate database for each"):
        rdb.check_apart(uri, uri, "a", "b")


def test_revision_sets_are_the_libraries_own():
    optuna, mlflow = rdb.revisions("optuna"), rdb.revisions("mlflow")
    assert "v3.2.0.a" in optuna  # the revision of the "Can't locate revision" error
    assert len(mlflow) > 10 and not optuna & mlflow
    with pytest.raises(ValueError, match="unknown alembic owner"):
        rdb.revisions("airflow")


@pytest.mark.slow
def test_prepare_refuses_a_sqlite_file_the_other_library_holds(tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient

    optuna_db, mlflow_db = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    optuna.create_study(storage=optuna_db)
    MlflowClient(mlflow_db).search_experiments()  # creates and migrates the store
    rdb.prepare(optuna_db, "optuna", "tune")
    rdb.prepare(mlflow_db, "mlflow", "mlflow")
    with pytest.raises(ConfigError, match=r"^mlflow: .* alembic_version holds Optuna's revision 'v3\.2\.0\.a'"):
        rdb.prepare(optuna_db, "mlflow", "mlflow")
    with pytest.raises(ConfigError, match=r"^tune: .* holds MLflow's revision '[0-9a-f]+': MLflow keeps its tables"):
        rdb.prepare(mlflow_db, "optuna", "tune")


def test_prepare_leaves_a_missing_sqlite_file_and_non_databases_alone(tmp_path):
    rdb.prepare(f"sqlite:///{tmp_path}/new.db", "mlflow", "mlflow")
    rdb.prepare("http://127.0.0.1:1", "mlflow", "mlflow")
    assert not (tmp_path / "new.db").exists()


@pytest.mark.integration
def test_prepare_creates_the_first_schema_of_the_path_even_when_a_later_one_exists(scratch_postgres):
    import sqlalchemy
    from scratch_postgres import tables

    with scratch_postgres("shipyard_rdb") as db:
        uri = f"{db}?options=-csearch_path%3DFirst,public"  # unquoted: PostgreSQL folds it to first
        rdb.prepare(uri, "optuna", "tune")
        rdb.prepare(uri, "optuna", "tune")  # already there: nothing to do
        engine = sqlalchemy.create_engine(uri)
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT current_schema()")).scalar() == "first"
        engine.dispose()
        assert tables(db) == {}
