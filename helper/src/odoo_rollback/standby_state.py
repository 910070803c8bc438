"""What is known of a snapshot's warm standby: ``<storage>/standby/<snapshot id>.json``.

Kept apart from :mod:`odoo_rollback.standby` (which builds, proves and drops standbys) so that the
snapshot store can show a standby's state in every snapshot summary without importing the builder.
Not in the snapshot's folder, which holds exactly what its manifest lists; the file, the database and
the filestore it names are dropped by :func:`odoo_rollback.standby.drop_standby`, called where
snapshots are deleted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .owner import pid_exists

STANDBY_DIR = "standby"

BUILDING = "building"
READY = "ready"
FAILED = "failed"
INTERRUPTED = "interrupted"  # shown for a build whose process is gone without saying so


@dataclass
class StandbyState:
    snapshot: str
    state: str  # building, ready, failed
    database: str
    filestore: str
    operation: str  # the journal operation of the build
    pid: int
    started_at: str
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

    def to_json(self) -> str:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "listing"}  # not deep-copied
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StandbyState:
        data = json.loads(text)
        known = {f.name for f in fields(cls)} - {"listing"}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def shown_state(self) -> str:
        if self.state == BUILDING and not pid_exists(self.pid):
            return INTERRUPTED
        return self.state

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
        return StandbyState.from_json(state_path(snapshot_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None  # unreadable: no usable standby (a restore stages from the snapshot)


def standby_summary(snapshot_path: Path) -> dict[str, Any] | None:
    state = read_state(snapshot_path)
    return state.summary() if state else None
