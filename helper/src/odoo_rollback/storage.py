"""Where snapshots live, and which ones are complete.

A snapshot is built in ``snapshots/.partial-<id>`` and renamed to ``snapshots/<id>`` once every file and
the manifest are written and synced: the rename is the commit point, so a crash leaves only a partial
folder, which ``list`` never shows and the next snapshot, prune or resume removes (see
:mod:`odoo_rollback.leftovers`).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from .config import StorageConfig
from .errors import SnapshotNotFound, StorageError
from .manifest import DUMP_NAME, FILESTORE_NAME, MANIFEST_NAME, Manifest
from .standby_state import standby_summary

SNAPSHOT_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[a-z_]+-[0-9a-f]{6}$")
PARTIAL_PREFIX = ".partial-"

# The partial folders this process is working in: every other one is a dead run's (runs that make
# them hold the operation lock).
_in_use: set[Path] = set()
_in_use_guard = threading.Lock()


@contextmanager
def partial_in_use(path: Path) -> Iterator[Path]:
    with _in_use_guard:
        _in_use.add(path)
    try:
        yield path
    finally:
        with _in_use_guard:
            _in_use.discard(path)


@dataclass(frozen=True)
class Snapshot:
    id: str
    path: Path
    manifest: Manifest

    @property
    def dump_path(self) -> Path:
        return self.path / DUMP_NAME

    @property
    def filestore_archive(self) -> Path:
        return self.path / FILESTORE_NAME

    def summary(self) -> dict[str, object]:
        # Whether a rollback to it would be a swap: its warm standby, if one was built.
        return {**self.manifest.summary(self.path), "standby": standby_summary(self.path)}


def write_atomically(path: Path, text: str) -> None:
    """Replace *path* with *text* so that a reader sees the old or the new content, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotStore:
    def __init__(self, cfg: StorageConfig) -> None:
        self.cfg = cfg
        self.root = cfg.snapshots_dir

    # -- writing --------------------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Create the storage folders, or say clearly why they cannot be used."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage {self.cfg.path} cannot be created: {exc.strerror}") from exc
        probe = self.root / f".probe-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(f"storage {self.root} is not writable: {exc.strerror}") from exc

    def new_id(self, kind: str) -> str:
        return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{kind}-{os.urandom(3).hex()}"

    def partial_path(self, snapshot_id: str) -> Path:
        return self.root / f"{PARTIAL_PREFIX}{snapshot_id}"

    def commit(self, snapshot_id: str) -> Path:
        final = self.root / snapshot_id
        os.rename(self.partial_path(snapshot_id), final)
        fsync_dir(self.root)
        return final

    def remove_partials(self) -> list[str]:
        """Remove the partial folders dead runs left; call it holding the operation lock."""
        if not self.root.is_dir():
            return []
        removed = []
        for path in sorted(self.root.glob(f"{PARTIAL_PREFIX}*")):
            with _in_use_guard:
                if path in _in_use:
                    continue
            try:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            except OSError as exc:
                raise StorageError(f"cannot remove {path}, left by an interrupted run: {exc.strerror}") from exc
            removed.append(path.name)
        if removed:
            fsync_dir(self.root)
        return removed

    def remove(self, snapshot: Snapshot) -> None:
        # Rename first, so a crash in the middle of rmtree leaves no half snapshot that looks complete.
        doomed = self.root / f"{PARTIAL_PREFIX}deleting-{snapshot.id}"
        with partial_in_use(doomed):
            os.rename(snapshot.path, doomed)
            fsync_dir(self.root)
            shutil.rmtree(doomed)

    def mark_verified(self, snapshot_id: str, deep: bool) -> Snapshot:
        snapshot = self.get(snapshot_id)
        manifest = replace(
            snapshot.manifest,
            verified_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            verified_deep=deep or snapshot.manifest.verified_deep,
        )
        write_atomically(snapshot.path / MANIFEST_NAME, manifest.to_json())
        return replace(snapshot, manifest=manifest)

    # -- reading --------------------------------------------------------------------------------
    def list(self) -> list[Snapshot]:
        """Complete snapshots, newest first."""
        if not self.root.is_dir():
            return []
        snapshots = []
        for path in self.root.iterdir():
            if not SNAPSHOT_ID.match(path.name):
                continue
            try:
                manifest = Manifest.from_json((path / MANIFEST_NAME).read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError):
                continue  # not a complete snapshot: verify reports it, list does not offer it
            snapshots.append(Snapshot(path.name, path, manifest))
        return sorted(snapshots, key=lambda s: (s.manifest.created_at, s.id), reverse=True)

    def get(self, snapshot_id: str) -> Snapshot:
        if not SNAPSHOT_ID.match(snapshot_id or ""):
            raise SnapshotNotFound(f"{snapshot_id!r} is not a snapshot id (see 'odoo-rollback list')")
        path = self.root / snapshot_id
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise SnapshotNotFound(f"no snapshot {snapshot_id} in {self.root} (see 'odoo-rollback list')")
        try:
            manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, TypeError) as exc:
            raise SnapshotNotFound(f"snapshot {snapshot_id} has an unreadable manifest: {exc}") from exc
        return Snapshot(snapshot_id, path, manifest)

    def newest(self, kind: str = "pre_deploy", verified: bool = True, database: str | None = None) -> Snapshot | None:
        for snapshot in self.list():
            if snapshot.manifest.kind != kind:
                continue
            if verified and not snapshot.manifest.verified_at:
                continue
            if database and snapshot.manifest.database != database:
                continue
            return snapshot
        return None
