"""Rollback drills: a real restore into a scratch database, timed against the RTO.

It never touches the live database, its filestore or the services. The scratch database is neutralized
(``[neutralize] addons_path``) unless ``--no-neutralize`` is given.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from .config import Config
from .counts import exact_counts
from .db import connect
from .dump import drop_database, restore_dump
from .errors import RollbackError
from .journal import DONE, FAILED, Journal
from .modules import installed_modules
from .neutralize import neutralize_database
from .restore import check_snapshot_database, rto_assessment
from .storage import Snapshot
from .verify import check_integrity, compare_counts, scratch_name


def sql_smoke_checks(conn: Any) -> list[str]:
    """What a running Odoo needs first from its database, checked without Odoo."""
    problems = []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT to_regclass('public.res_users') IS NOT NULL, to_regclass('public.ir_module_module') IS NOT NULL"
        )
        has_users, has_modules = cur.fetchone()
        if has_modules:
            cur.execute("SELECT count(*) FROM ir_module_module WHERE name = 'base' AND state = 'installed'")
            if cur.fetchone()[0] != 1:
                problems.append("module base is not installed in the restored database")
        else:
            problems.append("ir_module_module is missing: not an Odoo database")
        if has_users:
            cur.execute("SELECT count(*) FROM res_users WHERE active")
            if cur.fetchone()[0] == 0:
                problems.append("no active user could log in")
    return problems


def run_drill(
    cfg: Config, snapshot: Snapshot, journal: Journal, show_progress: bool = False, neutralize: bool = True
) -> dict[str, Any]:
    check_snapshot_database(cfg, snapshot)
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    scratch = scratch_name(cfg.database.name, "drill")
    op = journal.begin("drill", cfg.database.name, {"snapshot": snapshot.id, "scratch": scratch})
    started = time.monotonic()
    problems: list[str] = []
    try:
        journal.event(op, "checksums", "start")
        problems += check_integrity(snapshot)
        journal.event(op, "checksums", "failed" if problems else "done", data={"problems": problems})
        if not problems:
            journal.event(op, "restore", "start", data={"database": scratch})
            created = False  # only ever drop a database this run made (another may hold the name)
            try:
                restore_dump(
                    cfg.database, snapshot.dump_path, scratch, cfg.storage.effective_jobs, show_progress=show_progress
                )
                created = True
                journal.event(op, "restore", "done")
                if neutralize and cfg.neutralize.addons_path:
                    # No mails, no crons, no calls to a tax authority from a drill's copy.
                    modules = neutralize_database(cfg, scratch)
                    journal.event(op, "neutralize", "done", data={"modules": modules})
                journal.event(op, "checks", "start")
                with connect(cfg.database, scratch) as conn:
                    problems += compare_counts(
                        snapshot.manifest.counts, exact_counts(conn, list(snapshot.manifest.counts))
                    )
                    if installed_modules(conn) != snapshot.manifest.modules:
                        problems.append("installed module versions differ from the snapshot's manifest")
                    problems += sql_smoke_checks(conn)
                journal.event(op, "checks", "failed" if problems else "done", data={"problems": problems})
            except RollbackError as exc:
                problems.append(str(exc))
                journal.event(op, "restore", "failed", str(exc))
            finally:
                if created:
                    drop_database(cfg.database, scratch)
                    journal.event(op, "cleanup", "done", f"scratch database {scratch} dropped")
    except BaseException as exc:
        journal.finish(op, FAILED, str(exc))
        raise
    seconds = time.monotonic() - started
    rto = rto_assessment(cfg, seconds)
    result = {
        "id": op,
        "snapshot": snapshot.id,
        "started_at": started_at,
        "seconds": round(seconds, 3),
        "rto_met": rto["met"],
        "ok": not problems,
        "problems": problems,
        "rto": rto,
    }
    journal.finish(op, DONE if result["ok"] else FAILED, "; ".join(problems) or "drill passed", {"result": result})
    return result
