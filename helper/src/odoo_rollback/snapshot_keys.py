"""The snapshot's own primary keys of the tracked tables: what the fallback capture compares with.

Without a replication slot, a deletion is a key the snapshot had and the database no longer has, and an
insert is told from an update by whether the snapshot had the key. The snapshot records those keys
itself, read in the dump's exact transaction while pg_dump runs: ``keys/<table>.tsv.gz``, one per
tracked table that exists and has a primary key, ``COPY ... TO STDOUT`` text in key order, listed in the
manifest's ``files`` (so ``verify`` checks them) and named with their columns in ``capture["keys"]``.
So a rollback with a warm standby, a resume after a crash and the plan know the deletions too, not only
a restore that stages. Neither side holds the keys in Python: they stream from the server to the file,
and back from the file into a TEMP table that the comparison reads in SQL (lost_rows.scan_written).

A snapshot taken before this has no keys: a restore that stages writes the staging database's keys the
same way into a private folder (:func:`staging_keys`), and the others report the stated limit.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from .checksums import describe_files
from .lost_rows import primary_keys, table_ident, user_tables
from .manifest import Manifest

KEYS_DIR = "keys"
CHUNK = 1 << 20


def key_file(table: str) -> str:
    """The file of *table*'s keys, relative to the snapshot folder (config validates table names)."""
    return f"{KEYS_DIR}/{table}.tsv.gz"


def write_keys(conn: Any, tables: Iterable[str], folder: Path) -> dict[str, list[str]]:
    """In *conn*'s current transaction: the primary keys of each of *tables* that exists and has one,
    streamed into ``folder/keys/<table>.tsv.gz``; returns {table: key columns}."""
    pks = primary_keys(conn)
    names = user_tables(conn)
    keyed: dict[str, list[str]] = {}
    with conn.cursor() as cur:
        for table in tables:
            if table not in names or table not in pks:
                continue
            (folder / KEYS_DIR).mkdir(exist_ok=True)  # only with a file in it: an empty one is unlisted
            columns = sql.SQL(", ").join(map(sql.Identifier, pks[table]))
            query = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT").format(
                columns, table_ident(names[table]), columns
            )
            # Level 1: integer keys shrink well already, and the dump's own compression runs beside.
            with gzip.open(folder / key_file(table), "wb", compresslevel=1) as out:
                cur.copy_expert(query.as_string(conn), out, size=CHUNK)
            keyed[table] = list(pks[table])
    return keyed


class _HashingReader:
    """A file read through: its bytes hashed and counted as gzip reads them."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1, /) -> bytes:
        data: bytes = self.raw.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data

    def seek(self, offset: int, /) -> object:
        raise io.UnsupportedOperation("a key file is read once, front to back")

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


@dataclass
class SnapshotKeys:
    """Key files and their expected size and sha256: the snapshot's own, or a staging database's."""

    root: Path
    keyed: dict[str, list[str]]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of_manifest(cls, root: Path, manifest: Manifest) -> SnapshotKeys | None:
        """The keys a snapshot recorded, or None for a snapshot taken before snapshots recorded them."""
        keyed = (manifest.capture or {}).get("keys")
        if keyed is None:
            return None
        return cls(root, {t: list(c) for t, c in keyed.items()}, dict(manifest.files))

    def copy_into(self, cur: Any, table: str, target: sql.Composable) -> str | None:
        """Load *table*'s keys into *target* (a table with the key columns); what is wrong with the
        file, or None. The bytes are hashed as they are read: the caller uses *target* only on None."""
        name = key_file(table)
        entry = self.files.get(name)
        if entry is None:
            return f"{name} is not in the manifest"
        try:
            with (self.root / name).open("rb") as raw:
                reader = _HashingReader(raw)
                with gzip.GzipFile(fileobj=reader, mode="rb") as keys:
                    cur.copy_expert(sql.SQL("COPY {} FROM STDIN").format(target).as_string(cur), keys, size=CHUNK)
                reader.drain()
        except FileNotFoundError:
            return f"{name} is missing"
        except (OSError, EOFError, zlib.error) as exc:
            return f"{name} is unreadable ({exc})"
        except psycopg2.Error as exc:
            return f"{name} does not load ({str(exc).strip().splitlines()[0]})"
        if reader.size != entry["size"] or reader.digest.hexdigest() != entry["sha256"]:
            return f"{name} differs from the manifest (altered)"
        return None


def staging_keys(conn: Any, tables: Iterable[str], folder: Path) -> SnapshotKeys:
    """A snapshot without keys: the staged copy's keys (it is the snapshot), written into *folder*."""
    keyed = write_keys(conn, tables, folder)
    return SnapshotKeys(folder, keyed, describe_files(folder) if keyed else {})
