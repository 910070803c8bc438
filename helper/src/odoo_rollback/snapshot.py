"""Taking a snapshot: database dump, filestore archive, manifest, all or nothing."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import code as code_tree
from .capture import (
    EXACT,
    FALLBACK,
    PLUGIN,
    SlotStart,
    capture_check,
    read_capture_point,
    release_superseded,
    slot_for_snapshot,
)
from .checksums import describe_files, sha256_file
from .config import Config
from .counts import counts_in_transaction
from .db import connect
from .dump import dump_database
from .errors import RollbackError, StorageError, os_failure
from .filestore import archive_filestore, check_filestore, folder_size
from .journal import DONE, FAILED, Journal, JournalError
from .kept import apply_kept_retention, held_unexported, unexported, unexported_advice
from .leftovers import clean_dead_runs
from .lock import operation_lock
from .lost_rows import column_types
from .manifest import DUMP_NAME, FILESTORE_NAME, MANIFEST_NAME, Manifest
from .modules import database_size, installed_modules, server_version
from .progress import watch_bytes
from .prune import apply_retention
from .role import reading_problems, require
from .snapshot_keys import KEYS_DIR, write_keys
from .storage import Snapshot, SnapshotStore, fsync_dir, partial_in_use, write_atomically


def archive_and_describe(src: Path, target: Path) -> dict[str, object]:
    archive_filestore(src, target)
    return {"size": target.stat().st_size, "sha256": sha256_file(target)}


def expected_size(cfg: Config) -> int:
    """What the next snapshot will take on disk, about: the dump and the filestore's archive."""
    with connect(cfg.database) as conn:
        db_size = database_size(conn, cfg.database.name)
    # pg_dump -Z1 writes about a tenth of the database's size; a tar is the filestore's size.
    return db_size // 4 + folder_size(cfg.filestore.path)


def needed_space(cfg: Config, expected: int) -> int:
    """The free space a snapshot of *expected* bytes asks for: the size and the configured margin."""
    return int(expected * (1 + cfg.storage.free_space_margin))


def check_free_space(cfg: Config, expected: int) -> None:
    """Refuse when the storage lacks room for *expected* bytes plus the configured margin."""
    free = shutil.disk_usage(cfg.storage.path).free
    needed = needed_space(cfg, expected)
    if free < needed:
        raise StorageError(
            f"not enough free disk in {cfg.storage.path}: {free // 2**20} MiB free, "
            f"{needed // 2**20} MiB needed for the expected snapshot size"
        )


def begin_capture(conn: Any, slot: SlotStart | None, no_slot_reason: str | None) -> tuple[str, dict[str, Any]]:
    """Start *conn*'s transaction on the slot's exported snapshot (or export its own when there is no
    slot); returns the snapshot name for pg_dump and the manifest's capture record."""
    with conn.cursor() as cur:
        if slot is not None:
            cur.execute("SET TRANSACTION SNAPSHOT %s", (slot.snapshot_name,))
            exported = slot.snapshot_name
        else:
            cur.execute("SELECT pg_export_snapshot()")
            exported = cur.fetchone()[0]
    capture: dict[str, Any] = {
        "mode": EXACT if slot else FALLBACK,
        "slot": slot.slot if slot else None,
        "plugin": PLUGIN if slot else None,
        "consistent_lsn": slot.consistent_lsn if slot else None,
        "reason": no_slot_reason,
        **read_capture_point(conn),
    }
    return exported, capture


def take_snapshot(cfg: Config, kind: str, label: str, journal: Journal, show_progress: bool = False) -> Snapshot:
    """Capture a complete snapshot; on any failure nothing usable is left behind."""
    store = SnapshotStore(cfg.storage)
    store.ensure_writable()
    with operation_lock(cfg.storage.path, journal, "snapshot", database=cfg.database):
        clean_dead_runs(cfg, journal, "a snapshot")
        return _take_snapshot(cfg, store, kind, label, journal, show_progress)


def _take_snapshot(
    cfg: Config, store: SnapshotStore, kind: str, label: str, journal: Journal, show_progress: bool
) -> Snapshot:
    check_filestore(cfg.filestore.path)
    require("take a snapshot", reading_problems(cfg.database))
    expected = expected_size(cfg)
    check_free_space(cfg, expected)

    snapshot_id = store.new_id(kind)
    op = journal.begin("snapshot", cfg.database.name, {"snapshot": snapshot_id, "kind": kind, "label": label})
    partial = store.partial_path(snapshot_id)
    try:
        partial.mkdir()
        with partial_in_use(partial):
            manifest = _write_snapshot(cfg, journal, op, partial, snapshot_id, kind, label, expected, show_progress)
        final = store.commit(snapshot_id)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        error = os_failure(exc, "snapshot") if isinstance(exc, OSError) else exc
        # A journal on a full disk must not hide the error; the next run closes the operation.
        with suppress(JournalError):
            journal.finish(op, FAILED, str(error) or exc.__class__.__name__)
        if error is not exc:
            raise error from exc
        raise
    snapshot = Snapshot(snapshot_id, final, manifest)
    if manifest.capture and manifest.capture.get("slot"):
        # One slot per database and kind: the older snapshots' slots only hold WAL back.
        # Not the slot of a kept database whose export failed: the exact record of its changes.
        superseded = release_superseded(
            cfg.database, [s.manifest for s in store.list()], manifest, keep_on=unexported(journal)
        )
        if superseded:
            journal.event(op, "capture", "info", "superseded slots dropped", {"slots": superseded})
    # The WAL ceiling is kept by every snapshot too, not only by whoever runs health.
    with suppress(RollbackError):
        ceiling = capture_check(cfg)
        if ceiling["detail"].startswith("WARNING"):
            journal.event(op, "capture", "info", ceiling["detail"])
    apply_retention_after(cfg, journal, op)
    journal.finish(op, DONE, f"snapshot {snapshot_id} complete", {"summary": snapshot.summary()})
    return snapshot


