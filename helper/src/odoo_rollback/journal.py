"""The journal: what the helper did and in what state it left things, outside the Odoo database.

It is a SQLite file in the storage folder, so that it survives the replacement of the database it
describes. Every write is its own committed transaction (WAL, synchronous=FULL), written *before* and
*after* each step: after a crash (even kill -9) the last line says exactly how far an operation got,
which is what ``odoo-rollback resume`` reads.

Two tables:
- ``operations``: one row per snapshot, restore, drill or deployment, with its state and result.
- ``events``: an append-only log of steps; ``seq`` is the cursor that Odoo imports from.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import EXIT_FAILED, StorageError
from .events import DONE as STEP_DONE
from .events import SKIPPED, RunProgress, StepEvent
from .owner import Owner

SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,           -- snapshot, restore, drill, deploy
    state TEXT NOT NULL,          -- running, done, failed, undone
    database TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id TEXT NOT NULL REFERENCES operations(id),
    at TEXT NOT NULL,
    step TEXT NOT NULL,
    status TEXT NOT NULL,         -- start, done, failed, info
    message TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_operation ON events(operation_id, seq);
CREATE INDEX IF NOT EXISTS operations_kind ON operations(kind, started_at);
-- The API finds the operation of one of its jobs by the job's id (kept in the operation's data).
CREATE INDEX IF NOT EXISTS operations_job ON operations(json_extract(data, '$.job_id'));
"""

JOB_ENV_VAR = "ODOO_ROLLBACK_JOB_ID"


class JournalError(StorageError):
    """The journal cannot be written (its disk is full, or it is read-only)."""

    exit_code = EXIT_FAILED  # met during an operation, which it stops

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def _reason(exc: BaseException, folder: Path) -> str:
    """Why the journal cannot be written. SQLite says "disk I/O error" when a full disk stops it from
    growing its shared-memory file: the free space tells which it is."""
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    try:
        full = shutil.disk_usage(folder).free < 2**16
    except OSError:
        full = False
    return f"No space left on device ({exc})" if full else str(exc)


RUNNING = "running"
DONE = "done"
FAILED = "failed"
UNDONE = "undone"  # a restore that was swapped back


