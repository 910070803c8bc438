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
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path

from .errors import PreconditionError, StorageError
from .journal import Journal, Operation, owner_of, utcnow
from .owner import Owner

LOCK_NAME = "operation.lock"
# A probe of the lock (the API asking whether it may start a job) holds it for microseconds: a run
# that finds it taken looks again for this long before it concludes that another operation runs.
PROBE_GRACE_SECONDS = 1.0

_held: dict[str, list[int]] = {}  # lock path -> [file descriptor, depth] held by this process
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
def operation_lock(storage: Path, journal: Journal, kind: str, wait: bool = False) -> Iterator[None]:
    """Hold the lock of *storage* for a *kind* operation; refused with who holds it, or (*wait*)
    waiting for it."""
    path = lock_path(storage)
    key = os.path.realpath(path)
    with _guard:
        if key in _held:
            _held[key][1] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _guard:
                _held[key][1] -= 1
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
        _record_holder(fd, kind)
        with _guard:
            _held[key] = [fd, 1]
        try:
            yield
        finally:
            with _guard:
                del _held[key]
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def holds_lock(storage: Path) -> bool:
    """Whether this process holds the lock of *storage* (then no other locked operation is alive)."""
    with _guard:
        return os.path.realpath(lock_path(storage)) in _held
