"""Odoo's backup zip, both ways: what Odoo's database manager, ``auto_backup`` and ``click-odoo-backupdb`` write.

The zip holds ``dump.sql`` (plain SQL, ``pg_dump --no-owner``), ``filestore/`` (the attachments, as
in Odoo's data folder) and ``manifest.json`` (``odoo/service/db.py``, ``dump_db_manifest``), with
``dump.sql`` first as ``dump_db`` writes it.

Export streams: pg_restore writes the SQL into the zip entry as it goes and the filestore is copied
from the snapshot's tar member by member, so a snapshot of any size goes to a file, a pipe or an HTTP
response without being held in memory or unpacked on disk.

Only checked bytes are exported, as only checked bytes are restored: pg_restore reads the checked
private copy of the dump (verify.staged_dump), and the filestore archive is hashed as it is streamed
(checksums.read_verified). An archive that differs from its manifest entry by the end fails the export
and the zip is left without its closing record, so that no reader takes it for a backup.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .checksums import read_verified
from .config import StorageConfig
from .errors import OperationFailed, PreconditionError
from .manifest import FILESTORE_NAME
from .process import error_line
from .storage import Snapshot
from .verify import check_integrity, staged_dump, unlocked_read_root

CHUNK = 1 << 20


def odoo_manifest(snapshot: Snapshot) -> dict[str, Any]:
    """manifest.json as Odoo's dump_db_manifest writes it, from the snapshot's own manifest."""
    base = snapshot.manifest.modules.get("base", "")
    major = ".".join(base.split(".")[:2]) if base.count(".") >= 1 else ""
    parts = [int(p) if p.isdigit() else p for p in major.split(".")] if major else []
    pg = snapshot.manifest.server_version.split()[0].split(".")
    return {
        "odoo_dump": "1",
        "db_name": snapshot.manifest.database,
        "version": major,
        "version_info": [*parts, 0, "final", 0, ""] if parts else [],
        "major_version": major,
        "pg_version": ".".join(pg[:2]) if len(pg) > 1 else f"{pg[0]}.0",
        "modules": snapshot.manifest.modules,
    }


def _stream_sql(dump_path: Path, target: IO[bytes]) -> None:
    """Plain SQL of a directory-format dump, as ``pg_dump --no-owner`` would have written it."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            ["pg_restore", "--no-owner", "--no-privileges", "--file=-", str(dump_path)],
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        assert process.stdout is not None
        with process:
            shutil.copyfileobj(process.stdout, target, CHUNK)
        if process.returncode != 0:
            errors.seek(0)
            raise OperationFailed(
                f"pg_restore to plain SQL failed: {error_line(errors.read().decode(errors='replace'))}"
            )


class _Output:
    """The zip's stream, cut off once the export has failed: zipfile writes its closing record (the
    central directory) on the way out of its ``with`` even then, and a zip without it is unreadable,
    not a backup with entries missing. Without tell() and seek(), zipfile writes as to a pipe."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.failed = False

    def write(self, data: bytes) -> int:
        if not self.failed:
            self.stream.write(data)
        return len(data)

    def flush(self) -> None:
        if not self.failed:
            self.stream.flush()

    def close(self) -> None:
        """The stream is the caller's to close."""


def write_odoo_zip(storage: StorageConfig, snapshot: Snapshot, stream: IO[bytes]) -> None:
    """Write *snapshot* as an Odoo backup zip to *stream* (a file, a pipe: seeking is not needed).

    Runs without the operation lock (beside a restore, say): the checked copy of the dump is made in
    a folder of its own (verify.unlocked_read_root)."""
    problems = check_integrity(snapshot)
    if problems:
        raise PreconditionError(f"snapshot {snapshot.id} failed its checks: {'; '.join(problems)}")
    output = _Output(stream)
    with (
        unlocked_read_root(storage.path) as root,
        staged_dump(snapshot, root, storage.free_space_margin) as dump,
        zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as zf,
    ):
        try:
            with zf.open("dump.sql", "w", force_zip64=True) as entry:
                _stream_sql(dump, entry)
            _stream_filestore(snapshot, zf)
            zf.writestr("manifest.json", json.dumps(odoo_manifest(snapshot), indent=4))
        except BaseException:
            output.failed = True
            raise


def _stream_filestore(snapshot: Snapshot, zf: zipfile.ZipFile) -> None:
    """The archive's files as ``filestore/...`` entries, its bytes hashed as tarfile reads them."""
    archive = snapshot.filestore_archive
    with (
        read_verified(archive, snapshot.manifest.files[FILESTORE_NAME]) as reader,
        _unreadable_is_failure(snapshot.id),
        tarfile.open(fileobj=reader, mode="r|") as tar,  # type: ignore[call-overload]
    ):
        for member in tar:
            name = member.name.removeprefix("./").strip("/")
            if not member.isfile() or not name or ".." in name.split("/"):
                continue
            info = zipfile.ZipInfo(f"filestore/{name}", date_time=_zip_time(member.mtime))
            info.compress_type = zipfile.ZIP_DEFLATED
            source = tar.extractfile(member)
            assert source is not None
            with source, zf.open(info, "w", force_zip64=member.size > 2**31) as entry:
                shutil.copyfileobj(source, entry, CHUNK)


@contextmanager
def _unreadable_is_failure(snapshot_id: str) -> Iterator[None]:
    try:
        yield
    except tarfile.TarError as exc:
        raise OperationFailed(f"{FILESTORE_NAME} of snapshot {snapshot_id} cannot be read as a tar: {exc}") from exc


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    moment = time.gmtime(max(mtime, 315532800))  # zip dates start in 1980
    return (moment.tm_year, moment.tm_mon, moment.tm_mday, moment.tm_hour, moment.tm_min, moment.tm_sec)
