"""A database's advisory locks: one helper at a time changes a database, whatever its storage folder.

Two keys per database, both session-level advisory locks (``pg_try_advisory_lock``) taken on a
connection to the maintenance database that stays open for the whole run:

- ``odoo-rollback:<db>``: held exclusively by every operation that changes the database (snapshot,
  restore, resume, deploy, drill, prune, copy, import, deep verify), so that the operations of two
  helpers (two configuration files, two storage folders) on one database never run at once, as two on
  one storage folder never do (the file lock of :mod:`odoo_rollback.lock`).
- ``odoo-rollback:restore:<db>``: held exclusively, on top, while the live database may be replaced
  (a restore, a rollback, a resume). A standby build, which runs beside a deployment and so takes
  neither, probes it (shared) and refuses while it is held.

PostgreSQL keys an advisory lock by the database the session is connected to as well: all helpers of
one server lock in the maintenance database (``[database] maintenance_db``, ``postgres`` by default),
never in the live database, which a restore renames and whose sessions it ends. The server releases the
locks when the session ends: when the helper exits or dies (``kill -9`` included, as its connection
closes), so a lock is never left behind. The session's application_name says which helper holds it
(pid and host), for the refusal of the other.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg2
import psycopg2.extensions

from .config import DatabaseConfig
from .db import explain_connect_error
from .errors import DatabaseError, PreconditionError

# How often a waiting run (``resume --wait``) asks for the lock again.
WAIT_INTERVAL_SECONDS = 0.5
# application_name is cut at 63 bytes by the server.
_APP_PREFIX = "odoo-rollback lock"

_HOLDER = """
SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start
  FROM pg_locks l
  LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::text::bigint = %s AND l.objid::text::bigint = %s AND l.pid <> pg_backend_pid()
 LIMIT 1
"""


def lock_key(dbname: str, purpose: str = "") -> int:
    """The advisory lock's 64-bit key for *dbname*: the same in every helper, whatever its version of
    Python (a digest, not hash()), and apart from other applications' keys by its prefix."""
    text = f"odoo-rollback:{purpose + ':' if purpose else ''}{dbname}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def _halves(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _scalar(conn: psycopg2.extensions.connection, query: str, args: tuple[Any, ...]) -> Any:
    with conn.cursor() as cur:
        cur.execute(query, args)
        row = cur.fetchone()
    return row[0] if row else None


def holder_of(conn: psycopg2.extensions.connection, key: int) -> str:
    """Who holds *key*: the helper's pid and host from its session's name when the role may read
    it, else the server process."""
    try:
        with conn.cursor() as cur:
            cur.execute(_HOLDER, _halves(key))
            row = cur.fetchone()
    except psycopg2.Error:
        return "another helper"
    if row is None:
        return "another helper"
    pid, app, addr, since = row
    if isinstance(app, str) and app.startswith(_APP_PREFIX):
        who = f"another helper ({app[len(_APP_PREFIX) :].strip(' ()') or 'unknown process'})"
    else:
        who = f"another helper (server process {pid}{f' from {addr}' if addr else ''})"
    return f"{who}, since {since:%Y-%m-%dT%H:%M:%S}" if since is not None else who


class DatabaseLock:
    """The advisory locks this run holds on one database, on its own connection."""

    def __init__(self, cfg: DatabaseConfig, conn: psycopg2.extensions.connection, refused: type[PreconditionError]):
        self.cfg = cfg
        self.conn = conn
        self.refused = refused
        self.restoring = False

    def take(self, key: int, what: str, wait: bool, shared: bool = False) -> None:
        """Take *key*, or raise *refused* naming the holder (*wait*: until it is free)."""
        function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        while not _scalar(self.conn, f"SELECT {function}(%s)", (key,)):
            if not wait:
                raise self.refused(
                    f"{what} is running on database {self.cfg.name} from {holder_of(self.conn, key)};"
                    " try again once it has finished"
                )
            time.sleep(WAIT_INTERVAL_SECONDS)

    def release(self, key: int, shared: bool = False) -> None:
        function = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
        _scalar(self.conn, f"SELECT {function}(%s)", (key,))

    @contextmanager
    def restore(self, wait: bool = False) -> Iterator[None]:
        """The restore lock on top, for a restore nested in an operation (a deployment's)."""
        key = lock_key(self.cfg.name, "restore")
        self.take(key, "a restore", wait)
        self.restoring = True
        try:
            yield
        finally:
            self.restoring = False
            with suppress(psycopg2.Error):  # a lost connection has released it already
                self.release(key)


def lock_connection(cfg: DatabaseConfig) -> psycopg2.extensions.connection:
    """A connection to the maintenance database named after this process, for the locks only."""
    params = cfg.connect_params(cfg.maintenance_db)
    params["application_name"] = f"{_APP_PREFIX} (pid {os.getpid()} on {socket.gethostname()})"[:63]
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.OperationalError as exc:
        raise DatabaseError(
            f"{explain_connect_error(exc, params)}; the helper locks database {cfg.name} there before it changes it"
        ) from exc
    conn.autocommit = True
    return conn


@contextmanager
def database_lock(
    cfg: DatabaseConfig, *, restoring: bool, wait: bool = False, refused: type[PreconditionError] = PreconditionError
) -> Iterator[DatabaseLock]:
    """Hold the database's operation lock (with *restoring*, its restore lock too) for the block;
    the connection's end releases them, however the block ends."""
    conn = lock_connection(cfg)
    try:
        lock = DatabaseLock(cfg, conn, refused)
        lock.take(lock_key(cfg.name), "a mutating operation", wait)
        if restoring:
            with lock.restore(wait):
                yield lock
        else:
            yield lock
    finally:
        conn.close()


def restore_running(cfg: DatabaseConfig) -> str | None:
    """Who restores the database now (any helper), or None: a shared probe of the restore lock."""
    conn = lock_connection(cfg)
    try:
        key = lock_key(cfg.name, "restore")
        if _scalar(conn, "SELECT pg_try_advisory_lock_shared(%s)", (key,)):
            return None  # the session's end (below) releases the probe
        return holder_of(conn, key)
    finally:
        conn.close()
