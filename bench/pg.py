"""The benchmarks' PostgreSQL connection (from the environment, as the tests' is) and small statements."""

from __future__ import annotations

import os
from typing import Any

import psycopg2
from psycopg2 import sql


def connection_info() -> dict[str, str]:
    """PGHOST (127.0.0.1 by default), PGPORT, PGUSER, PGPASSWORD: make bench-* set them from test.env."""
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": os.environ.get("PGPORT", "5432"),
        "user": os.environ["PGUSER"],
        "password": os.environ["PGPASSWORD"],
    }


def execute(conninfo: dict[str, str], dbname: str, statement: Any, params: Any = None) -> list[tuple[Any, ...]]:
    """One statement in autocommit (VACUUM and CREATE DATABASE need it); its rows, if any."""
    conn = psycopg2.connect(dbname=dbname, **conninfo)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def drop_with_copies(conninfo: dict[str, str], dbname: str) -> None:
    """Drop *dbname* and the databases a restore made beside it (``<db>__...``, their slots with them)."""
    for (name,) in execute(conninfo, "postgres", "SELECT datname FROM pg_database"):
        if name == dbname or name.startswith(f"{dbname}__"):
            execute(conninfo, "postgres", sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
