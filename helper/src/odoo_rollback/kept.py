"""Databases and filestores left beside the live ones: listed, sized, and dropped by their own retention.

A restore keeps the replaced database and filestore as ``<db>__failed_<time>``; a restore that was
interrupted leaves ``<db>__restore_<time>``; a drill or a deep verify that was killed leaves
``<db>__drill_<time>`` / ``<db>__verify_<time>``. Each is a full copy of the database: on a disk that
also holds the snapshots they are what fills it, so ``health`` counts them and ``[retention.kept]``
drops them (default: the last 2, at most 7 days).

Never dropped: anything an unfinished operation names (``resume`` needs it), the database and
filestore kept by the newest restore, which Odoo is still validating (they are the way back), and those
of a restore whose lost-changes export did not complete: they are then the only copy of the changes
made after the snapshot (and the database holds the snapshot's slot, which reads them exactly), so they
stay until the operator drops them (``health`` says so, and what to do).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .config import Config, DatabaseConfig, RetentionRule
from .db import maintenance
from .dump import drop_database
from .errors import PreconditionError, UsageError
from .filestore import folder_size
from .journal import DONE, FAILED, Journal
from .leftovers import is_dead
from .lock import operation_lock

PURPOSES = ("failed", "restore", "drill", "verify", "import")
SUFFIX = re.compile(r"^__(?P<purpose>" + "|".join(PURPOSES) + r")_(?P<stamp>[0-9]{14})$")


@dataclass
class KeptItem:
    name: str  # the database's name (also when only the filestore is left)
    purpose: str  # failed: kept by a restore; restore, drill, verify: leftovers of an interrupted run
    created_at: datetime
    database_size: int | None = None  # None: no such database
    filestore: Path | None = None
    filestore_size: int = 0
    protected: str | None = None  # why retention leaves it alone
    unexported: str | None = None  # why its restore's lost changes are only here (see unexported())

    @property
    def size(self) -> int:
        return (self.database_size or 0) + self.filestore_size

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "purpose": self.purpose,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "database": self.database_size is not None,
            "database_size": self.database_size,
            "filestore": str(self.filestore) if self.filestore else None,
            "filestore_size": self.filestore_size,
            "size": self.size,
            "protected": self.protected,
            "unexported": self.unexported,
        }


def _parse(suffix: str) -> tuple[str, datetime] | None:
    match = SUFFIX.match(suffix)
    if not match:
        return None
    stamp = datetime.strptime(match["stamp"], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    return match["purpose"], stamp


def in_use(journal: Journal) -> set[str]:
    """Database and filestore names that a running operation, or an interrupted restore, refers to."""
    names: set[str] = set()
    for op in journal.unfinished():
        if op.kind not in ("restore", "deploy") and is_dead(op):
            continue  # the next snapshot, prune or resume cleans a dead drill's scratch database
        names.update(str(v) for v in (op.data.get("names") or {}).values())
        if op.data.get("scratch"):
            names.add(str(op.data["scratch"]))
    return names


def newest_restore_kept(journal: Journal) -> set[str]:
    """What the newest restore kept aside: the way back while Odoo validates that restore."""
    for op in journal.operations(kind="restore", limit=20):
        names = op.data.get("names") or {}
        if op.state == DONE and names:
            return {str(names.get("failed")), str(names.get("filestore_failed"))}
    return set()


# Why retention leaves a kept item alone (the start of KeptItem.protected).
IN_USE = "an unfinished operation uses it"
ONLY = "the only copy of changes no export has"


def unexported(journal: Journal) -> dict[str, str]:
    """The databases and filestores kept by a finished restore whose lost-changes export did not
    complete (no ``lost_rows_file`` journaled: it failed, or the restore predates it), each with why:
    the changes made after the snapshot are only there."""
    found: dict[str, str] = {}
    for op in journal.operations(kind="restore", state=DONE, limit=1_000_000):
        names = op.data.get("names") or {}
        if not names.get("failed") or op.data.get("lost_rows_file"):
            continue
        error = str(
            op.data.get("lost_rows_error")
            or (op.data.get("result") or {}).get("lost_rows_error")
            or "the export did not complete"
        )
        why = f"restore {op.id} of snapshot {op.data.get('snapshot')}: {error}"
        found[str(names["failed"])] = found[str(names.get("filestore_failed"))] = why
    return found


def unexported_advice(item: KeptItem) -> str:
    """What the operator does with a kept database that holds changes no export has."""
    return (
        f"{item.name} holds the only copy of changes made after its snapshot ({item.unexported}); retention "
        f"keeps it and its slot: read the changes from it (psql -d {item.name}), then drop it with "
        f"'odoo-rollback kept --drop {item.name} --force'"
    )


def list_kept(cfg: Config, journal: Journal) -> list[KeptItem]:
    """Everything kept beside the live database and filestore, newest first."""
    db = cfg.database.name
    items: dict[str, KeptItem] = {}
    with maintenance(cfg.database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT datname, pg_database_size(datname) FROM pg_database WHERE starts_with(datname, %s)", (db + "__",)
        )
        for name, size in cur.fetchall():
            parsed = _parse(name[len(db) :])
            if parsed:
                items[name] = KeptItem(name, parsed[0], parsed[1], database_size=int(size))
    fs = cfg.filestore.path
    if fs.parent.is_dir():
        for path in fs.parent.iterdir():
            # The staging filestore of a restore is hidden (".<name>__restore_<time>").
            base = path.name[1:] if path.name.startswith(".") else path.name
            if not base.startswith(fs.name + "__") or not path.is_dir():
                continue
            parsed = _parse(base[len(fs.name) :])
            if not parsed:
                continue
            name = f"{db}{base[len(fs.name) :]}"
            item = items.setdefault(name, KeptItem(name, parsed[0], parsed[1]))
            item.filestore, item.filestore_size = path, folder_size(path)
    used, newest, only_copy = in_use(journal), newest_restore_kept(journal), unexported(journal)
    for item in items.values():
        names = {item.name, str(item.filestore)}
        item.unexported = next((only_copy[n] for n in names if n in only_copy), None)
        if names & used:
            item.protected = IN_USE
        elif item.unexported:
            item.protected = f"{ONLY} ({item.unexported})"
        elif names & newest:
            item.protected = "kept by the newest restore"
    return sorted(items.values(), key=lambda i: (i.created_at, i.name), reverse=True)


def select_droppable(items: list[KeptItem], rule: RetentionRule, now: datetime | None = None) -> list[KeptItem]:
    """The kept items *rule* drops: beyond the *keep_last* newest, or older than *max_days*."""
    if not rule.active:
        return []
    oldest = (now or datetime.now(timezone.utc)) - timedelta(days=rule.max_days) if rule.max_days else None
    return [
        item
        for position, item in enumerate(items, start=1)
        if item.protected is None
        and ((rule.keep_last and position > rule.keep_last) or (oldest is not None and item.created_at < oldest))
    ]


def held_unexported(cfg: Config, journal: Journal, rule: RetentionRule | None = None) -> list[KeptItem]:
    """The kept items *rule* (default: the configured one) would drop but for the changes only they
    hold: what the command that ran retention tells the operator (see :func:`unexported_advice`)."""
    items = list_kept(cfg, journal)
    unguarded = [
        replace(i, protected=None) if i.unexported and i.protected and i.protected.startswith(ONLY) else i
        for i in items
    ]
    return [i for i in select_droppable(unguarded, rule or cfg.retention.kept) if i.unexported]


def drop_by_hand(cfg: Config, journal: Journal, name: str, force: bool = False) -> KeptItem:
    """``kept --drop NAME``: the operator drops one kept database (and its filestore). Refused for one
    an unfinished operation uses; for one retention protects (the only copy of changes no export has,
    or the newest restore's way back), only with *force*."""
    with operation_lock(cfg.storage.path, journal, "drop_kept", database=cfg.database):
        item = next((i for i in list_kept(cfg, journal) if name in (i.name, str(i.filestore))), None)
        if item is None:
            raise UsageError(f"{name!r} is not kept beside {cfg.database.name}: see 'odoo-rollback kept'")
        if item.protected and item.protected.startswith(IN_USE):
            raise PreconditionError(f"{item.name} is not dropped: {item.protected} (run 'odoo-rollback resume')")
        if item.protected and not force:
            raise PreconditionError(
                f"{item.name} is not dropped: {item.protected}; once you no longer need it, add --force"
            )
        drop_kept(cfg, item, journal, "dropped by hand" + (f" (it was {item.protected})" if item.protected else ""))
    return item


def drop_kept(cfg: Config, item: KeptItem, journal: Journal, reason: str) -> None:
    op = journal.begin("drop_kept", cfg.database.name, {"kept": item.as_dict(), "reason": reason})
    try:
        if item.database_size is not None:
            drop_database(cfg.database, item.name)
        if item.filestore is not None:
            shutil.rmtree(item.filestore)
    except BaseException as exc:
        journal.finish(op, FAILED, str(exc) or exc.__class__.__name__)
        raise
    journal.finish(op, DONE, f"{item.name} dropped: {reason}")


def apply_kept_retention(
    cfg: Config, journal: Journal, rule: RetentionRule | None = None, dry_run: bool = False
) -> list[KeptItem]:
    rule = rule or cfg.retention.kept
    doomed = select_droppable(list_kept(cfg, journal), rule)
    if not dry_run:
        for item in doomed:
            drop_kept(cfg, item, journal, "retention")
    return doomed


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
