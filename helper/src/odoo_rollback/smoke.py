"""Smoke checks after a deployment or a restore.

Minimal version for the deploy branch: the full ``smoke`` (its own branch) replaces this file at the
merge, keeping the signature and the shape of the report that ``deploy`` relies on.
"""

from __future__ import annotations

from typing import Any

from .config import Config
from .counts import exact_counts
from .db import connect
from .errors import RollbackError
from .health import http_check


def smoke_report(cfg: Config, snapshot_counts: dict[str, int | None] | None = None) -> dict[str, Any]:
    """{"ok": bool, "checks": [{"name", "ok", "detail"}]}: the login page answers, and no tracked table
    has fewer rows than *snapshot_counts* (a deployment must not lose records)."""
    checks: list[dict[str, Any]] = []
    if cfg.health.url:
        result = http_check(cfg.health, attempts=1)
        checks.append(
            {"name": "login page", "ok": result.ok, "detail": f"{result.url}: {result.status or result.error}"}
        )
    if snapshot_counts:
        try:
            with connect(cfg.database) as conn:
                live = exact_counts(conn, list(snapshot_counts))
        except RollbackError as exc:
            checks.append({"name": "record counts", "ok": False, "detail": str(exc)})
        else:
            for table, before in sorted(snapshot_counts.items()):
                now = live.get(table)
                ok = before is None or (now is not None and now >= before)
                checks.append({"name": f"count {table}", "ok": ok, "detail": f"{now} rows, {before} before"})
    return {"ok": all(c["ok"] for c in checks), "checks": checks}
