"""Connections to PostgreSQL, with errors an operator can act on.

Identifiers are composed with :mod:`psycopg2.sql`, never formatted in; values are passed as parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from .config import DatabaseConfig
from .errors import DatabaseError


def explain_connect_error(exc: psycopg2.OperationalError, params: dict[str, Any]) -> str:
    """One line saying why a connection failed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    where = f"{params.get('host', 'local socket')}:{params.get('port')}"
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return f"database server {where} refused the credentials of user {params.get('user')!r}"
    if "does not exist" in lowered and "database" in lowered:
        return f"database {params.get('dbname')!r} does not exist on {where}"
    return f"cannot reach database server {where}: {text}"


@contextmanager
def connect(
    cfg: DatabaseConfig, dbname: str | None = None, autocommit: bool = True
) -> Iterator[psycopg2.extensions.connection]:
    """A connection to *dbname* (default: the configured database), closed on exit."""
    params = cfg.connect_params(dbname)
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.OperationalError as exc:
        raise DatabaseError(explain_connect_error(exc, params)) from exc
    try:
        conn.autocommit = autocommit
        yield conn
    finally:
        conn.close()


def maintenance(cfg: DatabaseConfig) -> Any:
    """A connection to the maintenance database, for CREATE/ALTER/DROP DATABASE."""
    return connect(cfg, cfg.maintenance_db)


def database_exists(conn: psycopg2.extensions.connection, name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cur.fetchone() is not None


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)
