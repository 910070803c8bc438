"""Exact row counts of the tracked tables."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql


def existing_tables(conn: Any, tables: tuple[str, ...] | list[str]) -> set[str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY(%s)",
            (list(tables),),
        )
        return {row[0] for row in cur.fetchall()}


def counts_in_transaction(conn: Any, tables: tuple[str, ...] | list[str]) -> dict[str, int | None]:
    """{table: exact count} read in the connection's current transaction (absent tables: None)."""
    present = existing_tables(conn, tables)
    counts: dict[str, int | None] = {}
    with conn.cursor() as cur:
        for table in tables:
            if table not in present:
                counts[table] = None
                continue
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            counts[table] = int(cur.fetchone()[0])
    return counts


def exact_counts(conn: Any, tables: tuple[str, ...] | list[str]) -> dict[str, int | None]:
    """{table: exact count}; a table that does not exist maps to None (absent, not an error).

    The counts are read in one REPEATABLE READ transaction, so they describe one moment.
    """
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        counts = counts_in_transaction(conn, tables)
        conn.rollback()
    finally:
        conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT")
        conn.autocommit = autocommit
    return counts