def apply_retention_after(cfg: Config, journal: Journal, op: str) -> None:
    """Retention after a snapshot, as its last step; a deletion that fails does not undo the snapshot."""
    journal.event(op, "retention", "start")
    try:
        removed = [s.id for s in apply_retention(cfg, journal)]
        dropped = [i.name for i in apply_kept_retention(cfg, journal)]
        held = [unexported_advice(i) for i in held_unexported(cfg, journal)]
    except (OSError, RollbackError) as exc:
        journal.event(op, "retention", "failed", f"retention not applied: {exc}")
        return
    for advice in held:  # beyond retention, but the only copy of changes no export has
        journal.event(op, "retention", "info", f"not dropped: {advice}")
    journal.event(op, "retention", "done", data={"removed": removed, "dropped": dropped, "not_dropped": held})


def _write_snapshot(
    cfg: Config,
    journal: Journal,
    op: str,
    partial: Path,
    snapshot_id: str,
    kind: str,
    label: str,
    expected: int,
    show_progress: bool,
) -> Manifest:
    """Dump, archive, count and describe into *partial*; the manifest last."""
    journal.event(op, "dump", "start")
    with (
        slot_for_snapshot(cfg, snapshot_id) as (slot, no_slot_reason),
        connect(cfg.database, autocommit=False) as conn,
        ThreadPoolExecutor(max_workers=2) as pool,
    ):
        # One snapshot for everything: pg_dump sees exactly what this transaction sees, so the
        # counts and module versions recorded here describe the dump, even while Odoo keeps
        # writing. With a slot it is the slot's own exported snapshot, so the slot's change
        # stream starts exactly where the dump ends. They are read while pg_dump and tar run.
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        created_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        exported, capture = begin_capture(conn, slot, no_slot_reason)
        journal.event(op, "capture", "done", str(no_slot_reason or ""), {"mode": capture["mode"]})
        # The filestore is archived and hashed beside the dump: pg_dump waits on the server,
        # tar on the disk.
        tar_future = pool.submit(archive_and_describe, cfg.filestore.path, partial / FILESTORE_NAME)
        dump_future = pool.submit(
            dump_database,
            cfg.database,
            cfg.database.name,
            partial / DUMP_NAME,
            cfg.storage.effective_jobs,
            exported,
        )
        journal.event(op, "metadata", "start")
        modules = installed_modules(conn)
        version = server_version(conn)
        counts = counts_in_transaction(conn, cfg.counts.tables)
        # The columns' types too: a type the deployment changed is put back by a restore (lost_schema).
        capture["column_types"] = column_types(conn)
        capture["schema"] = {table: list(columns) for table, columns in capture["column_types"].items()}
        # Also with a slot: it may be dropped later (the WAL ceiling), and the fallback then needs them.
        capture["keys"] = write_keys(conn, cfg.counts.tables, partial)
        journal.event(op, "metadata", "done", data={"counts": counts, "modules": len(modules)})
        with watch_bytes(show_progress, "dump", partial, expected):
            dump_future.result()
        files = {FILESTORE_NAME: tar_future.result()}
        conn.rollback()
    journal.event(op, "dump", "done")

    journal.event(op, "checksums", "start")
    files.update({f"{DUMP_NAME}/{name}": entry for name, entry in describe_files(partial / DUMP_NAME).items()})
    if capture["keys"]:
        files.update({f"{KEYS_DIR}/{n}": entry for n, entry in describe_files(partial / KEYS_DIR).items()})
    journal.event(op, "checksums", "done", data={"files": len(files)})
    manifest = Manifest(
        id=snapshot_id,
        kind=kind,
        label=label,
        created_at=created_at,
        database=cfg.database.name,
        server_version=version,
        modules=modules,
        code_revision=code_tree.head_or_none(cfg.code.path),
        counts=counts,
        files=files,
        capture=capture,
    )
    write_atomically(partial / MANIFEST_NAME, manifest.to_json())
    fsync_dir(partial)
    return manifest
