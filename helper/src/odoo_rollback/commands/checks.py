"""health: is the deployment up? smoke: does Odoo work? Both usable from monitoring; exit 1 when not."""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from ..config import Config
from ..db import connect
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, RollbackError
from ..health import http_check
from ..journal import Journal
from ..kept import list_kept, select_droppable
from ..output import Output, human_size, table
from ..services import backend_for
from ..smoke import check_smoke_config, smoke_report
from ..storage import SnapshotStore


def storage_check(cfg: Config) -> dict[str, Any]:
    """Free disk in the storage, against what the next snapshot will need (the newest one's size + margin),
    and what the snapshots and the databases kept beside the live one take."""
    storage = cfg.storage.path if cfg.storage.path.exists() else cfg.storage.path.parent
    if not storage.exists():
        return {"name": "storage", "ok": False, "detail": f"{cfg.storage.path} does not exist"}
    free = shutil.disk_usage(storage).free
    snapshots = SnapshotStore(cfg.storage).list()
    detail = f"{free // 2**20} MiB free in {storage}; snapshots {human_size(sum(s.manifest.size for s in snapshots))}"
    try:
        kept = list_kept(cfg, Journal(cfg.storage.journal_path))
        detail += f", {len(kept)} kept database(s) and filestore(s) {human_size(sum(i.size for i in kept))}"
    except RollbackError:
        kept = []  # the database check says why the server cannot be reached
        detail += ", kept databases not counted (no database server)"
    overdue = select_droppable(kept, cfg.retention.kept)
    ok = free > 0
    if snapshots:
        # Monitoring should say so before a deploy is refused for lack of room for its snapshot.
        needed = int(snapshots[0].manifest.size * (1 + cfg.storage.free_space_margin))
        ok = free >= needed
        detail += f"; the next snapshot needs about {needed // 2**20} MiB" + ("" if ok else ": too little")
    if overdue:
        ok = False
        names = ", ".join(i.name for i in overdue)
        detail += f"; {len(overdue)} kept beyond retention ({names}): run 'odoo-rollback prune'"
    return {"name": "storage", "ok": ok, "detail": detail}


def health_report(cfg: Config) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    try:
        with connect(cfg.database) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        checks.append({"name": "database", "ok": True, "detail": cfg.database.name})
    except RollbackError as exc:
        checks.append({"name": "database", "ok": False, "detail": str(exc)})
    try:
        states = backend_for(cfg.services).status()
        for service, state in states.items():
            checks.append({"name": f"service {service}", "ok": state in ("running", "active"), "detail": state})
    except RollbackError as exc:
        checks.append({"name": "services", "ok": False, "detail": str(exc)})
    if cfg.health.url:
        result = http_check(cfg.health, attempts=1)
        slow = result.ok and result.seconds > cfg.health.max_response_seconds
        checks.append(
            {
                "name": "http",
                "ok": result.ok and not slow,
                "detail": f"{result.url}: {result.status or result.error} in {result.seconds:.2f} s"
                + (f" (over {cfg.health.max_response_seconds} s)" if slow else ""),
            }
        )
    checks.append(storage_check(cfg))
    return {"ok": all(c["ok"] for c in checks), "checks": checks}


def emit_checks(out: Output, report: dict[str, Any], passed: str, failed: str) -> int:
    """Print a ``{"ok", "checks"}`` report as a table (or JSON); exit status 1 when a check failed."""

    def human(doc: dict[str, Any]) -> str:
        rows = [(c["name"], "ok" if c["ok"] else "FAIL", c["detail"]) for c in doc["checks"]]
        return table(["check", "state", "detail"], rows) + "\n" + (passed if doc["ok"] else failed)

    out.emit(report, human)
    return EXIT_OK if report["ok"] else EXIT_CHECK_FAILED


def health(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    return emit_checks(out, health_report(cfg), "healthy", "UNHEALTHY")


def smoke(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    # A configuration problem is the operator's to fix (exit 2), not a failed check.
    check_smoke_config(cfg)
    return emit_checks(out, smoke_report(cfg), "smoke passed", "SMOKE FAILED")
