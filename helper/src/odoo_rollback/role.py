"""What the helper's database role may do, checked before it is needed.

A superuser may do everything. Any other role needs, for what the helper does:

- to read every table and sequence of the live database: ``pg_dump``, the exact counts and the module
  versions of a snapshot;
- ``CREATEDB``, and membership of the live database's owner role, to make a database owned as the live
  one is: staging, a warm standby, a drill's or a deep verify's scratch copy, a copy.

``REPLICATION`` is not required: without it a snapshot captures changes in the fallback mode, which
``health`` reports (see :mod:`odoo_rollback.capture`). Each error says what to grant.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from .config import DatabaseConfig
from .db import connect, maintenance
from .errors import PreconditionError

# Relations pg_dump reads: tables, partitioned tables, materialized views, sequences.
_UNREADABLE = """
SELECT format('%I.%I', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm', 'S')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
   AND NOT has_table_privilege(c.oid, 'SELECT')
 ORDER BY 1
"""
SHOWN = 5  # names in an error; the rest are counted
ROLE_CHECK = "database role"  # health's check of these grants


def _role(conn: Any) -> tuple[str, bool, bool]:
    with conn.cursor() as cur:
        cur.execute("SELECT rolname, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        name, superuser, createdb = cur.fetchone()
    return name, bool(superuser), bool(createdb)


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def reading_problems(db_cfg: DatabaseConfig) -> list[str]:
    """Why this role cannot read the whole live database (empty when it can)."""
    with connect(db_cfg) as conn, conn.cursor() as cur:
        role, superuser, _createdb = _role(conn)
        if superuser:
            return []
        cur.execute(_UNREADABLE)
        unreadable = [row[0] for row in cur.fetchall()]
        if not unreadable:
            return []
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
        grant = _grant(conn, cur.fetchone()[0], role)
    return [f"role {role} cannot read {_listed(unreadable)} of database {db_cfg.name} ({grant}, or grant SELECT)"]


def creating_problems(db_cfg: DatabaseConfig, owner: str | None) -> list[str]:
    """Why this role cannot make a database owned by *owner* (empty when it can)."""
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        role, superuser, createdb = _role(conn)
        if superuser:
            return []
        problems = []
        if not createdb:
            alter = sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(role)).as_string(conn)
            problems.append(f"role {role} may not create databases ({alter})")
        if owner:
            cur.execute("SELECT pg_has_role(%s, 'MEMBER')", (owner,))
            if not cur.fetchone()[0]:
                grant = _grant(conn, owner, role)
                problems.append(f"role {role} is not a member of {owner}, who owns database {db_cfg.name} ({grant})")
        return problems


def _grant(conn: Any, granted: str, to: str) -> str:
    return str(sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), sql.Identifier(to)).as_string(conn))


def require(what: str, problems: list[str]) -> None:
    """Refuse *what*, before anything is done, for the *problems* of this role."""
    if problems:
        raise PreconditionError(f"the helper cannot {what}: {'; '.join(problems)}")


def role_check(db_cfg: DatabaseConfig, owner: str | None) -> dict[str, Any]:
    """For ``health``: whether this role may snapshot and restore the live database."""
    problems = reading_problems(db_cfg) + creating_problems(db_cfg, owner)
    if problems:
        return {"name": ROLE_CHECK, "ok": False, "detail": "; ".join(problems)}
    return {"name": ROLE_CHECK, "ok": True, "detail": "may read the database and make its copies"}
