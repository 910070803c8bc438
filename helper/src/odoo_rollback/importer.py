"""``odoo-rollback import FILE``: an Odoo backup zip or a pg_dump file made a verified snapshot.

The file is loaded into a scratch database ``<db>__import_<time>`` owned by the live database's owner
(so that a restore of the result gives Odoo its own tables), and everything the manifest records is
read from there: installed modules and their versions, the server version, exact row counts. The
snapshot's dump is then taken from that scratch database in the helper's own format, the filestore is
copied from the zip into the snapshot's tar without being unpacked, the checksums are written, and
the snapshot is verified like any other. The scratch database is dropped whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from .checksums import describe_files, sha256_file
from .config import Config
from .counts import exact_counts
from .db import connect
from .dump import create_database, database_owner, drop_database, dump_database
from .errors import OperationFailed, PreconditionError, UsageError
from .journal import DONE, FAILED, Journal
from .lock import operation_lock
from .manifest import DUMP_NAME, FILESTORE_NAME, MANIFEST_NAME, Manifest
from .modules import installed_modules, server_version
from .process import error_line, run
from .storage import Snapshot, SnapshotStore, fsync_dir, partial_in_use, write_atomically
from .verify import scratch_name, verify_snapshot

CHUNK = 1 << 20
ZIP, CUSTOM, DIRECTORY, PLAIN = "odoo-zip", "pg_dump custom", "pg_dump directory", "plain SQL"


def detect_format(path: Path) -> str:
    """What *path* is, or UsageError saying it is none of the accepted formats."""
    if path.is_dir():
        if (path / "toc.dat").is_file():
            return DIRECTORY
        raise UsageError(f"{path} is a folder but not a pg_dump directory (no toc.dat)")
    if not path.is_file():
        raise UsageError(f"{path} does not exist")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if "dump.sql" not in zf.namelist():
                raise UsageError(f"{path} is a zip without dump.sql: not an Odoo backup")
        return ZIP
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"PGDMP"):
        return CUSTOM
    if b"PostgreSQL database dump" in head or head.startswith(b"--"):
        return PLAIN
    raise UsageError(f"{path} is neither an Odoo backup zip nor a pg_dump file (plain, custom or directory)")


def _psql(cfg: Config, dbname: str, owner: str | None, source: IO[bytes]) -> None:
    """Feed plain SQL to psql, stopping at the first error; the objects belong to *owner*."""
    env = cfg.database.libpq_env()
    if owner:
        env["PGOPTIONS"] = f"-c role={owner}"
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            ["psql", "--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1", f"--dbname={dbname}", "--file=-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=env,
        )
        assert process.stdin is not None
        with process, contextlib.suppress(BrokenPipeError):  # psql stopped on an error: its stderr says which
            shutil.copyfileobj(source, process.stdin, CHUNK)
            process.stdin.close()
        if process.returncode != 0:
            errors.seek(0)
            raise OperationFailed(f"psql failed: {error_line(errors.read().decode(errors='replace'))}")


def load_into(cfg: Config, path: Path, kind: str, dbname: str, owner: str | None) -> None:
    if kind == ZIP:
        with zipfile.ZipFile(path) as zf, zf.open("dump.sql") as sql_file:
            _psql(cfg, dbname, owner, sql_file)
    elif kind == PLAIN:
        with path.open("rb") as sql_file:
            _psql(cfg, dbname, owner, sql_file)
    else:
        run(
            [
                "pg_restore",
                "--no-owner",
                *([f"--role={owner}"] if owner else []),
                "--exit-on-error",
                "--no-password",
                f"--jobs={cfg.storage.effective_jobs if kind == DIRECTORY else 1}",
                f"--dbname={dbname}",
                str(path),
            ],
            env=cfg.database.libpq_env(),
            what="pg_restore",
        )


def filestore_tar(path: Path, kind: str, target: Path) -> int:
    """The snapshot's filestore tar, copied member by member from the zip's ``filestore/``."""
    files = 0
    with tarfile.open(target, "w") as tar:
        if kind == ZIP:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    name = info.filename.removeprefix("filestore/")
                    if info.filename == name or info.is_dir() or not name or ".." in name.split("/"):
                        continue
                    member = tarfile.TarInfo(f"./{name}")
                    member.size = info.file_size
                    member.mtime = datetime(*info.date_time, tzinfo=timezone.utc).timestamp()
                    with zf.open(info) as source:
                        tar.addfile(member, source)
                    files += 1
    return files


def zip_manifest(path: Path, kind: str) -> dict[str, Any]:
    if kind != ZIP:
        return {}
    with zipfile.ZipFile(path) as zf:
        if "manifest.json" not in zf.namelist():
            return {}
        try:
            data = json.loads(zf.read("manifest.json"))
        except ValueError:
            return {}
    return data if isinstance(data, dict) else {}


def read_scratch(cfg: Config, scratch: str, source: str) -> tuple[dict[str, str], str, dict[str, int | None]]:
    """Installed modules, server version and exact counts, read from the loaded scratch database."""
    with connect(cfg.database, scratch) as conn:
        modules = installed_modules(conn)
        version = server_version(conn)
        counts = exact_counts(conn, cfg.counts.tables)
        with conn.cursor() as cur:
            cur.execute("ANALYZE")
    if not modules:
        raise PreconditionError(f"{source} holds no Odoo database (no installed module in ir_module_module)")
    return modules, version, counts


def import_backup(cfg: Config, path: Path, label: str, journal: Journal) -> tuple[Snapshot, list[str]]:
    """Make *path* a verified snapshot; returns it and the differences found against the zip's manifest."""
    kind = detect_format(path)
    store = SnapshotStore(cfg.storage)
    store.ensure_writable()
    with operation_lock(cfg.storage.path, journal, "import", database=cfg.database):
        return _import(cfg, store, path, kind, label, journal)


