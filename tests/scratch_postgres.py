"""Scratch PostgreSQL databases for the integration tests: one per use, dropped afterwards.

PostgreSQL is expected on 127.0.0.1:5432 (user postgres, trust auth, an admin database ``test``);
where it does not answer, or psycopg (v3) is missing, the test using it is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from conftest import postgres_available

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """Creates a uniquely named database and yields its URL; drops it (and its sessions) afterwards."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not answering on 127.0.0.1:5432")
    psycopg = pytest.importorskip("psycopg", reason="psycopg (v3) is not installed")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables(url: str) -> dict[str, set[str]]:
    """``{schema: {table, ...}}`` of the user tables in the database at ``url``."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    out: dict[str, set[str]] = {}
    for schema, table in rows:
        out.setdefault(schema, set()).add(table)
    return out


def alembic_version(url: str, schema: str) -> list[str]:
    """The revisions in ``schema.alembic_version``."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url) as conn:
        query = sql.SQL("SELECT version_num FROM {}.alembic_version").format(sql.Identifier(schema))
        return [row[0] for row in conn.execute(query).fetchall()]


def in_schema(url: str, schema: str) -> str:
    """``url`` with libpq options that make ``schema`` the search_path (so the default schema)."""
    return f"{url}?options=-csearch_path%3D{schema}"
