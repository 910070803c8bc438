"""Removing old snapshots while keeping what a rollback may need."""

from __future__ import annotations

from .capture import release_capture
from .config import DatabaseConfig
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


def prune(store: SnapshotStore, keep: int, dry_run: bool = False, db: DatabaseConfig | None = None) -> list[Snapshot]:
    doomed = select_prunable(store.list(), keep)
    if not dry_run:
        for snapshot in doomed:
            store.remove(snapshot)
            if db is not None:
                release_capture(db, snapshot.manifest)  # its replication slot must not keep WAL
    return doomed
