"""Rows of the tracked tables created or changed in the live database after a snapshot was taken.

They are what a restore would lose. Odoo stamps every row with create_date and write_date (UTC,
without time zone), which is what is compared with the snapshot's time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from psycopg2 import sql

STAMP_COLUMNS = ("create_date", "write_date")


def _stamped_tables(conn: Any, tables: list[str]) -> dict[str, list[str]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, array_agg(column_name::text) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = ANY(%s) AND column_name = ANY(%s) GROUP BY table_name",
            (tables, list(STAMP_COLUMNS)),
        )
        return {name: sorted(columns) for name, columns in cur.fetchall()}


def _changed_since(table: str, columns: list[str]) -> sql.Composed:
    condition = sql.SQL(" OR ").join(
        sql.SQL("{} > %(since)s::timestamptz AT TIME ZONE 'UTC'").format(sql.Identifier(c)) for c in columns
    )
    return sql.SQL("FROM {} WHERE {}").format(sql.Identifier(table), condition)


def count_changed_rows(conn: Any, tables: list[str] | tuple[str, ...], since_iso: str) -> dict[str, int]:
    """{table: rows created or written after *since_iso*} for the tables that exist and are stamped."""
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        for table, columns in sorted(_stamped_tables(conn, list(tables)).items()):
            cur.execute(sql.SQL("SELECT count(*) ") + _changed_since(table, columns), {"since": since_iso})
            counts[table] = int(cur.fetchone()[0])
    return counts


def export_changed_rows(conn: Any, tables: list[str] | tuple[str, ...], since_iso: str, target: Path) -> dict[str, int]:
    """Write every such row as one JSON line ``{"table", "row"}`` to *target*; returns the counts."""
    counts: dict[str, int] = {}
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as out, conn.cursor() as cur:
        for table, columns in sorted(_stamped_tables(conn, list(tables)).items()):
            query = sql.SQL("SELECT row_to_json(t) FROM (SELECT * ") + _changed_since(table, columns) + sql.SQL(") t")
            cur.execute(query, {"since": since_iso})
            counts[table] = 0
            for (row,) in cur:
                out.write(json.dumps({"table": table, "row": row}, sort_keys=True, default=str) + "\n")
                counts[table] += 1
    return counts
