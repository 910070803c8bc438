"""Rollback drills: a real restore into a scratch database, timed against the RTO.

It never touches the live database, its filestore or the services. The scratch database is neutralized
(``[neutralize] addons_path``) unless ``--no-neutralize`` is given.
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import ExitStack, suppress
from datetime import datetime, timezone
from typing import Any

from .config import Config
from .counts import exact_counts
from .db import connect
from .dump import drop_database, restore_scratch
from .errors import RollbackError, StorageError
from .filestore import extract_filestore
from .journal import DONE, FAILED, Journal, JournalError
from .lock import operation_lock
from .manifest import FILESTORE_NAME
from .modules import installed_modules
from .neutralize import neutralize_database
from .restore import check_snapshot_database, rto_assessment
from .storage import PARTIAL_PREFIX, Snapshot, SnapshotStore, partial_in_use
from .verify import compare_counts, scratch_name, staged_dump


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


def neutralize_scratch(cfg: Config, scratch: str, journal: Journal, op: str) -> None:
    """No mails, no crons, no calls to a tax authority from a drill's copy (when Odoo's addons are known)."""
    if cfg.neutralize.addons_path:
        modules = neutralize_database(cfg, scratch)
        journal.event(op, "neutralize", "done", data={"modules": modules})


def check_scratch(
    cfg: Config, snapshot: Snapshot, scratch: str, neutralize: bool, journal: Journal, op: str, earlier: list[str]
) -> list[str]:
    """Neutralize the scratch database, compare it with the manifest and smoke it; always drop it."""
    problems: list[str] = []
    try:
        if neutralize:
            neutralize_scratch(cfg, scratch, journal, op)
        journal.event(op, "checks", "start")
        with connect(cfg.database, scratch) as conn:
            problems += compare_counts(snapshot.manifest.counts, exact_counts(conn, list(snapshot.manifest.counts)))
            if installed_modules(conn) != snapshot.manifest.modules:
                problems.append("installed module versions differ from the snapshot's manifest")
            problems += sql_smoke_checks(conn)
        failed = earlier + problems
        journal.event(op, "checks", "failed" if failed else "done", data={"problems": failed})
    except RollbackError as exc:
        problems.append(str(exc))
        journal.event(op, "checks", "failed", str(exc))
    finally:
        drop_database(cfg.database, scratch)
        journal.event(op, "cleanup", "done", f"scratch database {scratch} dropped")
    return problems


def drill_filestore(cfg: Config, snapshot: Snapshot, journal: Journal, op: str) -> list[str]:
    """Extract the filestore archive as a restore does (its bytes hashed as tar reads them) into a
    scratch folder, then remove it: a drill proves the attachments come back too, not only the rows."""
    root = SnapshotStore(cfg.storage).root
    folder = root / f"{PARTIAL_PREFIX}drill-filestore-{os.urandom(3).hex()}"
    journal.event(op, "filestore", "start", data={"folder": str(folder)})
    problems: list[str] = []
    with partial_in_use(folder):
        try:
            extract_filestore(snapshot.filestore_archive, folder, snapshot.manifest.files[FILESTORE_NAME])
        except (RollbackError, OSError) as exc:
            error = exc if isinstance(exc, RollbackError) else StorageError(f"filestore: {exc}")
            problems.append(f"the filestore could not be restored: {error}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    journal.event(op, "filestore", "failed" if problems else "done", data={"problems": problems})
    return problems


def run_drill(
    cfg: Config, snapshot: Snapshot, journal: Journal, show_progress: bool = False, neutralize: bool = True
) -> dict[str, Any]:
    check_snapshot_database(cfg, snapshot)
    with operation_lock(cfg.storage.path, journal, "drill", database=cfg.database):
        return _run_drill(cfg, snapshot, journal, show_progress, neutralize)


def _run_drill(
    cfg: Config, snapshot: Snapshot, journal: Journal, show_progress: bool, neutralize: bool
) -> dict[str, Any]:
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    scratch = scratch_name(cfg.database.name, "drill")
    op = journal.begin("drill", cfg.database.name, {"snapshot": snapshot.id, "scratch": scratch})
    started = time.monotonic()
    problems: list[str] = []
    try:
        # As a restore reads it: a checked copy of exactly the listed files (one read, hashed as copied).
        journal.event(op, "checksums", "start")
        with ExitStack() as staged:
            try:
                dump = staged.enter_context(
                    staged_dump(snapshot, SnapshotStore(cfg.storage).root, cfg.storage.free_space_margin)
                )
            except RollbackError as exc:
                problems.append(str(exc))
            journal.event(op, "checksums", "failed" if problems else "done", data={"problems": problems})
            created = False  # only ever drop a database this run made (another may hold the name)
            if not problems:
                journal.event(op, "restore", "start", data={"database": scratch})
                try:
                    restore_scratch(cfg.database, dump, scratch, cfg.storage.effective_jobs, show_progress)
                    created = True
                except RollbackError as exc:
                    problems.append(str(exc))
                    journal.event(op, "restore", "failed", str(exc))
                else:
                    journal.event(op, "restore", "done")
                    problems += drill_filestore(cfg, snapshot, journal, op)
        if created:
            problems += check_scratch(cfg, snapshot, scratch, neutralize, journal, op, problems)
    except BaseException as exc:
        with suppress(JournalError):  # a full journal must not hide the error; the next run closes it
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
