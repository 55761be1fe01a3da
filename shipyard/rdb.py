"""SQL databases that hold an MLflow tracking store or an Optuna storage, and where the two collide.

MLflow and Optuna both create and migrate their tables with alembic, and alembic records a schema's
revision in one table, ``alembic_version``. Two such applications in one PostgreSQL schema (one
MySQL database, one SQLite file) share that table: the second to start finds the first one's
revision and fails (``Can't locate revision identified by 'v3.2.0.a'``), after creating some of its
tables beside the other's. One PostgreSQL database can hold both when each has its own schema,
named by the URL's ``options`` (``...?options=-csearch_path%3Dmlflow``); :func:`prepare` creates
that schema when it is missing. Only this module looks inside the databases; the libraries still
open them themselves.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from shipyard.errors import ConfigError

#: URL schemes (before any ``+driver``) of the SQLAlchemy databases MLflow and Optuna accept.
DATABASE_SCHEMES = ("postgresql", "mysql", "mariadb", "mssql", "sqlite")
#: What each backend calls the namespace alembic keeps one ``alembic_version`` in.
_KIND = {"postgresql": "PostgreSQL", "mysql": "MySQL", "mariadb": "MySQL", "mssql": "SQL Server", "sqlite": "SQLite"}
_LOOPBACK = {"", "localhost", "127.0.0.1", "::1"}
_DEFAULT_PORT = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}
#: ``-c search_path=...``, ``-csearch_path=...`` or ``--search_path=...`` in libpq's ``options``.
_SEARCH_PATH = re.compile(r"(?:-c\s*|--)search_path\s*=\s*(\"[^\"]*\"|[^\s,]+)")


@dataclasses.dataclass(frozen=True)
class Place:
    """Where a database URL keeps its tables, as far as the URL itself says.

    Attributes:
        backend: ``postgresql``, ``mysql``, ``mssql`` or ``sqlite`` (``mariadb`` counts as ``mysql``).
        server: ``host:port`` with the loopback names folded into ``localhost``; empty for SQLite.
        database: The database name, or the SQLite file's absolute path.
        schema: PostgreSQL: the first schema of the URL's ``search_path`` option; ``None`` when
            the URL names none (the server's default, normally ``public``).
    """

    backend: str
    server: str
    database: str
    schema: str | None = None

    def describe(self) -> str:
        """The place in words, e.g. ``schema public of PostgreSQL database 'shipyard'``."""
        if self.backend == "sqlite":
            return f"SQLite file {self.database}"
        if self.backend == "postgresql":
            return f"schema {self.schema or 'public'} of PostgreSQL database {self.database!r}"
        return f"{_KIND[self.backend]} database {self.database!r}"


def backend_of(uri: str) -> str | None:
    """The database backend a URI names (``postgresql+psycopg2://`` → ``postgresql``), else None."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if ":" in uri else ""
    if scheme == "mariadb":
        return "mysql"
    return scheme if scheme in DATABASE_SCHEMES else None


def redact(uri: str) -> str:
    """The URI without its password (for messages and files)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def search_path_schema(options: str) -> str | None:
    """The first schema of the ``search_path`` set in a libpq ``options`` string, else None.

    Unquoted names are folded to lower case and ``"$user"`` counts as none, as PostgreSQL does.
    """
    found = _SEARCH_PATH.search(options)
    if found is None:
        return None
    name = found.group(1)
    if name.startswith('"'):
        name = name[1:-1]
    else:
        name = name.lower()
    return None if name in ("", "$user") else name


def place(uri: str) -> Place | None:
    """Where ``uri`` keeps its tables; None for a URI that is not a SQL database (``http://``...)
    or is an in-memory SQLite database.

    Raises:
        ConfigError: A database URI SQLAlchemy cannot parse.
    """
    backend = backend_of(uri)
    if backend is None:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(uri)
    except ArgumentError as exc:
        raise ConfigError(f"database URI {redact(uri)!r} cannot be parsed: {exc}") from exc
    if backend == "sqlite":
        path = url.database or ""
        if path in ("", ":memory:"):
            return None  # an in-memory database is private to its connection
        return Place("sqlite", "", str(Path(path).expanduser().resolve()))
    host = (url.host or "").lower()
    port = url.port or _DEFAULT_PORT.get(backend, 0)
    server = f"{'localhost' if host in _LOOPBACK else host}:{port}"
    schema = None
    if backend == "postgresql":
        options = url.query.get("options", "")
        schema = search_path_schema(" ".join(options) if isinstance(options, tuple) else options)
    return Place(backend, server, url.database or "", schema)


def check_apart(optuna_storage: str, mlflow_uri: str, optuna_field: str, mlflow_field: str) -> None:
    """Refuses an Optuna storage and an MLflow tracking store in the same database namespace.

    Judged from the URLs alone (nothing is opened), so it can run before a pipeline is submitted.
    A PostgreSQL URL that names no schema counts as naming ``public``, the server's default.

    Args:
        optuna_storage: The Optuna storage URL.
        mlflow_uri: The MLflow tracking URI.
        optuna_field: How the caller names the storage setting (for the message).
        mlflow_field: How the caller names the tracking URI setting (for the message).

    Raises:
        ConfigError: Both name the same PostgreSQL schema, MySQL database or SQLite file.
    """
    a, b = place(optuna_storage), place(mlflow_uri)
    if a is None or b is None:
        return
    if a.backend == b.backend == "postgresql":  # no schema named: the server's default, public
        a, b = (dataclasses.replace(p, schema=p.schema or "public") for p in (a, b))
    if a != b:
        return
    if a.backend == "postgresql":
        fix = (
            "give each its own schema, e.g. add ?options=-csearch_path%3Doptuna to the first and "
            "?options=-csearch_path%3Dmlflow to the second (Shipyard creates missing schemas), or use two databases"
        )
    else:
        fix = "use a separate database for each"
    raise ConfigError(
        f"{optuna_field} {redact(optuna_storage)!r} and {mlflow_field} {redact(mlflow_uri)!r} are the same "
        f"{a.describe()}: Optuna and MLflow both record their alembic revision in its alembic_version table, "
        f'so the second to start fails ("Can\'t locate revision"); {fix}'
    )


@functools.cache
def revisions(owner: str) -> frozenset[str]:
    """Every alembic revision the installed MLflow or Optuna knows (``owner``: ``mlflow``/``optuna``)."""
    from alembic.script import ScriptDirectory

    if owner == "mlflow":
        import mlflow.store.db_migrations as migrations

        location = os.path.dirname(migrations.__file__)
    elif owner == "optuna":
        import optuna.storages._rdb as rdb

        location = os.path.join(os.path.dirname(rdb.__file__), "alembic")
    else:
        raise ValueError(f"unknown alembic owner {owner!r}")
    return frozenset(script.revision for script in ScriptDirectory(location).walk_revisions())


_NAMES = {"mlflow": "MLflow", "optuna": "Optuna"}


def prepare(uri: str, owner: str, label: str) -> None:
    """Readies a database for MLflow or Optuna and refuses one another alembic user holds.

    Creates the PostgreSQL schema the URL's ``search_path`` names when it does not exist, then
    reads the namespace's ``alembic_version``: a revision ``owner`` does not know means another
    application (Optuna's storage, MLflow's store) already lives there. Does nothing for a URI
    that is not a SQL database, or a SQLite file that does not exist yet.

    Args:
        uri: The database URL, as it will be given to the library.
        owner: ``mlflow`` or ``optuna``: the library about to open the database.
        label: The message prefix (``tune``, ``mlflow``).

    Raises:
        ConfigError: The schema cannot be created, or the namespace's ``alembic_version`` holds
            another application's revision.
        sqlalchemy.exc.OperationalError: The database cannot be reached (maybe for a while).
    """
    where = place(uri)
    if where is None or where.backend == "sqlite" and not Path(where.database).is_file():
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(uri)
    try:
        with engine.connect() as conn:
            if where.backend == "postgresql":
                _ensure_schema(conn, where, uri, label)
            found = _alembic_revisions(conn)
    finally:
        engine.dispose()
    foreign = sorted(found - revisions(owner))
    if not foreign:
        return
    other = next((name for key, name in _NAMES.items() if key != owner and foreign[0] in revisions(key)), None)
    holder = f"{other}'s revision {foreign[0]!r}: {other}" if other else f"revision {foreign[0]!r}: another application"
    hint = (
        f"give {_NAMES[owner]} its own schema (?options=-csearch_path%3D{owner}) or database"
        if where.backend == "postgresql"
        else f"give {_NAMES[owner]} its own database"
    )
    raise ConfigError(
        f"{label}: {redact(uri)!r} is the {where.describe()}, whose alembic_version holds {holder} keeps its "
        f"tables there and {_NAMES[owner]} cannot share them; {hint}"
    )


def is_unreachable(exc: BaseException) -> bool:
    """Whether a database error means the server could not be reached or the connection was lost
    (SQLAlchemy's ``OperationalError``/``InterfaceError``, e.g. connection refused, a restart),
    which may pass, rather than a bad URL, a missing permission or a bad statement."""
    try:
        from sqlalchemy.exc import InterfaceError, OperationalError
    except ImportError:  # pragma: no cover - sqlalchemy comes with optuna and mlflow
        return False
    return isinstance(exc, (OperationalError, InterfaceError))


def _ensure_schema(conn: Any, where: Place, uri: str, label: str) -> None:
    """Creates the URL's first search_path schema when it is missing.

    Without it PostgreSQL would create the tables in the next schema of the path that exists
    (``-csearch_path=mlflow,public``: in ``public``), or refuse to create any.
    """
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    current = conn.execute(text("SELECT current_schema()")).scalar()
    if where.schema is None:
        if current is None:
            raise ConfigError(f"{label}: {redact(uri)!r}: no schema of the search_path exists in {where.database!r}")
        return
    if current == where.schema:
        return
    try:
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {conn.dialect.identifier_preparer.quote(where.schema)}"))
        conn.commit()
    except DBAPIError as exc:
        if is_unreachable(exc):  # the connection was lost: not the user's configuration
            raise
        cause = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise ConfigError(f"{label}: cannot create schema {where.schema!r} for {redact(uri)!r}: {cause}") from exc


def _alembic_revisions(conn: Any) -> frozenset[str]:
    """The revisions in the connection's default schema's ``alembic_version`` (empty when none)."""
    import sqlalchemy

    if not sqlalchemy.inspect(conn).has_table("alembic_version"):
        return frozenset()
    return frozenset(str(row[0]) for row in conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")))
