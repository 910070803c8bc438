"""One mutating operation at a time on a configured database.

snapshot, restore (and rollback), drill, deploy, prune, resume and a deep verify each hold an exclusive
``flock`` on ``<storage>/operation.lock`` for their whole run, as pgBackRest holds its stanza lock. The
kernel drops the lock when its holder's process ends, however it ends (``kill -9`` included): a lock
is never left behind, and "the lock is free" means "no such operation is alive". While one is held, a
second operation is refused with who holds it (its PID, step and start, from the journal); ``resume``
waits for it with ``--wait``. Operations in the journal that are still ``running`` once the lock is
taken were left by a dead run (see :mod:`odoo_rollback.leftovers`).

The lock is re-entrant within one process: a deployment takes its snapshot and, if it fails, its
restore under the lock it already holds.

The file lock keeps apart the runs of one storage folder only; two helpers (two configuration files,
two storage folders) on one database would not see each other's. So an operation that changes the
database also holds a PostgreSQL session-level advisory lock keyed on the database's name, on a
connection to the maintenance database kept open for the run (see :mod:`odoo_rollback.db_lock`): the
server releases it when that connection ends, however the helper ends, and a second helper is refused as
a second run on the same storage is.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from datetime import datetime
from pathlib import Path

from .config import DatabaseConfig
from .db_lock import DatabaseLock, database_lock
from .errors import PreconditionError, StorageError
from .journal import Journal, Operation, owner_of, utcnow
from .owner import Owner, pid_exists

LOCK_NAME = "operation.lock"
# A probe of the lock (the API asking whether it may start a job) holds it for microseconds: a run
# that finds it taken looks again for this long before it concludes that another operation runs.
PROBE_GRACE_SECONDS = 1.0

# Operations that may replace the live database: they also hold the database's restore lock, which a
# standby build (not an operation of this lock: it runs beside a deployment) probes before it starts.
RESTORING_KINDS = frozenset({"restore", "resume"})


class _Held:
    """A lock this process holds: how deep, and the database's advisory locks with it."""

    def __init__(self, database: DatabaseLock | None) -> None:
        self.depth = 1
        self.database = database


_held: dict[str, _Held] = {}  # lock path -> what this process holds
_guard = threading.Lock()


class OperationRunning(PreconditionError):
    """Another mutating operation holds the lock; nothing was changed."""


def lock_path(storage: Path) -> Path:
    return storage / LOCK_NAME


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not inherited by children (O_CLOEXEC): a pg_dump must not keep the lock of a dead helper.
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StorageError(f"storage {path.parent} cannot hold the operation lock: {exc.strerror}") from exc


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _record_holder(fd: int, kind: str) -> None:
    """Who holds the lock, for the refusals of others; only a hint (the journal is the record), so a
    full disk that keeps it from being written does not stop the operation."""
    text = json.dumps({**Owner.me().as_dict(), "kind": kind, "since": utcnow()}).encode()
    with suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)


