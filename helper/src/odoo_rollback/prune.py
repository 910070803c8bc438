"""Removing old snapshots while keeping what a rollback may need."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from .capture import release_capture
from .config import Config
from .errors import os_failure
from .journal import DONE, FAILED, Journal, JournalError
from .leftovers import clean_dead_runs
from .lock import operation_lock
from .standby import drop_standby
from .storage import Snapshot, SnapshotStore


def select_prunable(snapshots: list[Snapshot], keep: int) -> list[Snapshot]:
    """Snapshots beyond the *keep* newest of each kind, never the newest verified pre_deploy one."""
    protected = next((s.id for s in snapshots if s.manifest.kind == "pre_deploy" and s.manifest.verified_at), None)
    seen: dict[str, int] = {}
    doomed = []
    for snapshot in snapshots:  # newest first
        kind = snapshot.manifest.kind
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] > keep and snapshot.id != protected:
            doomed.append(snapshot)
    return doomed


def prune(cfg: Config, journal: Journal, keep: int, dry_run: bool = False) -> list[Snapshot]:
    """Remove the snapshots :func:`select_prunable` picks, and what dead runs left (see leftovers),
    under the operation lock: a restore never loses its snapshot half-way."""
    store = SnapshotStore(cfg.storage)
    if dry_run:
        return select_prunable(store.list(), keep)
    with operation_lock(cfg.storage.path, journal, "prune"):
        cleaned = clean_dead_runs(cfg, journal, "a prune")
        doomed = select_prunable(store.list(), keep)
        op = journal.begin("prune", cfg.database.name, {"keep": keep, "snapshots": [s.id for s in doomed]})
        try:
            for snapshot in doomed:
                journal.event(op, "remove", "start", data={"snapshot": snapshot.id})
                drop_standby(cfg, snapshot, journal, "its snapshot was pruned")  # it goes with its snapshot
                store.remove(snapshot)
                release_capture(cfg.database, snapshot.manifest)  # its replication slot must not keep WAL
                journal.event(op, "remove", "done", data={"snapshot": snapshot.id})
        except BaseException as exc:
            error = os_failure(exc, "prune") if isinstance(exc, OSError) else exc
            with suppress(JournalError):
                journal.finish(op, FAILED, str(error))
            if error is not exc:
                raise error from exc
            raise
        result: dict[str, Any] = {"removed": [s.id for s in doomed], **cleaned}
        journal.finish(op, DONE, f"removed {len(doomed)} snapshot(s)", result)
    return doomed
