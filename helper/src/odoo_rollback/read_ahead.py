"""Reading the snapshot's slot ahead of the stop, so that what is left to read after the start does
not grow with the database.

The snapshot's slot is peeked, never consumed: every reading starts at the snapshot. Between the
snapshot and the stop lies the whole WAL of the staging restore (about the database's size), and
decoding it took 0.6 s at 2 GB after the services had started. So, once pg_restore has loaded staging,
a second slot, the *tail*, is created on the live database. Its consistent point P splits the changes
exactly in two, whatever commits meanwhile:

- the snapshot's slot peeked up to P gives the transactions whose commit record begins before P
  (PostgreSQL stops after the record that reaches P);
- the tail slot gives those whose commit record begins at P or later (it skips a commit below its
  confirmed position, and a new slot is consistent: it decodes whole every transaction committing
  after P).

The first part is read while staging is analyzed and checked (the services still run), into a private
file; after the stop only the tail is read. The snapshot's slot is not touched: whatever goes wrong
(no free slot, a long transaction holding the tail's creation back, a failed read, a crash), the
restore reads it whole, as without this. The tail slot goes after the export, or with any undo.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

from .capture import PLUGIN, drop_slot, tail_slot_name
from .checksums import sha256_file
from .config import DatabaseConfig
from .db import connect
from .decoding import DecodedChange, parse_change
from .errors import OperationFailed, RollbackError
from .lost_rows import peek_lines, slot_usable
from .storage import PARTIAL_PREFIX, partial_in_use


@dataclass(frozen=True)
class ReadAhead:
    """The snapshot's changes up to ``lsn``, on disk, and the slot that has every one after it."""

    tail_slot: str
    lsn: str
    path: Path
    count: int  # row changes (not BEGIN and COMMIT lines)
    sha256: str | None = None  # of the file, for one kept (a warm standby's)

    def changes(self) -> Iterator[DecodedChange]:
        with self.path.open(encoding="utf-8") as lines:
            for line in lines:
                change = parse_change(json.loads(line))
                if change is not None:
                    yield change

    def report(self) -> dict[str, object]:
        return {"upto_lsn": self.lsn, "changes_before": self.count, "tail_slot": self.tail_slot}


def forget(db_cfg: DatabaseConfig, tail_slot: str | None, path: Path | None) -> None:
    """A read-ahead that is no longer wanted: its second slot dropped (it holds WAL), its file removed."""
    if tail_slot:
        drop_slot(db_cfg, tail_slot)
    if path is not None:
        path.unlink(missing_ok=True)


