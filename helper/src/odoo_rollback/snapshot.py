"""Taking a snapshot: database dump, filestore archive, manifest, all or nothing."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from .checksums import describe_files
from .config import Config
from .counts import exact_counts
from .db import connect
from .dump import dump_database
from .errors import StorageError
from .filestore import archive_filestore, check_filestore, folder_size
from .journal import DONE, FAILED, Journal
from .manifest import DUMP_NAME, FILESTORE_NAME, MANIFEST_NAME, Manifest
from .modules import database_size, installed_modules, server_version
from .progress import watch_bytes
from .storage import Snapshot, SnapshotStore, fsync_dir, write_atomically


def code_revision(path: Path | None) -> str | None:
    """git HEAD of the configured code folder (None when no folder is configured)."""
    if path is None:
        return None
    result = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def check_free_space(cfg: Config, expected: int) -> None:
    """Refuse when the storage lacks room for *expected* bytes plus the configured margin."""
    free = shutil.disk_usage(cfg.storage.path).free
    needed = int(expected * (1 + cfg.storage.free_space_margin))
    if free < needed:
        raise StorageError(
            f"not enough free disk in {cfg.storage.path}: {free // 2**20} MiB free, "
            f"{needed // 2**20} MiB needed for the expected snapshot size"
        )


def take_snapshot(cfg: Config, kind: str, label: str, journal: Journal, show_progress: bool = False) -> Snapshot:
    """Capture a complete snapshot; on any failure nothing usable is left behind."""
    store = SnapshotStore(cfg.storage)
    store.ensure_writable()
    store.remove_stale_partials()
    check_filestore(cfg.filestore.path)
    with connect(cfg.database) as conn:
        db_size = database_size(conn, cfg.database.name)
    # pg_dump -Z1 writes about a tenth of the database's size; a tar is the filestore's size.
    expected = db_size // 4 + folder_size(cfg.filestore.path)
    check_free_space(cfg, expected)

    snapshot_id = store.new_id(kind)
    op = journal.begin("snapshot", cfg.database.name, {"snapshot": snapshot_id, "kind": kind, "label": label})
    partial = store.partial_path(snapshot_id)
    try:
        partial.mkdir()
        created_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        journal.event(op, "metadata", "start")
        with connect(cfg.database) as conn:
            modules = installed_modules(conn)
            version = server_version(conn)
            counts = exact_counts(conn, cfg.counts.tables)
        journal.event(op, "metadata", "done", data={"counts": counts, "modules": len(modules)})

        # The dump and the filestore archive run side by side: pg_dump waits on the server most of
        # the time, tar on the disk.
        journal.event(op, "dump", "start")
        with ThreadPoolExecutor(max_workers=1) as pool:
            tar_future = pool.submit(archive_filestore, cfg.filestore.path, partial / FILESTORE_NAME)
            with watch_bytes(show_progress, "dump", partial, expected):
                dump_database(cfg.database, cfg.database.name, partial / DUMP_NAME, cfg.storage.effective_jobs)
            tar_future.result()
        journal.event(op, "dump", "done")

        journal.event(op, "checksums", "start")
        files = describe_files(partial)
        journal.event(op, "checksums", "done", data={"files": len(files)})
        manifest = Manifest(
            id=snapshot_id,
            kind=kind,
            label=label,
            created_at=created_at,
            database=cfg.database.name,
            server_version=version,
            modules=modules,
            code_revision=code_revision(cfg.code.path),
            counts=counts,
            files=files,
        )
        write_atomically(partial / MANIFEST_NAME, manifest.to_json())
        fsync_dir(partial)
        final = store.commit(snapshot_id)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        journal.finish(op, FAILED, str(exc) or exc.__class__.__name__)
        raise
    snapshot = Snapshot(snapshot_id, final, manifest)
    journal.finish(op, DONE, f"snapshot {snapshot_id} complete", {"summary": snapshot.summary()})
    return snapshot
