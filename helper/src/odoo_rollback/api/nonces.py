"""The nonces of the requests the API accepted, in a SQLite file: a restart of ``serve`` forgets none.

Kept in memory only, they would be lost by a crash, an upgrade or a socket-activated start, and a
captured request would be accepted again while its timestamp is still within the clock skew. The file
is in the storage folder, beside the journal.

A nonce is inserted under its PRIMARY KEY in its own committed transaction (WAL, synchronous=FULL) before
the request is acted upon: of two requests carrying the same nonce, even in two processes, exactly one
inserts it; after a crash the nonce of any request that may have been acted upon is on disk. A nonce is
forgotten once its timestamp can no longer pass the clock-skew check (with the same margin again, for a
clock set back). When the file cannot be written, requests are refused (fail closed), never let through
unrecorded.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import StorageError

FILE_NAME = "api-nonces.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    nonce TEXT PRIMARY KEY,
    timestamp INTEGER NOT NULL   -- the request's signed timestamp (seconds since the epoch)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_timestamp ON nonces(timestamp);
"""


class NonceStore:
    """Nonces seen within the clock-skew window, durable across restarts and shared between processes."""

    def __init__(self, path: Path, window: int) -> None:
        self.path = path
        self.window = window
        # Made at start: serve refuses to start rather than accept requests it could not remember.
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"storage {path.parent} cannot hold the API's nonce file: {exc.strerror}") from exc
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per request: threads and processes each get theirs; SQLite serialises the writers.
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                yield conn
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            reason = _reason(exc, self.path)
            raise StorageError(f"the API's nonce file {self.path} cannot be written: {reason}") from exc

    def add(self, nonce: str, timestamp: int, now: float) -> bool:
        """Remember *nonce*; False if it was already seen (a replay)."""
        try:
            with self._connect() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute("DELETE FROM nonces WHERE timestamp < ?", (int(now) - 2 * self.window,))
                    conn.execute("INSERT INTO nonces (nonce, timestamp) VALUES (?, ?)", (nonce, timestamp))
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            return False
        return True


def _reason(exc: BaseException, path: Path) -> str:
    """Why the file cannot be written. SQLite says "disk I/O error" when a full disk stops it from growing
    its shared-memory file: the free space tells which it is."""
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    try:
        full = shutil.disk_usage(path.parent).free < 2**16
    except OSError:
        full = False
    return f"No space left on device ({exc})" if full else str(exc)