def utcnow() -> str:
    """ISO 8601 UTC time with microseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Operation:
    id: str
    kind: str
    state: str
    database: str | None
    started_at: str
    finished_at: str | None
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "database": self.database,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "data": self.data,
        }


@dataclass(frozen=True)
class Event:
    seq: int
    operation_id: str
    at: str
    step: str
    status: str
    message: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "operation_id": self.operation_id,
            "at": self.at,
            "step": self.step,
            "status": self.status,
            "message": self.message,
            "data": self.data,
        }


class Journal:
    """Append-only record of operations and their steps."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                conn.executescript(SCHEMA)
        except OSError as exc:
            raise StorageError(f"storage {path.parent} cannot hold the journal: {exc.strerror}") from exc
        except JournalError as exc:
            raise StorageError(f"storage {path.parent} cannot hold the journal: {exc.reason}") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A full disk or a read-only journal is one clear line, never a traceback: the operation
        # that was writing fails (or, for a step already done, is closed by the next run).
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.row_factory = sqlite3.Row
                yield conn
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            reason = _reason(exc, self.path.parent)
            raise JournalError(f"the journal {self.path} cannot be written: {reason}", reason) from exc

    # -- writing --------------------------------------------------------------------------------
    def begin(
        self, kind: str, database: str | None, data: dict[str, Any] | None = None, operation_id: str | None = None
    ) -> str:
        """Record the start of an operation and return its id.

        When the helper runs a command as a job of its API, ``$ODOO_ROLLBACK_JOB_ID`` names the job; it
        is kept in the operation's data so that the API can find the operation of a job. The owner
        (this process's PID and start time) tells a later run whether the operation is still alive.
        """
        data = {**(data or {}), "owner": Owner.me().as_dict()}
        job_id = os.environ.get(JOB_ENV_VAR)
        if job_id:
            data.setdefault("job_id", job_id)
        op_id = operation_id or f"{kind}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        now = utcnow()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO operations (id, kind, state, database, started_at, data) VALUES (?, ?, ?, ?, ?, ?)",
                (op_id, kind, RUNNING, database, now, json.dumps(data or {}, sort_keys=True)),
            )
            conn.execute(
                "INSERT INTO events (operation_id, at, step, status, message, data) VALUES (?, ?, ?, ?, ?, ?)",
                (op_id, now, kind, "start", f"{kind} started", json.dumps(data or {}, sort_keys=True)),
            )
            conn.execute("COMMIT")
        return op_id

    def event(
        self, operation_id: str, step: str, status: str, message: str = "", data: dict[str, Any] | None = None
    ) -> int:
        """Append one step line; returns its sequence number."""
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO events (operation_id, at, step, status, message, data) VALUES (?, ?, ?, ?, ?, ?)",
                (operation_id, utcnow(), step, status, message, json.dumps(data or {}, sort_keys=True, default=str)),
            )
            return int(cur.lastrowid or 0)

    def update(self, operation_id: str, data: dict[str, Any]) -> None:
        """Merge *data* into the operation's data (e.g. the staging database's name)."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT data FROM operations WHERE id = ?", (operation_id,)).fetchone()
            merged = {**json.loads(row["data"]), **data} if row else data
            conn.execute(
                "UPDATE operations SET data = ? WHERE id = ?",
                (json.dumps(merged, sort_keys=True, default=str), operation_id),
            )
            conn.execute("COMMIT")

    def finish(self, operation_id: str, state: str, message: str = "", data: dict[str, Any] | None = None) -> None:
        """Record the end of an operation, with its final state and result."""
        now = utcnow()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT kind, data FROM operations WHERE id = ?", (operation_id,)).fetchone()
            merged = {**json.loads(row["data"]), **(data or {})} if row else (data or {})
            conn.execute(
                "UPDATE operations SET state = ?, finished_at = ?, data = ? WHERE id = ?",
                (state, now, json.dumps(merged, sort_keys=True, default=str), operation_id),
            )
            conn.execute(
                "INSERT INTO events (operation_id, at, step, status, message, data) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    operation_id,
                    now,
                    row["kind"] if row else "operation",
                    state,
                    message,
                    json.dumps(data or {}, sort_keys=True, default=str),
                ),
            )
            conn.execute("COMMIT")

    # -- reading --------------------------------------------------------------------------------
    def operation(self, operation_id: str) -> Operation | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM operations WHERE id = ?", (operation_id,)).fetchone()
        return _operation(row) if row else None

    def operation_of_job(self, job_id: str) -> Operation | None:
        """The operation a job of the API journaled (its newest, should a job ever journal two)."""
        query = "SELECT * FROM operations WHERE json_extract(data, '$.job_id') = ? ORDER BY started_at DESC LIMIT 1"
        with self._connect() as conn:
            row = conn.execute(query, (job_id,)).fetchone()
        return _operation(row) if row else None

    def operations(self, kind: str | None = None, state: str | None = None, limit: int = 100) -> list[Operation]:
        """Operations, newest first."""
        query = "SELECT * FROM operations WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR state = ?)"
        query += " ORDER BY started_at DESC LIMIT ?"
        with self._connect() as conn:
            rows = conn.execute(query, (kind, kind, state, state, limit)).fetchall()
        return [_operation(row) for row in rows]

    def events(self, since: int = 0, operation_id: str | None = None, limit: int = 1000) -> list[Event]:
        """Events after the cursor *since*, oldest first."""
        query = "SELECT * FROM events WHERE seq > ? AND (? IS NULL OR operation_id = ?) ORDER BY seq LIMIT ?"
        with self._connect() as conn:
            rows = conn.execute(query, (since, operation_id, operation_id, limit)).fetchall()
        return [_event(row) for row in rows]

    def unfinished(self, kind: str | None = None) -> list[Operation]:
        """Operations recorded as running, oldest first: alive, or left so by a crash (see ``owner``)."""
        return list(reversed(self.operations(kind=kind, state=RUNNING, limit=1000)))

    def last_event(self, operation_id: str) -> Event | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM events WHERE operation_id = ? ORDER BY seq DESC LIMIT 1", (operation_id,)
            ).fetchone()
        return _event(row) if row else None


def owner_of(operation: Operation) -> Owner | None:
    """The process that runs (or ran) *operation*; None when it was recorded without one."""
    return Owner.from_data(operation.data.get("owner"))


def _event(row: sqlite3.Row) -> Event:
    return Event(
        row["seq"], row["operation_id"], row["at"], row["step"], row["status"], row["message"], json.loads(row["data"])
    )


class JournalWriter:
    """Writes the step events a run publishes as lines of its operation, before the run goes on.

    Subscribe it to the run's :class:`~odoo_rollback.events.RunProgress` first, so that its line is on
    disk before any other listener hears of the event. A done or skipped step is also added to the
    operation's ``completed`` list, which is where ``resume`` starts again from.
    """

    def __init__(self, journal: Journal, progress: RunProgress) -> None:
        self.journal = journal
        self.progress = progress

    def __call__(self, event: StepEvent) -> None:
        operation = self.progress.operation
        try:
            self.journal.event(operation, event.step, event.status, event.message, event.data)
            if event.is_step and event.status in (STEP_DONE, SKIPPED):
                self.journal.update(operation, {"completed": list(self.progress.view().completed)})
        except JournalError:
            # A line that cannot be written stops a run before its step acts. Once the run has failed,
            # though, putting things back matters more than the record of it: the undo goes on, and
            # resume later closes the operation from what it finds.
            if self.progress.view().error is None:
                raise


def _operation(row: sqlite3.Row) -> Operation:
    return Operation(
        row["id"],
        row["kind"],
        row["state"],
        row["database"],
        row["started_at"],
        row["finished_at"],
        json.loads(row["data"]),
    )
