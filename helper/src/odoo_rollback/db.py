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
from .errors import DatabaseError, OperationFailed, RollbackError


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


# The sessions on a database, with whether this connection's role may end each one. PostgreSQL lets a
# role that is not a superuser end only the sessions of a role whose privileges it has (or with
# pg_signal_backend), and never a superuser's. A process with no role (an autovacuum worker) is left
# out: PostgreSQL 15 treats it as a superuser's, and ends it itself when DROP or RENAME needs the
# database.
_SESSIONS = """
SELECT a.pid, a.usename, a.application_name,
       me.rolsuper OR (NOT r.rolsuper AND (pg_has_role(a.usesysid, 'USAGE')
                                          OR pg_has_role('pg_signal_backend', 'USAGE'))) AS may_end
  FROM pg_stat_activity a
  JOIN pg_roles r ON r.oid = a.usesysid
  JOIN pg_roles me ON me.rolname = current_user
 WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND a.pid IS DISTINCT FROM %s
"""


def _sessions(conn: psycopg2.extensions.connection, dbname: str, keep_pid: int | None) -> list[tuple[int, str, bool]]:
    with conn.cursor() as cur:
        cur.execute(_SESSIONS, (dbname, keep_pid))
        return [(pid, f"{pid} ({user}, {app or 'no application name'})", may) for pid, user, app, may in cur.fetchall()]


def sessions_in_reach(
    conn: psycopg2.extensions.connection,
    dbname: str,
    keep_pid: int | None = None,
    error: type[RollbackError] = OperationFailed,
) -> list[int]:
    """The pids of the sessions on *dbname* (but this connection's and *keep_pid*), all of which
    this connection's role may end; *error* names those it may not (a superuser's psql, say)."""
    sessions = _sessions(conn, dbname, keep_pid)
    beyond = [label for _pid, label, may in sessions if not may]
    if beyond:
        raise error(
            f"sessions on database {dbname} that the helper's role may not end: {', '.join(beyond)};"
            " close them, or run the helper as a role that may end them"
        )
    return [pid for pid, _label, _may in sessions]


def end_sessions(conn: psycopg2.extensions.connection, dbname: str, keep_pid: int | None = None) -> list[int]:
    """End the sessions on *dbname*, but this connection's and *keep_pid*; the pids ended. Nothing
    is ended when one is out of reach: the rename or drop that follows would fail on it anyway."""
    pids = sessions_in_reach(conn, dbname, keep_pid)
    if pids:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) pid", (pids,))
    return pids
