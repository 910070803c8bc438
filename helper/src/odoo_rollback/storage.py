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
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from .config import StorageConfig
from .errors import SnapshotNotFound, SnapshotRefused, StorageError
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


@dataclass(frozen=True)
class RefusedFolder:
    """A folder under a snapshot's name that is not that snapshot: ``list`` shows it, with why."""

    id: str
    path: Path
    reason: str


def identity_problem(snapshot_id: str, manifest: Manifest, database: str) -> str | None:
    """Why *manifest* may not be opened as snapshot *snapshot_id* of *database*, or None.

    A folder's name is what every command is given, its manifest what is checked and restored: a folder
    holding another snapshot's files (copied, renamed, fetched from a remote folder that holds them)
    would be verified and restored under the wrong name. The manifest's own id must be the name."""
    if manifest.id != snapshot_id:
        return (
            f"the folder of snapshot {snapshot_id} holds snapshot {manifest.id!r} (its manifest's id): "
            "refused, nothing read from it"
        )
    if manifest.database != database:
        return (
            f"snapshot {snapshot_id} is of database {manifest.database!r}, not of the configured database {database!r}"
        )
    return None


def read_manifest(path: Path, snapshot_id: str) -> Manifest:
    """The manifest of the snapshot folder *path* (a link in its place is not followed)."""
    try:
        fd = os.open(path / MANIFEST_NAME, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise SnapshotNotFound(f"no snapshot {snapshot_id} in {path.parent} (see 'odoo-rollback list')") from exc
    except OSError as exc:
        raise SnapshotNotFound(f"snapshot {snapshot_id} has an unreadable manifest: {exc.strerror}") from exc
    try:
        with open(fd, encoding="utf-8") as handle:
            return Manifest.from_json(handle.read())
    except (OSError, ValueError, TypeError) as exc:
        raise SnapshotNotFound(f"snapshot {snapshot_id} has an unreadable manifest: {exc}") from exc


def open_snapshot(path: Path, database: str) -> Snapshot:
    """The snapshot in the folder *path*, named by its id: the one way a local snapshot is opened.

    Refused (SnapshotRefused, nothing read but the manifest) unless *path* is a real folder (a link,
    followed, would read anything anywhere; checked with lstat), its manifest's id is the folder's name
    and its database is *database*."""
    snapshot_id = path.name
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError as exc:
        raise SnapshotNotFound(f"no snapshot {snapshot_id} in {path.parent} (see 'odoo-rollback list')") from exc
    if stat.S_ISLNK(mode):
        raise SnapshotRefused(
            f"{path} is a link, not the snapshot's own folder: a snapshot is read only from a folder of the "
            "storage itself; refused, nothing read from it"
        )
    if not stat.S_ISDIR(mode):
        raise SnapshotRefused(f"{path} is not a folder: not a snapshot; refused")
    manifest = read_manifest(path, snapshot_id)
    problem = identity_problem(snapshot_id, manifest, database)
    if problem:
        raise SnapshotRefused(problem)
    return Snapshot(snapshot_id, path, manifest)


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
        self.database = cfg.database

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
    def scan(self) -> tuple[list[Snapshot], list[RefusedFolder]]:
        """Complete snapshots, newest first; and the folders under a snapshot's name that are refused."""
        if not self.root.is_dir():
            return [], []
        snapshots, refused = [], []
        for path in self.root.iterdir():
            if not SNAPSHOT_ID.match(path.name):
                continue
            try:
                snapshots.append(open_snapshot(path, self.database))
            except (SnapshotNotFound, SnapshotRefused) as exc:
                refused.append(RefusedFolder(path.name, path, str(exc)))
        snapshots.sort(key=lambda s: (s.manifest.created_at, s.id), reverse=True)
        return snapshots, sorted(refused, key=lambda r: r.id, reverse=True)

    def list(self) -> list[Snapshot]:
        """Complete snapshots of the configured database, newest first (never a refused folder)."""
        return self.scan()[0]

    def get(self, snapshot_id: str) -> Snapshot:
        if not SNAPSHOT_ID.match(snapshot_id or ""):
            raise SnapshotNotFound(f"{snapshot_id!r} is not a snapshot id (see 'odoo-rollback list')")
        return open_snapshot(self.root / snapshot_id, self.database)

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
