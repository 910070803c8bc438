"""The restore's side of change capture: nobody writes during the swap, and nothing written is dropped.

- While the services are stopped, the live database and the staging one are closed to connections
  (``ALLOW_CONNECTIONS false``, sessions ended): a writer the service backend does not stop (an
  integration, a second Odoo host, a cron elsewhere) cannot write into either between the stop and the
  start. The restored database is opened just before the services start; the replaced one, kept as
  ``<db>__failed_<time>``, only when the helper reads it.
- The lost changes are read from that kept database while the services start and after, so that the
  downtime does not grow with the database: nothing can write to it (nobody knows its name, its
  sessions were ended), and the slot is read only up to the WAL position right after the swap's
  rename committed (:func:`written_until`): the first instant nobody can write to it any more. The
  position of the stop would not do: a superuser passes ``CONNECTION LIMIT 0`` and writes on until
  the rename, which ends its sessions. The slot is dropped only once the start proved healthy.
- Most of that reading is done before the stop: once staging is loaded, the slot is read ahead up to a
  second slot's starting point while staging is analyzed and checked, and after the stop only that
  second slot is read (read_ahead.py). The snapshot's slot itself is only ever peeked.
- A restore undone after the start: the rows written into the restored database meanwhile are exported,
  and that database is kept (``<db>__undone_<time>``) rather than dropped when there are any.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg2 import sql

from .capture import drop_slot, slot_of
from .config import Config, DatabaseConfig
from .db import connect, end_sessions, maintenance, sessions_in_reach
from .decoding import DecodedChange
from .lost_files import export_files
from .lost_rows import (
    FALLBACK,
    LostChanges,
    collect,
    decode_slot,
    export,
    scan_written,
    slot_usable,
    user_tables,
)
from .lost_summary import export_archive, odoo_summary
from .read_ahead import ReadAhead, SlotReader, chained, forget, tail_intact
from .rewound import compare_restored
from .snapshot_keys import SnapshotKeys, staging_keys
from .storage import PARTIAL_PREFIX, Snapshot, SnapshotStore, partial_in_use


def helper_is_superuser(db_cfg: DatabaseConfig) -> bool:
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = cur.fetchone()
    return bool(row and row[0])


def set_connections(db_cfg: DatabaseConfig, name: str, allowed: bool, limit: int = -1) -> None:
    """Refuse new connections to *name* (and end its sessions), or allow them again.

    A superuser helper refuses with ``CONNECTION LIMIT 0``, which every other role obeys and
    superusers do not, so that the helper itself still reads and checks the database; any other
    helper uses ``ALLOW_CONNECTIONS false``, which no one passes (see :meth:`RestoreCapture.close`).
    Allowing restores both, with the connection limit the database had (*limit*).
    """
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT r.rolsuper, d.datallowconn FROM pg_roles r, pg_database d"
            " WHERE r.rolname = current_user AND d.datname = %s",
            (name,),
        )
        row = cur.fetchone()
        if row is None:
            return
        superuser, open_now = row
        ident = sql.Identifier(name)
        if allowed:
            cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(ident))
            cur.execute(sql.SQL("ALTER DATABASE {} WITH CONNECTION LIMIT {}").format(ident, sql.Literal(limit)))
            return
        sessions_in_reach(conn, name)  # before it is closed: one that cannot be ended fails with it open
        # One closed to everyone already (a warm standby) is left as it is: altering it would change
        # the catalog row whose identity proves the standby untouched since it was built.
        if open_now and superuser:
            cur.execute(sql.SQL("ALTER DATABASE {} WITH CONNECTION LIMIT 0").format(ident))
        elif open_now:
            cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(ident))
        end_sessions(conn, name)


def connection_limit(db_cfg: DatabaseConfig, name: str) -> int:
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT datconnlimit FROM pg_database WHERE datname = %s", (name,))
        row = cur.fetchone()
    return int(row[0]) if row else -1


def server_position(db_cfg: DatabaseConfig) -> dict[str, str]:
    """The WAL position and the transaction snapshot of this instant (cluster-wide both)."""
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn()::text, pg_current_snapshot()::text")
        lsn, snapshot = cur.fetchone()
    return {"lsn": lsn, "snapshot": snapshot}


def written_until(conn: Any, timeout: float = 10.0) -> str:
    """The WAL position after every record written so far, on disk: called by *conn* right after the
    transaction that made a database unwritable committed, every commit in that database has its
    commit record before it, and a slot read up to it has them all.

    The insert position, not the write one (``pg_current_wal_lsn``), which may lag behind a commit
    record still in the WAL buffers; and waited for until flushed, since a slot is decoded only up to
    the flushed WAL (an asynchronous commit, ``synchronous_commit = off``, is flushed a moment later by
    the WAL writer)."""
    deadline = time.monotonic() + timeout
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_insert_lsn()::text")
        lsn = str(cur.fetchone()[0])
        while True:
            cur.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (lsn,))
            if cur.fetchone()[0] or time.monotonic() > deadline:
                return lsn
            time.sleep(0.05)


def plan_lost_changes(cfg: Config, snapshot: Snapshot) -> LostChanges:
    """What a restore now would lose, read from the live database (the plan changes nothing)."""
    with connect(cfg.database) as conn:
        changes = collect(
            conn,
            snapshot.manifest.capture,
            snapshot.manifest.created_at,
            cfg.counts.tables,
            keys=SnapshotKeys.of_manifest(snapshot.path, snapshot.manifest),
        )
        # Every tracked table is in the plan, 0 when nothing in it would be lost: the exact and the
        # fallback modes list only the tables with changes, and Odoo's preview shows one line a table.
        existing = user_tables(conn)
        changes.listed = [table for table in cfg.counts.tables if table in existing]
        return changes


@dataclass
class RestoreCapture:
    """The lost-changes work of one restore, in the order the restore calls it."""

    cfg: Config
    snapshot: Snapshot
    # The snapshot's primary keys of the tracked tables, which the fallback compares with to find
    # deletions and to tell inserts from updates: the files the snapshot recorded (snapshot_keys.py).
    keys: SnapshotKeys | None = None
    stop: dict[str, str] = field(default_factory=dict)
    opened: dict[str, str] = field(default_factory=dict)
    # An older snapshot's keys, read from its staged copy, and the read-ahead's tail slot and file:
    # removed when the restore's process ends.
    staged_keys: ExitStack = field(default_factory=ExitStack)
    reader: SlotReader | None = None
    ahead: ReadAhead | None = None
    adopted: ReadAhead | None = None  # a warm standby's read-ahead, this run's to drop once used
    split_used: bool = False  # whether the export read the read-ahead and its tail slot
    tail_changes: int = 0  # the changes the export read from the tail slot

    def __post_init__(self) -> None:
        if self.keys is None:
            self.keys = SnapshotKeys.of_manifest(self.snapshot.path, self.snapshot.manifest)

    @classmethod
    def from_journal(cls, cfg: Config, snapshot: Snapshot, data: dict[str, Any]) -> RestoreCapture:
        """After a crash: what the interrupted restore recorded (an older snapshot's staged keys are not
        kept: without a slot, its deletions are then not counted, and the report says so)."""
        return cls(
            cfg, snapshot, stop=dict(data.get("capture_stop") or {}), opened=dict(data.get("capture_opened") or {})
        )

    def read_staging(self, staging: str) -> None:
        """Before the stop (no downtime), for a snapshot taken before snapshots recorded their keys: the
        staged copy's keys, streamed into a private folder. Not needed when the slot is usable."""
        if self.keys is not None:
            return
        with connect(self.cfg.database) as conn:
            if slot_usable(conn, slot_of(self.snapshot.manifest)):
                return
        root = SnapshotStore(self.cfg.storage).root
        folder = root / f"{PARTIAL_PREFIX}keys-{self.snapshot.id}-{os.urandom(3).hex()}"
        self.staged_keys.enter_context(partial_in_use(folder))
        self.staged_keys.callback(shutil.rmtree, folder, ignore_errors=True)
        folder.mkdir(mode=0o700)
        with connect(self.cfg.database, staging) as conn:
            self.keys = staging_keys(conn, self.cfg.counts.tables, folder)

    def read_ahead_slot(self, live: str) -> str | None:
        """The tail slot a read-ahead would create (see read_ahead.py), or None when the snapshot's
        slot is not there to read ahead (the fallback reads no slot)."""
        slot = slot_of(self.snapshot.manifest)
        if not slot:
            return None
        with connect(self.cfg.database, live) as conn:
            if not slot_usable(conn, slot):
                return None
        self.reader = SlotReader(self.cfg.database, SnapshotStore(self.cfg.storage).root, slot)
        self.staged_keys.callback(self.discard_read_ahead)
        return self.reader.tail_slot

    def begin_read_ahead(self, live: str) -> None:
        """Once staging is loaded, while it is analyzed and checked: the snapshot's slot up to a new
        tail slot's consistent point, read in a thread (call :meth:`read_ahead_slot` first)."""
        if self.reader is not None:
            self.reader.begin(live)

    def await_read_ahead(self) -> str | None:
        """Before the stop (the reading holds a session on the live database): what was read ahead,
        said in one line; None when there was nothing to read ahead."""
        if self.reader is None:
            return None
        self.ahead, why = self.reader.result()
        if self.ahead is None:
            self.reader = None
            return f"no read-ahead ({why}): the snapshot's slot is read whole after the start"
        return (
            f"read ahead: {self.ahead.count} change(s) up to {self.ahead.lsn}; after the stop only the "
            f"tail slot {self.ahead.tail_slot} is read"
        )

    def adopt_read_ahead(self, ahead: ReadAhead) -> str:
        """A warm standby's read-ahead, made when it was built (standby.standby_read_ahead): the
        export reads after the stop only what came after the build."""
        self.ahead = self.adopted = ahead
        self.staged_keys.callback(self.discard_read_ahead)
        return f"the standby's read-ahead is used: {ahead.count} change(s) up to {ahead.lsn}"

    def discard_read_ahead(self) -> None:
        """The tail slot and the file go (on an undo, or once the export has read them)."""
        reader, adopted = self.reader, self.adopted
        self.reader = self.ahead = self.adopted = None
        if reader is not None:
            reader.discard()
        if adopted is not None:
            forget(self.cfg.database, adopted.tail_slot, adopted.path)

    def _decode(self, conn: Any, slot: str, upto_lsn: str | None) -> Iterable[DecodedChange]:
        """The snapshot's slot, split at the read-ahead when its tail slot is still there."""
        ahead = self.ahead
        if ahead is None or not tail_intact(conn, ahead):
            return decode_slot(conn, slot, upto_lsn)
        self.split_used = True
        return chained(ahead, self._count_tail(decode_slot(conn, ahead.tail_slot, upto_lsn)))

    def _count_tail(self, changes: Iterable[DecodedChange]) -> Iterator[DecodedChange]:
        for change in changes:
            self.tail_changes += 1
            yield change

    def close(self, live: str, staging: str) -> dict[str, str]:
        """Right after the services stopped: nobody may connect to either database until the start
        (but a superuser, which ignores the ``CONNECTION LIMIT 0`` a superuser helper closes with: its
        commits until the swap are read too, see :meth:`swapped`)."""
        limit = connection_limit(self.cfg.database, live)
        set_connections(self.cfg.database, live, False)
        set_connections(self.cfg.database, staging, False)
        self.stop = {**self.stop, "connection_limit": str(limit)}
        return self.stop

    def swapped(self, lsn: str | None) -> dict[str, str]:
        """The swap's rename committed (*lsn*: :func:`written_until` of its connection; None when a
        resume finds it committed by the interrupted run): the replaced database can no longer be
        written, and the slot is read up to here. Taken once: a resume keeps the journaled one (a
        later position would do as well, as nothing writes to the kept database after the swap)."""
        if not self.stop.get("swapped_lsn"):
            if lsn is None:
                with maintenance(self.cfg.database) as conn:
                    lsn = written_until(conn)
            self.stop = {**self.stop, "swapped_lsn": lsn}
        return self.stop

    @property
    def limit(self) -> int:
        return int(self.stop.get("connection_limit", -1))

    def reachable_for_checks(self, live: str) -> None:
        """Before the checks of the restored database: a helper that is not a superuser cannot
        read a database closed to everyone, so it opens it now (a stray writer then has from here
        to the start, and what it writes stays in the restored database: it is not lost)."""
        if not self.opened and not helper_is_superuser(self.cfg.database):
            self.open_live(live)

    def open_live(self, live: str) -> dict[str, str]:
        """Right before the services start: the restored database takes connections again; from this
        instant on, what is written there would be lost by an undo."""
        if self.opened:
            return self.opened
        self.opened = {**server_position(self.cfg.database), "tuples": tuple_changes(self.cfg.database, live)}
        set_connections(self.cfg.database, live, True, self.limit)
        return self.opened

    def read_replaced(
        self, failed: str, live: str, folder: Path, filestores: tuple[Path, Path] | None = None
    ) -> tuple[LostChanges, dict[str, Any]]:
        """The changes made after the snapshot in the replaced database, exported, with the files of
        the lost attachments (*filestores*: the kept one and the restored one; see lost_files.py). The
        snapshot's slot is not touched: :meth:`release_slot` drops it once the restore is known to
        stand."""
        set_connections(self.cfg.database, failed, True, self.limit)
        manifest = self.snapshot.manifest
        with connect(self.cfg.database, failed) as conn, connect(self.cfg.database, live) as live_conn:
            changes = collect(
                conn,
                manifest.capture,
                manifest.created_at,
                self.cfg.counts.tables,
                # None (read it all) for a restore journaled before this position was: as safe.
                upto_lsn=self.stop.get("swapped_lsn"),
                keys=self.keys,
                decoder=self._decode,
            )
            compare_restored(changes, conn, live_conn)
            files = export(conn, changes, folder)
            summary = odoo_summary(changes, conn, live_conn)
        attached: dict[str, Any] = {}
        if filestores is not None:
            lost_files = export_files(changes.rows, filestores[0], filestores[1], folder)
            changes.limits.extend(lost_files.limits)
            attached = {"lost_files": lost_files.report()}
        read_ahead = (
            {"lost_read_ahead": {**self.ahead.report(), "changes_after": self.tail_changes}}
            if self.ahead and self.split_used
            else {}
        )
        return changes, {
            **changes.report(),
            **read_ahead,
            **files,
            **attached,
            "lost_summary": summary,
            "lost_export": export_archive(folder),
        }

    def release_slot(self, changes: LostChanges) -> None:
        """After a healthy start, once the lost changes are safe on disk: the snapshot's slot is
        dropped (it would hold WAL and the database). Before, an undo puts the replaced database
        back live with its slot, and a later restore still reports exactly."""
        self.discard_read_ahead()
        slot = slot_of(self.snapshot.manifest)
        if slot and changes.mode == "exact":
            drop_slot(self.cfg.database, slot)

    def rescue_restored(self, restored: str, folder: Path) -> dict[str, Any]:
        """An undo after the start, once the sessions are ended: the rows written into the restored
        database since it was opened, exported. ``keep`` says whether anything was written there
        (rows found, or the server's tuple counters moved): then the caller keeps it, not drops it."""
        if not self.opened:
            return {"keep": False, "lost_rows_total": 0}
        # Read before the scan (its temporary tables of the snapshot's keys count as tuples too), once
        # the ended sessions are gone: a backend flushes its counters before it leaves pg_stat_activity.
        sessions_gone(self.cfg.database, restored)
        touched = tuple_changes(self.cfg.database, restored)
        with connect(self.cfg.database, restored) as conn:
            known = (self.snapshot.manifest.capture or {}).get("schema") or user_tables(conn)
            # The restored database was the snapshot when it was opened: its keys are the snapshot's.
            rows, limits = scan_written(conn, self.opened["snapshot"], known, self.keys)
            changes = LostChanges(FALLBACK, rows, limits=limits)
            files = export(conn, changes, folder)
        keep = len(rows) > 0 or touched != self.opened.get("tuples")
        return {"keep": keep, **changes.report(), **files}


def sessions_gone(db_cfg: DatabaseConfig, name: str, timeout: float = 5.0) -> None:
    """Wait (up to *timeout*) until no session is connected to *name* any more."""
    deadline = time.monotonic() + timeout
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
                (name,),
            )
            if cur.fetchone()[0] == 0:
                return
            time.sleep(0.05)


def tuple_changes(db_cfg: DatabaseConfig, name: str) -> str:
    """The server's count of rows inserted, updated and deleted in *name* (flushed when sessions end)."""
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT (tup_inserted + tup_updated + tup_deleted)::text FROM pg_stat_database WHERE datname = %s",
            (name,),
        )
        row = cur.fetchone()
    return row[0] if row else ""