def _read_holder(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def moment(iso: str | None) -> str:
    try:
        return datetime.fromisoformat(str(iso)).isoformat(timespec="seconds")
    except ValueError:
        return "at an unknown time"


def describe_operation(journal: Journal, op: Operation) -> str:
    """What runs, for the refusals of others: "a restore is running (pid N, step S, started T)"."""
    owner = owner_of(op)
    last = journal.last_event(op.id)
    step = last.step if last else "starting"
    pid = owner.pid if owner else "unknown"
    return f"a {op.kind} is running (pid {pid}, step {step}, started {moment(op.started_at)})"


def describe_holder(storage: Path, journal: Journal) -> str:
    """The operation that holds the lock: "a restore is running (pid N, step S, started T)"."""
    holder = _read_holder(lock_path(storage))
    pid = holder.get("pid")
    # The newest operation of the holding process: a deployment's restore rather than the deployment.
    running = [op for op in journal.unfinished() if (owner := owner_of(op)) is not None and owner.pid == pid]
    if running:
        return describe_operation(journal, running[-1])
    kind = holder.get("kind") or "mutating operation"
    return f"a {kind} is running (pid {pid or 'unknown'}, step starting, started {moment(holder.get('since'))})"  # type: ignore[arg-type]


def running_elsewhere(storage: Path, journal: Journal) -> str | None:
    """Who holds the lock, when another process does; None when it is free (for the API's job runner)."""
    path = lock_path(storage)
    if not path.exists():
        return None
    with _guard:
        if os.path.realpath(path) in _held:
            return None
    fd = _open(path)
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            return None
    finally:
        os.close(fd)
    return describe_holder(storage, journal)


@contextmanager
def operation_lock(
    storage: Path, journal: Journal, kind: str, wait: bool = False, *, database: DatabaseConfig | None
) -> Iterator[None]:
    """Hold the lock of *storage* for a *kind* operation, and with a *database*, that database's
    advisory locks (None: an operation that changes only the storage folder); refused with who holds
    them, or (*wait*) waiting for them."""
    path = lock_path(storage)
    key = os.path.realpath(path)
    with _guard:
        held = _held.get(key)
        if held is not None:
            held.depth += 1
    if held is not None:
        try:
            with _nested_restore(held, kind):
                yield
        finally:
            with _guard:
                held.depth -= 1
        return
    fd = _open(path)
    try:
        deadline = time.monotonic() + PROBE_GRACE_SECONDS
        while not _try_lock(fd, fcntl.LOCK_EX):
            if wait:
                fcntl.flock(fd, fcntl.LOCK_EX)
                break
            if time.monotonic() > deadline:
                raise OperationRunning(f"{describe_holder(storage, journal)}; try again once it has finished")
            time.sleep(0.05)
        # Then the database's: the storage's holder is the one to name when both are taken.
        with (
            database_lock(database, restoring=kind in RESTORING_KINDS, wait=wait, refused=OperationRunning)
            if database is not None
            else nullcontext()
        ) as db_lock:
            _record_holder(fd, kind)
            with _guard:
                _held[key] = _Held(db_lock)
            try:
                yield
            finally:
                with _guard:
                    del _held[key]
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


@contextmanager
def _nested_restore(held: _Held, kind: str) -> Iterator[None]:
    """A deployment's restore: the database's restore lock too, for as long as the restore runs."""
    if held.database is None or kind not in RESTORING_KINDS or held.database.restoring:
        yield
        return
    with held.database.restore():
        yield


# The journal's kinds of operation that run under the lock from their start to their end (a verify
# only when deep; a standby build and drop have a lock of their own).
LOCKED_KINDS = frozenset({"snapshot", "restore", "deploy", "drill", "prune", "copy", "import", "fetch", "drop_kept"})


def runs_under_lock(op: Operation) -> bool:
    return op.kind in LOCKED_KINDS or (op.kind == "verify" and bool(op.data.get("deep")))


def operation_alive(storage: Path, op: Operation) -> bool:
    """Whether *op*'s process still runs. While this process holds the lock of *storage*, no other
    process runs an operation that holds it: the lock proves the recorded one dead, where its pid
    cannot (given to another process in a new PID namespace, or recorded by an old container under
    another hostname, which Owner.alive() must assume alive). Otherwise its owner's pid and start."""
    owner = owner_of(op)
    me = Owner.me()
    if owner is not None and (owner.pid, owner.start, owner.host) == (me.pid, me.start, me.host):
        return True  # this process's own (a deployment's, under the restore it runs)
    if runs_under_lock(op) and holds_lock(storage):
        return False
    if owner is not None:
        return owner.alive()
    pid = op.data.get("pid")  # recorded before owners were: the pid alone, alive if it may be
    return not isinstance(pid, int) or pid <= 0 or pid_exists(pid)


def holds_lock(storage: Path) -> bool:
    """Whether this process holds the lock of *storage* (then no other locked operation is alive)."""
    with _guard:
        return os.path.realpath(lock_path(storage)) in _held