def tail_intact(conn: Any, ahead: ReadAhead) -> bool:
    """The second slot is the one the read-ahead made: on *conn*'s database, still starting where the
    reading stopped (a peek never moves it). One made again meanwhile, by the same name, would start
    later, and the changes in between would be in neither part."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()"
            " AND confirmed_flush_lsn = %s::pg_lsn",
            (ahead.tail_slot, ahead.lsn),
        )
        return cur.fetchone() is not None


def create_tail(conn: Any, name: str, wait_seconds: float | None = None) -> str | None:
    """The tail slot, created on *conn*'s database: its consistent point, or None when the creation
    failed, was cancelled or outlasted *wait_seconds* (the server drops a slot whose creation did not
    finish)."""
    try:
        with conn.cursor() as cur:
            if wait_seconds is not None:
                cur.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(wait_seconds * 1000)}ms",))
            cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)", (name, PLUGIN))
            return str(cur.fetchone()[0])
    except psycopg2.Error:
        return None


def read_up_to(db_cfg: DatabaseConfig, live: str, slot: str, lsn: str, target: Path, durable: bool = False) -> int:
    """The test_decoding lines of *slot* up to *lsn*, one JSON string a line (a value may hold a
    newline); how many of them are row changes. *durable*: on disk before this returns."""
    count = 0
    with connect(db_cfg, live) as conn, target.open("w", encoding="utf-8") as out:
        for data in peek_lines(conn, slot, lsn):
            out.write(json.dumps(data) + "\n")
            count += data.startswith("table ")
        if durable:
            out.flush()
            os.fsync(out.fileno())
    return count


def read_ahead_now(
    db_cfg: DatabaseConfig, live: str, snapshot_slot: str, tail_slot: str, target: Path, wait_seconds: float
) -> ReadAhead:
    """For a warm standby, once it is built: the tail slot, created now (waiting up to *wait_seconds*
    for the running transactions: nobody waits for a build), and the snapshot's slot up to its starting
    point in *target*, durable and hashed. Raises, the tail dropped, when it cannot be had."""
    with connect(db_cfg, live) as conn:
        if not slot_usable(conn, snapshot_slot):
            raise OperationFailed(f"the snapshot's slot {snapshot_slot} is not there to read ahead")
    drop_slot(db_cfg, tail_slot)  # one an earlier build left: only a new one is trusted
    try:
        with connect(db_cfg, live) as conn:
            lsn = create_tail(conn, tail_slot, wait_seconds)
        if lsn is None:
            raise OperationFailed(f"the slot {tail_slot} could not be created within {wait_seconds:g} s")
        count = read_up_to(db_cfg, live, snapshot_slot, lsn, target, durable=True)
        return ReadAhead(tail_slot, lsn, target, count, sha256_file(target))
    except BaseException:
        forget(db_cfg, tail_slot, target)
        raise


class SlotReader:
    """One restore's read-ahead: begun once staging is loaded, awaited before the stop."""

    def __init__(self, db_cfg: DatabaseConfig, root: Path, snapshot_slot: str) -> None:
        self.db_cfg = db_cfg
        self.snapshot_slot = snapshot_slot
        self.tail_slot = tail_slot_name(snapshot_slot)
        self.folder = root / f"{PARTIAL_PREFIX}ahead-{os.urandom(3).hex()}"
        self.cleanup = ExitStack()
        self.reading: Future[ReadAhead | None] | None = None
        self.guard = threading.Lock()
        self.creating: Any = None  # the connection creating the tail slot, while it does
        self.too_late = False

    def begin(self, live: str) -> None:
        self.cleanup.enter_context(partial_in_use(self.folder))
        self.cleanup.callback(shutil.rmtree, self.folder, ignore_errors=True)
        self.folder.mkdir(mode=0o700)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
        self.reading = pool.submit(self._read, live)
        pool.shutdown(wait=False)  # the thread ends with its one task

    def _read(self, live: str) -> ReadAhead | None:
        drop_slot(self.db_cfg, self.tail_slot)  # one an earlier run could not drop: only a new one is trusted
        with connect(self.db_cfg, live) as conn:
            with self.guard:
                if self.too_late:
                    return None
                self.creating = conn
            try:
                lsn = create_tail(conn, self.tail_slot)
            finally:
                with self.guard:
                    self.creating = None
        if lsn is None:
            return None
        path = self.folder / "changes.jsonl"
        count = read_up_to(self.db_cfg, live, self.snapshot_slot, lsn, path)
        return ReadAhead(self.tail_slot, lsn, path, count)

    def _no_later_creation(self) -> None:
        """Creating a slot waits for every transaction running at that moment to end (a cron of minutes
        would hold it for as long): a creation still waiting when the reading is needed is cancelled,
        and none begins after. A reading under way goes on: it is the work the export would do."""
        with self.guard:
            self.too_late = True
            if self.creating is not None:
                self.creating.cancel()

    def result(self) -> tuple[ReadAhead | None, str | None]:
        """Waits for the reading (before the stop: it holds a session on the live database); the
        read-ahead, or None and why not."""
        if self.reading is None:
            return None, "not begun"
        self._no_later_creation()
        try:
            ahead = self.reading.result()
        except (RollbackError, OSError, psycopg2.Error) as exc:
            self.discard()
            return None, str(exc).strip() or exc.__class__.__name__
        if ahead is None:
            self.discard()
            return None, "the tail slot could not be created before the stop"
        return ahead, None

    def discard(self) -> None:
        """The tail slot and the file go (the snapshot's slot holds every change anyway)."""
        if self.reading is not None:
            self._no_later_creation()
            # A reading still running holds the slot (and its session): the slot is dropped after it.
            try:
                self.reading.exception()
            finally:
                self.reading = None
        try:
            drop_slot(self.db_cfg, self.tail_slot)
        finally:
            self.cleanup.close()


def chained(ahead: ReadAhead, tail: Iterable[DecodedChange]) -> Iterator[DecodedChange]:
    """The snapshot's changes before the tail's consistent point, then the tail's: in commit order."""
    yield from ahead.changes()
    yield from tail
