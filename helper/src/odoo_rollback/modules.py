"""Installed Odoo modules and their versions, read from ir_module_module (never through Odoo)."""

from __future__ import annotations

from typing import Any


def installed_modules(conn: Any) -> dict[str, str]:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.ir_module_module') IS NOT NULL")
        if not cur.fetchone()[0]:
            return {}
        cur.execute(
            "SELECT name, coalesce(latest_version, '') FROM ir_module_module "
            "WHERE state IN ('installed', 'to upgrade') ORDER BY name"
        )
        return dict(cur.fetchall())


def server_version(conn: Any) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        return str(cur.fetchone()[0])


def database_size(conn: Any, name: str) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_database_size(%s)", (name,))
        return int(cur.fetchone()[0])
