"""The databases a restore kept aside (``<db>__failed_<time>``): they hold disk until someone drops them."""

from __future__ import annotations

from typing import Any

from .config import DatabaseConfig
from .db import maintenance


def kept_databases(cfg: DatabaseConfig) -> list[dict[str, Any]]:
    """Name and size of every database a restore of *cfg*'s database kept aside, oldest first."""
    # LIKE treats "_" and "%" in the database's own name as wildcards: escape them.
    escaped = "".join("\\" + char if char in "\\_%" else char for char in cfg.name)
    with maintenance(cfg) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname LIKE %s ORDER BY datname",
            (escaped + "\\_\\_failed\\_%",),
        )
        return [{"name": name, "size": int(size)} for name, size in cur.fetchall()]