def _import(
    cfg: Config, store: SnapshotStore, path: Path, kind: str, label: str, journal: Journal
) -> tuple[Snapshot, list[str]]:
    owner = database_owner(cfg.database, cfg.database.name)
    snapshot_id = store.new_id("imported")
    scratch = scratch_name(cfg.database.name, "import")
    source = ImportSource(path, kind, label or f"imported from {path.name}")
    op = journal.begin(
        "import", cfg.database.name, {"snapshot": snapshot_id, "file": str(path), "format": kind, "scratch": scratch}
    )
    partial = store.partial_path(snapshot_id)
    created = False
    try:
        partial.mkdir()
        with partial_in_use(partial):
            journal.event(op, "load", "start", data={"database": scratch})
            create_database(cfg.database, scratch, owner)
            created = True
            load_into(cfg, path, kind, scratch, owner)
            journal.event(op, "load", "done")
            manifest, notes = _write(cfg, source, scratch, snapshot_id, partial, journal, op)
        final = store.commit(snapshot_id)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        journal.finish(op, FAILED, str(exc) or exc.__class__.__name__)
        raise
    finally:
        if created:
            drop_database(cfg.database, scratch)
    result = verify_snapshot(cfg, Snapshot(snapshot_id, final, manifest), deep=False, journal=journal)
    if not result.ok:
        journal.finish(op, FAILED, "; ".join(result.problems))
        raise OperationFailed(f"imported snapshot {snapshot_id} failed its verification: {'; '.join(result.problems)}")
    snapshot = store.get(snapshot_id)
    journal.finish(op, DONE, f"{path.name} imported as {snapshot_id}", {"summary": snapshot.summary(), "notes": notes})
    return snapshot, notes


@dataclass(frozen=True)
class ImportSource:
    path: Path
    kind: str
    label: str


def _write(
    cfg: Config, source: ImportSource, scratch: str, snapshot_id: str, partial: Path, journal: Journal, op: str
) -> tuple[Manifest, list[str]]:
    """The snapshot's files, from the loaded scratch database and the zip's filestore; the manifest last."""
    notes: list[str] = []
    modules, version, counts = read_scratch(cfg, scratch, source.path.name)
    declared = zip_manifest(source.path, source.kind).get("modules")
    if isinstance(declared, dict) and declared != modules:
        differing = sorted(set(declared.items()) ^ set(modules.items()))
        notes.append(f"the zip's manifest.json lists other module versions: {differing[:5]}")
    journal.event(op, "dump", "start")
    dump_database(cfg.database, scratch, partial / DUMP_NAME, cfg.storage.effective_jobs)
    filestore_tar(source.path, source.kind, partial / FILESTORE_NAME)
    files: dict[str, dict[str, Any]] = {
        FILESTORE_NAME: {
            "size": (partial / FILESTORE_NAME).stat().st_size,
            "sha256": sha256_file(partial / FILESTORE_NAME),
        }
    }
    files.update({f"{DUMP_NAME}/{name}": entry for name, entry in describe_files(partial / DUMP_NAME).items()})
    journal.event(op, "dump", "done")
    manifest = Manifest(
        id=snapshot_id,
        kind="imported",
        label=source.label,
        created_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        database=cfg.database.name,
        server_version=version,
        modules=modules,
        code_revision=None,
        counts=counts,
        files=files,
    )
    write_atomically(partial / MANIFEST_NAME, manifest.to_json())
    fsync_dir(partial)
    return manifest, notes
