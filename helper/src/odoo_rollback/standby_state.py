"""What is known of a snapshot's warm standby: ``<storage>/standby/<snapshot id>.json``.

Kept apart from :mod:`odoo_rollback.standby` (which builds, proves and drops standbys) so that the
snapshot store can show a standby's state in every snapshot summary without importing the builder.
Not in the snapshot's folder, which holds exactly what its manifest lists; the file, the database and
the filestore it names are dropped by :func:`odoo_rollback.standby.drop_standby`, called where
snapshots are deleted.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .owner import Owner

STANDBY_DIR = "standby"
# <storage>/standby.lock: held (flock) by a build for its whole run, and by a drop and a restore using
# a standby; the kernel releases it when its holder dies.
LOCK_NAME = "standby.lock"

BUILDING = "building"
READY = "ready"
FAILED = "failed"
INTERRUPTED = "interrupted"  # shown for a build whose process is gone without saying so


_NOT_WRITTEN = frozenset({"listing", "lock_path"})


@dataclass
class StandbyState:
    snapshot: str
    state: str  # building, ready, failed
    database: str
    filestore: str
    operation: str  # the journal operation of the build
    pid: int
    started_at: str
    # The build's process start time (owner.process_start): with the pid, its identity (a pid alone may
    # be another process's after the build died). None in records of builds before it was kept.
    start: int | None = None
    ready_at: str | None = None
    # The identity proven again before a restore uses the standby (see standby.prove_standby).
    oid: int | None = None
    row_xmin: str | None = None  # xmin of its pg_database row: any ALTER DATABASE changes it
    sessions: int | None = None  # pg_stat_database.sessions: every connection made to it counts
    stats_reset: str | None = None
    # Database-level settings, comments and security labels (pg_db_role_setting, pg_shdescription,
    # pg_shseclabel rows keyed by its oid) as the build found them: none, or it is not ready.
    database_settings: list[str] | None = None
    files_digest: str | None = None  # sha256 of the listing file (listing_path) written at the build
    files: int = 0
    linked: int = 0  # attachments shared with the live filestore by hard links
    copied: int = 0
    copied_bytes: int = 0
    database_bytes: int = 0
    link_problem: str | None = None  # why files were copied rather than linked, if they were
    priority: str = ""
    error: str | None = None
    # The snapshot's slot read ahead once the standby was built (read_ahead.py): the second slot, its
    # starting point, the changes before it and the digest of the file that holds them (ahead_path).
    ahead_slot: str | None = None
    ahead_lsn: str | None = None
    ahead_changes: int = 0
    ahead_sha256: str | None = None
    # The standby filestore's listing (standby.FileListing's entries), kept in a file of its own beside
    # the record and loaded only to prove the standby: not part of the record's JSON.
    listing: dict[str, list[Any]] | None = field(default=None, repr=False, compare=False)
    # Set by read_state, never written: the standby lock of the storage the record was read from.
    lock_path: Path | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> str:
        # Not the listing (a file of its own) nor where the record was read from (not what it says).
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_WRITTEN}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StandbyState:
        data = json.loads(text)
        known = {f.name for f in fields(cls)} - _NOT_WRITTEN
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def shown_state(self) -> str:
        return INTERRUPTED if self.state == BUILDING and not self.builder_alive(self.lock_path) else self.state

    def builder_alive(self, lock: Path | None) -> bool:
        """Whether the build that wrote this record still runs: never when the standby lock is free
        (a build holds it for its whole run); else when its pid is that of a process started when it
        was (a pid alone may have gone to another program since the build died)."""
        if lock is not None and lock_is_free(lock):
            return False
        return Owner(self.pid, self.start, "").alive()

    def summary(self) -> dict[str, Any]:
        """The ``standby`` object of ``list --json`` (and of Odoo's snapshot record)."""
        return {
            "state": self.shown_state,
            "ready": self.shown_state == READY,
            "database": self.database,
            "filestore": self.filestore,
            "ready_at": self.ready_at,
            "size": self.database_bytes + self.copied_bytes,
            "files": self.files,
            "linked": self.linked,
            "copied": self.copied,
            "link_problem": self.link_problem,
            "error": self.error,
        }


def state_path(snapshot_path: Path) -> Path:
    """Where the record of the standby of the snapshot in *snapshot_path* is (``<storage>/snapshots/<id>``)."""
    return snapshot_path.parent.parent / STANDBY_DIR / f"{snapshot_path.name}.json"


def ahead_path(snapshot_path: Path) -> Path:
    """Where a standby's read-ahead of the snapshot's slot is kept, beside its record."""
    return state_path(snapshot_path).with_name(f"{snapshot_path.name}.ahead.jsonl")


def listing_path(snapshot_path: Path) -> Path:
    """Where the standby filestore's listing, as its build verified it, is kept beside its record."""
    return state_path(snapshot_path).with_name(f"{snapshot_path.name}.files.json")


def listing_text(listing: dict[str, list[Any]]) -> str:
    return json.dumps(listing, sort_keys=True, separators=(",", ":")) + "\n"


def read_listing(snapshot_path: Path, digest: str | None) -> dict[str, list[Any]] | None:
    """The listing written with the record whose files_digest is *digest*; None when it is missing,
    unreadable or not that one (the standby then cannot be proven: the restore stages)."""
    try:
        data = listing_path(snapshot_path).read_bytes()
    except OSError:
        return None
    if digest is None or hashlib.sha256(data).hexdigest() != digest:
        return None
    try:
        listing = json.loads(data)
    except ValueError:
        return None
    return listing if isinstance(listing, dict) else None


def read_state(snapshot_path: Path) -> StandbyState | None:
    try:
        state = StandbyState.from_json(state_path(snapshot_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None  # unreadable: no usable standby (a restore stages from the snapshot)
    state.lock_path = standby_lock_path(snapshot_path.parent.parent)
    return state


def standby_lock_path(storage: Path) -> Path:
    return storage / LOCK_NAME


def lock_is_free(path: Path) -> bool:
    """Whether no process holds the standby lock *path*: a shared flock taken and let go at once (a
    build that starts meanwhile waits a moment for it, see standby.standby_lock). A lock that cannot
    be opened is not known to be free."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # never made: no build ever held it
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False  # held (EWOULDBLOCK)
    finally:
        os.close(fd)  # releases the probe
    return True


def standby_summary(snapshot_path: Path) -> dict[str, Any] | None:
    state = read_state(snapshot_path)
    return state.summary() if state else None
