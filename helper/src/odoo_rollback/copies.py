"""``odoo-rollback copy ID --to NAME [--neutralize]``: a snapshot as a new database beside the live one.

For staging, or for looking into a failed deployment without touching production: the dump is restored
into NAME (owned like the live database), the filestore is extracted to ``<filestore folder>/NAME`` (where
Odoo looks for NAME's attachments), and with ``--neutralize`` the copy is neutralized as Odoo 16 does
before anyone points an Odoo at it. Nothing existing is ever overwritten; on failure, what this run made
is removed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .config import Config, check_database_name
from .db import database_exists, maintenance
from .dump import database_owner, drop_database, restore_dump
from .errors import PreconditionError, UsageError
from .filestore import extract_filestore
from .journal import DONE, FAILED, Journal
from .lock import operation_lock
from .manifest import FILESTORE_NAME
from .neutralize import neutralize_database, require_addons_path
from .storage import Snapshot, SnapshotStore
from .verify import check_integrity, staged_dump


def copy_snapshot(cfg: Config, snapshot: Snapshot, name: str, neutralize: bool, journal: Journal) -> dict[str, Any]:
    check_database_name(name, "--to")
    if name == cfg.database.name:
        raise UsageError(f"--to {name} is the live database; use 'odoo-rollback restore' to replace it")
    if neutralize:
        require_addons_path(cfg)
    filestore = cfg.filestore.path.parent / name
    with maintenance(cfg.database) as conn:
        if database_exists(conn, name):
            raise PreconditionError(f"database {name} already exists; refusing to overwrite it")
    if filestore.exists():
        raise PreconditionError(f"filestore {filestore} already exists; refusing to overwrite it")
    with operation_lock(cfg.storage.path, journal, "copy", database=cfg.database):
        problems = check_integrity(snapshot)
        if problems:
            raise PreconditionError(f"snapshot {snapshot.id} failed its checks: {'; '.join(problems)}")
        return _copy(cfg, snapshot, name, filestore, neutralize, journal)


def _copy(
    cfg: Config, snapshot: Snapshot, name: str, filestore: Path, neutralize: bool, journal: Journal
) -> dict[str, Any]:
    op = journal.begin("copy", cfg.database.name, {"snapshot": snapshot.id, "target": name, "neutralize": neutralize})
    made_database = False
    try:
        journal.event(op, "restore", "start", data={"database": name})
        # pg_restore reads a checked private copy, never the snapshot folder, which can change after the
        # check above; the filestore archive is hashed as tar reads it (the run holds the lock, so the
        # copy is where restore makes its own).
        root = SnapshotStore(cfg.storage).root
        with staged_dump(snapshot, root, cfg.storage.free_space_margin) as dump:
            restore_dump(
                cfg.database, dump, name, cfg.storage.effective_jobs, database_owner(cfg.database, cfg.database.name)
            )
        made_database = True
        journal.event(op, "restore", "done")
        extract_filestore(snapshot.filestore_archive, filestore, snapshot.manifest.files[FILESTORE_NAME])
        journal.event(op, "filestore", "done", data={"path": str(filestore)})
        neutralized: list[str] = []
        if neutralize:
            neutralized = neutralize_database(cfg, name)
            journal.event(op, "neutralize", "done", data={"modules": neutralized})
    except BaseException as exc:
        if made_database:
            drop_database(cfg.database, name)
        shutil.rmtree(filestore, ignore_errors=True)
        journal.finish(op, FAILED, str(exc) or exc.__class__.__name__)
        raise
    result = {
        "snapshot": snapshot.id,
        "database": name,
        "filestore": str(filestore),
        "neutralized": neutralize,
        "neutralize_modules": neutralized,
    }
    journal.finish(op, DONE, f"snapshot {snapshot.id} copied to {name}", {"result": result})
    return result


__all__ = ["copy_snapshot"]
