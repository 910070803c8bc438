"""A warm standby: a verified snapshot restored ahead of need, so that a rollback to it is a swap.

Built right after a snapshot is verified (always by ``deploy``; by ``snapshot`` with ``--standby`` or
``[standby] after_snapshot``), in a process of its own at the lowest CPU and I/O priority, its server
backends too, while Odoo runs. The build's steps, each journaled (operation kind ``standby``):

1. ``check``      the snapshot is verified and its checksums still hold; the database and the filestore
                  copies fit on their disks (a superseded standby's space counts as free).
2. ``supersede``  older standbys of the database are dropped: at most one exists, each a database's size.
3. ``restore``    pg_restore (``[standby] jobs``, default 1) into ``<db>__standby_<time>``, created as
                  the live database's owner (as staging is), then owned by the helper's role until it
                  is used, so that Odoo neither lists nor opens it.
4. ``filestore``  the archive into ``.<filestore>__standby_<time>`` beside the live filestore. Odoo names
                  an attachment by the SHA-1 of its content and never rewrites one in place, so a file
                  whose bytes equal the live file of the same name (and hash to that name) is hard-linked
                  to it: no copy, no space. Anything else, or where the file system refuses links, is
                  copied from the archive. Each file, once placed, is read back and its identity taken
                  while its bytes are proven the archive's (see :func:`verified_file`): the listing.
                  An archive member that is not a regular file or a folder gets no standby.
5. ``close``      ALLOW_CONNECTIONS false and every other session ended; then, through the one connection
                  left, the exact counts and module versions compared with the manifest (restore_dump
                  vacuumed it: the first reads after a rollback are not slow).
6. ``ready``      its identity written to ``<storage>/standby/<snapshot id>.json``: the database's oid, the
                  xmin of its ``pg_database`` row (any ALTER DATABASE, such as opening it to connections,
                  makes a new one), ``pg_stat_database.sessions`` (every connection made to it counts),
                  its database-level settings, comment and security labels (none: ALTER DATABASE ... SET
                  writes ``pg_db_role_setting``, not its row) and the sha256 of the filestore's listing,
                  kept beside it in ``<snapshot id>.files.json``.

A restore uses a standby only after :func:`prove_standby` holds, once before the services stop and
once more right before the swap; otherwise it restores from the snapshot as before. Never are
unverified bytes put live.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import psycopg2
from psycopg2 import sql

from .capture import STANDBY_TAIL_SUFFIX, slot_of, tail_slot_name
from .checksums import HashingReader, sha256_file
from .config import Config
from .counts import exact_counts
from .db import connect, database_exists, end_sessions, maintenance
from .db_lock import restore_running
from .dump import database_owner, drop_database, restore_dump
from .errors import OperationFailed, PreconditionError, RollbackError, StorageError
from .journal import DONE, FAILED, JOB_ENV_VAR, Journal
from .manifest import FILESTORE_NAME
from .modules import database_size, installed_modules
from .owner import process_start
from .read_ahead import ReadAhead, forget, read_ahead_now
from .standby_state import (
    BUILDING,
    READY,
    STANDBY_DIR,
    StandbyState,
    ahead_path,
    listing_path,
    listing_text,
    lock_is_free,
    read_listing,
    read_state,
    standby_lock_path,
    state_path,
)
from .standby_state import FAILED as STATE_FAILED
from .storage import PARTIAL_PREFIX, Snapshot, SnapshotStore, write_atomically
from .verify import check_listing, compare_counts, staged_dump

# Odoo's filestore layout: <2 hex>/<40 hex SHA-1 of the content>.
ATTACHMENT_PATH = re.compile(r"^([0-9a-f]{2})/(\1[0-9a-f]{38})$")
CHUNK = 1 << 20
# Attachments up to this size are compared with the live file in memory before they are linked; larger
# ones (rare in a filestore) are copied.
LINK_MAX_BYTES = 64 << 20
CLI = (sys.executable, "-m", "odoo_rollback.cli")
# Someone reading whether a build runs (standby_state.lock_is_free) holds the lock for microseconds:
# a build that finds it taken looks again for this long before it concludes that another one runs.
PROBE_GRACE_SECONDS = 1.0
# How long a restore waits for a cancelled build to clean up after itself.
CANCEL_SECONDS = 60
# How long the build's read-ahead waits for the transactions running when it creates its slot (a
# deployment's module update is one long transaction): the standby is not ready meanwhile, and a
# restore that begins then stops the build and stages. Past this it is ready without a read-ahead.
STANDBY_TAIL_WAIT_SECONDS = 2.0
# health's row for the standbys (a deployment's verdict leaves it out: disk is monitoring's concern).
STANDBY_CHECK = "storage (standby)"


@dataclass(frozen=True)
class StandbyNames:
    database: str
    filestore: Path
    # Its read-ahead of the snapshot's slot: the second slot (None without a slot) and the file.
    ahead_slot: str | None
    ahead_file: Path


def standby_names(cfg: Config, snapshot: Snapshot) -> StandbyNames:
    """``<db>__standby_<YYYYmmddHHMMSS of the snapshot>``: like the restore's names, within 63 bytes."""
    stamp = snapshot.id[:8] + snapshot.id[9:15]
    fs = cfg.filestore.path
    slot = slot_of(snapshot.manifest)
    return StandbyNames(
        f"{cfg.database.name}__standby_{stamp}",
        fs.parent / f".{fs.name}__standby_{stamp}",
        tail_slot_name(slot, STANDBY_TAIL_SUFFIX) if slot else None,
        ahead_path(snapshot.path),
    )


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- one standby operation at a time ------------------------------------------------------------
@contextmanager
def standby_lock(cfg: Config, wait: float = 0.0) -> Iterator[None]:
    """Held by a build, a drop and a restore using a standby; the holder's pid is in the file."""
    path = standby_lock_path(cfg.storage.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        deadline = time.monotonic() + max(wait, PROBE_GRACE_SECONDS)
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PreconditionError(
                        f"another standby operation is running (process {lock_holder(cfg) or '?'})"
                    ) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_holder(cfg: Config) -> int | None:
    try:
        text = standby_lock_path(cfg.storage.path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cancel_build(cfg: Config, journal: Journal | None = None, op: str | None = None) -> bool:
    """Stop a standby build that holds the lock (it drops what it made); True when one was stopped.

    Only a live build is stopped, and never another process: a build holds the standby lock for its
    whole run, so a free lock means that no build runs, whatever pid its file and a dead build's record
    still hold (the kernel may have given it to another program); a held one is a build's when the
    holder's pid is the one a building record names, with that process's start time.
    """
    if lock_is_free(standby_lock_path(cfg.storage.path)):
        return False
    pid = lock_holder(cfg)
    building = [state for _, state in existing_standbys(cfg) if state.state == BUILDING and state.pid == pid]
    if not pid or pid == os.getpid() or not any(state.builder_alive(None) for state in building):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if journal and op:
        journal.event(op, "standby", "info", f"the standby build (process {pid}) was stopped: the restore stages")
    # It ends its pg_restore and drops its half-made copy, then releases the lock.
    with standby_lock(cfg, wait=CANCEL_SECONDS):
        pass
    return True


# -- priority -----------------------------------------------------------------------------------
def lower_own_priority() -> str:
    """Nice 19 and the idle I/O class for this process and its children (pg_restore)."""
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    ionice = _ionice(os.getpid())
    return "nice 19" + (", idle I/O" if ionice else "")


def _ionice(pid: int) -> bool:
    try:
        return subprocess.run(["ionice", "-c", "3", "-p", str(pid)], capture_output=True, check=False).returncode == 0
    except OSError:
        return False


class LowPriorityBackends:
    """The server's backends restoring into *dbname*, reniced while they run (when the server is on
    this host and the helper may; otherwise they keep their priority, and the build says so)."""

    def __init__(self, cfg: Config, dbname: str) -> None:
        self.cfg = cfg
        self.dbname = dbname
        self.reniced: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="standby-renice")

    def __enter__(self) -> LowPriorityBackends:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            with maintenance(self.cfg.database) as conn:
                while not self._stop.wait(0.5):
                    with conn.cursor() as cur:
                        cur.execute(
                            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
                            (self.dbname,),
                        )
                        pids = {row[0] for row in cur.fetchall()}
                    for pid in pids - self.reniced:
                        if self._local_backend(pid):
                            with contextlib.suppress(OSError):
                                os.setpriority(os.PRIO_PROCESS, pid, 19)
                                _ionice(pid)
                                self.reniced.add(pid)
        except RollbackError:
            return  # the build goes on at the backends' own priority

    def _local_backend(self, pid: int) -> bool:
        # Only a process of this host's server serving this database: never renice a stranger.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return cmdline.startswith("postgres") and f" {self.dbname} " in cmdline.replace("\0", " ")


# -- space ----------------------------------------------------------------------------------------
def data_directory(cfg: Config) -> Path | None:
    """PostgreSQL's data directory as this host sees it, or None when it cannot be seen from here."""
    if cfg.standby.data_directory:
        return cfg.standby.data_directory if cfg.standby.data_directory.is_dir() else None
    with maintenance(cfg.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
        row = cur.fetchone()
    path = Path(row[0]) if row and row[0] else None
    return path if path and (path / "PG_VERSION").is_file() else None


def filestore_copy_bytes(archive: Path, live: Path) -> int:
    """Bytes the standby filestore would copy: the archive's files that cannot be linked to the live ones."""
    total = 0
    with tarfile.open(archive, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            rel = _relative(member.name)
            target = live / rel if rel else None
            linkable = bool(rel and ATTACHMENT_PATH.match(rel)) and target is not None and target.is_file()
            if not (linkable and target is not None and target.stat().st_size == member.size):
                total += member.size
    return total


def existing_standbys(cfg: Config, store: SnapshotStore | None = None) -> list[tuple[Snapshot, StandbyState]]:
    store = store or SnapshotStore(cfg.storage)
    found = []
    for snapshot in store.list():
        state = read_state(snapshot.path)
        if state and snapshot.manifest.database == cfg.database.name:
            found.append((snapshot, state))
    return found


def space_report(cfg: Config, snapshot: Snapshot | None) -> dict[str, Any]:
    """Room for a (next) standby of *snapshot* (default: the newest snapshot), the current standbys'
    space counted as free (they are dropped first); ``ok`` False when it would not fit."""
    store = SnapshotStore(cfg.storage)
    current = existing_standbys(cfg, store)
    held = sum(s.database_bytes + s.copied_bytes for _, s in current)
    snapshot = snapshot or next(iter(store.list()), None)
    data_dir = data_directory(cfg)
    doc: dict[str, Any] = {"held": held, "standbys": [s.snapshot for _, s in current]}
    if snapshot is None:
        return {**doc, "ok": True, "detail": "no snapshot to build a standby of"}
    if data_dir is None:
        return {
            **doc,
            "ok": False,
            "detail": "PostgreSQL's data directory is not visible from this host: set [standby] data_directory",
        }
    with connect(cfg.database) as conn:
        db_needed = database_size(conn, cfg.database.name)
    fs_needed = filestore_copy_bytes(snapshot.filestore_archive, cfg.filestore.path)
    margin = 1 + cfg.storage.free_space_margin
    needs: dict[int, list[int]] = {}  # device -> [free, needed]
    for path, needed, reclaimed in (
        (data_dir, db_needed, sum(s.database_bytes for _, s in current)),
        (cfg.filestore.path.parent, fs_needed, sum(s.copied_bytes for _, s in current)),
    ):
        device = os.stat(path).st_dev
        entry = needs.setdefault(device, [shutil.disk_usage(path).free, 0])
        entry[0] += reclaimed
        entry[1] += int(needed * margin)
    ok = all(free >= needed for free, needed in needs.values())
    detail = (
        f"a standby of {snapshot.id} needs about {db_needed // 2**20} MiB in {data_dir} and "
        f"{fs_needed // 2**20} MiB of filestore copies beside {cfg.filestore.path}"
        + ("" if ok else ": too little free disk")
    )
    return {**doc, "ok": ok, "detail": detail, "database_bytes": db_needed, "filestore_bytes": fs_needed}


def storage_check(cfg: Config) -> dict[str, Any]:
    """health's row for the standbys: the space they hold, and room for the next one."""
    try:
        report = space_report(cfg, None)
    except RollbackError as exc:
        return {"name": STANDBY_CHECK, "ok": False, "detail": str(exc)}
    held = report["held"]
    detail = f"standby of {', '.join(report['standbys'])}: {held // 2**20} MiB; " if report["standbys"] else ""
    ok = report["ok"] or not cfg.standby.enabled
    return {"name": STANDBY_CHECK, "ok": ok, "detail": detail + report["detail"]}


# -- the filestore ----------------------------------------------------------------------------------
@dataclass
class FilestoreCopy:
    files: int = 0
    linked: int = 0
    copied: int = 0
    copied_bytes: int = 0
    link_problem: str | None = None
    # Relative path ("." for the root) -> its entry, as verified (see verified_file and _folder_entry).
    listing: dict[str, list[Any]] = field(default_factory=dict)


def _relative(name: str) -> str | None:
    """The member's path inside the filestore, or None for its root; refuses paths that leave it."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        return None
    if name.startswith("/") or ".." in parts:
        raise OperationFailed(f"the filestore archive holds a path outside the filestore: {name!r}")
    return "/".join(parts)


def _identity(st: os.stat_result) -> list[int]:
    """What a file's bytes being rewritten changes, through any of its names.

    st_ctime_ns is set by the kernel on every write, chmod, utime, link and unlink, and no call sets it
    back (os.utime puts mtime back, not ctime): a standby file is often a hard link to the live
    attachment, so a write into the live file in place is a write into the standby, and shows here.
    """
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink, st.st_mode, st.st_uid, st.st_gid]


# Where mode, uid and gid sit in an identity (they must never change: Odoo must read the files).
_ACCESS = slice(5, 8)


def verified_file(path: Path, sha256: str) -> list[Any] | None:
    """``["f", sha256, *identity]`` when *path* is a regular file (not followed if a link) whose bytes
    hash to *sha256* and whose identity did not change while they were read; else None.

    The identity is taken with the bytes it vouches for: a later write, even one between this check and
    the end of the build, changes it (the old listing was taken in ``close``, after the checks).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a fifo does not block
    except OSError:
        return None
    with open(fd, "rb") as handle:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return None
        digest = hashlib.sha256()
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
        after = os.fstat(fd)
    try:
        named = os.lstat(path)  # the path still names the file read
    except OSError:
        return None
    if digest.hexdigest() != sha256 or not _identity(before) == _identity(after) == _identity(named):
        return None
    return ["f", sha256, *_identity(after)]


def _folder_entry(st: os.stat_result) -> list[Any]:
    return ["d", st.st_mode, st.st_uid, st.st_gid]


def _write(dest: Path, data: bytes | IO[bytes], member: tarfile.TarInfo, as_root: bool) -> None:
    with dest.open("xb") as out:
        if isinstance(data, bytes):
            out.write(data)
        else:
            shutil.copyfileobj(data, out, CHUNK)
    os.chmod(dest, member.mode & 0o7777)
    if as_root:
        os.chown(dest, member.uid, member.gid)
    os.utime(dest, (member.mtime, member.mtime))


def _link(source: Path, dest: Path, result: FilestoreCopy) -> bool:
    """A hard link *dest* to *source*; False (and link_problem set) where the file system refuses."""
    try:
        os.link(source, dest, follow_symlinks=False)
    except OSError as exc:
        # EXDEV, EPERM, EMLINK, ENOTSUP...: copy this one and every other one.
        result.link_problem = f"hard links refused ({errno.errorcode.get(exc.errno or 0, exc)}): copied"
        return False
    return True


def _place_file(
    stream: IO[bytes], member: tarfile.TarInfo, rel: str, dest: Path, live: Path, result: FilestoreCopy, as_root: bool
) -> None:
    """Link the attachment to the live file holding the same bytes, or copy it from the archive; either
    way, read it back and record its identity with the bytes (see verified_file)."""
    match = ATTACHMENT_PATH.match(rel)
    source = live / rel
    if result.link_problem is None and match and member.size <= LINK_MAX_BYTES and source.is_file():
        data = stream.read()
        sha256 = hashlib.sha256(data).hexdigest()
        # Odoo names attachments so: a live file of another name's content is not worth linking. The
        # name is not trusted: the linked file's own bytes are read back and compared, below.
        if hashlib.sha1(data, usedforsecurity=False).hexdigest() == match[2] and _link(source, dest, result):
            entry = verified_file(dest, sha256)
            if entry is not None:
                result.listing[rel] = entry
                result.linked += 1
                return
            dest.unlink()  # the live file is not (or no longer) the archive's bytes: copied instead
        _write(dest, data, member, as_root)
    else:
        reader = HashingReader(stream)
        _write(dest, reader, member, as_root)  # type: ignore[arg-type]
        sha256 = reader.digest.hexdigest()
    entry = verified_file(dest, sha256)
    if entry is None:
        raise OperationFailed(f"{dest} changed as it was written from the archive")
    result.listing[rel] = entry
    result.copied += 1
    result.copied_bytes += member.size


@contextmanager
def _unreadable_is_failure(archive: Path) -> Iterator[None]:
    try:
        yield
    except tarfile.TarError as exc:
        raise OperationFailed(f"{archive} cannot be read as the snapshot's archive: {exc}") from exc


def build_filestore(archive: Path, expected: dict[str, Any], live: Path, target: Path) -> FilestoreCopy:
    """The archive's files into *target*: attachments equal to the live ones linked, the rest copied.

    The archive is read once, as a stream, and hashed: a size or sha256 other than *expected* (its
    manifest entry) raises OperationFailed once it is read, and the caller discards *target*.
    """
    result = FilestoreCopy()
    target.mkdir(exist_ok=False)
    as_root = os.geteuid() == 0
    dirs: list[tuple[Path, tarfile.TarInfo]] = []
    with (
        open(os.open(archive, os.O_RDONLY | os.O_NOFOLLOW), "rb") as handle,
        _unreadable_is_failure(archive),
    ):
        reader = HashingReader(handle)
        with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                rel = _relative(member.name)
                dest = target / rel if rel else target
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    dirs.append((dest, member))
                    continue
                if not member.isfile():
                    # Odoo's filestore holds files and folders only; whatever else cannot be proven.
                    raise OperationFailed(
                        f"the filestore archive holds {member.name!r}, neither a file nor a folder: no standby"
                        " (a restore extracts it)"
                    )
                dest.parent.mkdir(parents=True, exist_ok=True)
                result.files += 1
                stream = tar.extractfile(member)
                if stream is None:
                    raise OperationFailed(f"cannot read {member.name} from {archive}")
                _place_file(stream, member, rel or "", dest, live, result, as_root)
        reader.drain()
    if reader.size != expected["size"] or reader.digest.hexdigest() != expected["sha256"]:
        raise OperationFailed(f"{archive} differs from the snapshot's manifest (size or sha256): not used")
    for path, member in reversed(dirs):  # after their files, as tar does
        os.chmod(path, member.mode & 0o7777)
        if as_root:
            os.chown(path, member.uid, member.gid)
        os.utime(path, (member.mtime, member.mtime))
    result.listing.update(_folders(target))
    problems = filestore_problems(target, result.listing)
    if problems:
        raise OperationFailed(f"the standby filestore changed while it was built: {'; '.join(problems)}")
    return result


def _folders(root: Path) -> dict[str, list[Any]]:
    """The entries of *root* and every folder below it, as they are now (their modes are final)."""
    found = {".": _folder_entry(os.lstat(root))}
    for dirpath, dirnames, _files in os.walk(root):  # not into links: filestore_problems refuses them
        for name in dirnames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                found[path.relative_to(root).as_posix()] = _folder_entry(st)
    return found


# How many of the differences a refusal names.
PROBLEMS_SHOWN = 3


def filestore_problems(root: Path, listing: dict[str, list[Any]]) -> list[str]:
    """How *root* differs from the *listing* its build verified; empty when it holds those bytes.

    Every entry is looked at, not followed: a link or a special file is refused, whatever it points at.
    A file whose identity changed is not refused for that alone: linking or unlinking one of its names
    (Odoo's garbage collection deleting the live attachment, a rollback moving the live filestore away)
    changes its ctime and link count as a write does. Its bytes are then read again, and they decide.
    """
    problems: list[str] = []
    seen: set[str] = set()
    try:
        top = os.lstat(root)
    except OSError:
        return [f"{root} is gone"]
    if not stat.S_ISDIR(top.st_mode):
        return [f"{root} is not a folder (a link or a file)"]
    pending = [(root, ".", top)]
    while pending:
        folder, rel, st = pending.pop()
        seen.add(rel)
        if listing.get(rel) != _folder_entry(st):
            problems.append(f"the folder {rel} was added or its mode or owner changed")
        with os.scandir(folder) as entries:
            children = sorted(entries, key=lambda e: e.name)
        for entry in children:
            child_rel = entry.name if rel == "." else f"{rel}/{entry.name}"
            child_st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(child_st.st_mode):
                pending.append((Path(entry.path), child_rel, child_st))
                continue
            seen.add(child_rel)
            if not stat.S_ISREG(child_st.st_mode):
                problems.append(f"{child_rel} is neither a file nor a folder (a link or a special file)")
            else:
                problem = _file_problem(Path(entry.path), child_rel, child_st, listing.get(child_rel))
                if problem:
                    problems.append(problem)
    problems.extend(f"{rel} is missing" for rel in sorted(set(listing) - seen))
    if len(problems) > PROBLEMS_SHOWN:
        return [*problems[:PROBLEMS_SHOWN], f"{len(problems) - PROBLEMS_SHOWN} more"]
    return problems


def _file_problem(path: Path, rel: str, st: os.stat_result, expected: list[Any] | None) -> str | None:
    if expected is None or expected[0] != "f":
        return f"{rel} was added"
    if _identity(st) == expected[2:]:
        return None  # untouched since its bytes were verified
    again = verified_file(path, expected[1])
    if again is None:
        return f"{rel} was written after its bytes were verified"
    if again[2:][_ACCESS] != expected[2:][_ACCESS]:
        return f"{rel} changed its mode or owner"
    return None


# -- the database -----------------------------------------------------------------------------------
# What the shared catalogs hold of a database outside its pg_database row, which they do not touch:
# ALTER DATABASE ... SET and ALTER ROLE ... IN DATABASE ... SET (pg_db_role_setting: settings every
# session gets, such as default_transaction_read_only or session_replication_role = replica, which
# silences triggers and foreign keys), COMMENT ON DATABASE and SECURITY LABEL ON DATABASE. A dump
# restored without --create carries none; a standby with any was changed after it was built.
IDENTITY_QUERY = """
SELECT d.oid, d.xmin::text, d.datallowconn, s.sessions, s.stats_reset::text,
       (SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.oid AND a.backend_type = 'client backend'),
       ARRAY(
           SELECT 'setting for ' || COALESCE(quote_ident(r.rolname), 'every role') || ': '
                  || array_to_string(rs.setconfig, ', ')
             FROM pg_db_role_setting rs LEFT JOIN pg_roles r ON r.oid = rs.setrole WHERE rs.setdatabase = d.oid
           UNION ALL
           SELECT 'comment: ' || c.description FROM pg_shdescription c
            WHERE c.objoid = d.oid AND c.classoid = 'pg_database'::regclass
           UNION ALL
           SELECT 'security label (' || l.provider || '): ' || l.label FROM pg_shseclabel l
            WHERE l.objoid = d.oid AND l.classoid = 'pg_database'::regclass
           ORDER BY 1
       )
  FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
 WHERE d.datname = %s
"""


def database_identity(cfg: Config, name: str) -> dict[str, Any] | None:
    """oid, pg_database row xmin, datallowconn, sessions, stats_reset and the database-level settings
    (sorted, see IDENTITY_QUERY) of *name*; None when absent."""
    with maintenance(cfg.database) as conn, conn.cursor() as cur:
        cur.execute(IDENTITY_QUERY, (name,))
        row = cur.fetchone()
    if row is None:
        return None
    oid, xmin, allowconn, sessions, stats_reset, connected, settings = row
    return {
        "oid": int(oid),
        "row_xmin": xmin,
        "allow_connections": bool(allowconn),
        "sessions": None if sessions is None else int(sessions),
        "stats_reset": stats_reset,
        "connected": int(connected),
        "settings": [str(setting) for setting in settings],
    }


def _end_other_sessions(cfg: Config, name: str, keep_pid: int | None) -> None:
    deadline = time.monotonic() + 30
    with maintenance(cfg.database) as conn:
        while True:
            pids = end_sessions(conn, name, keep_pid)
            if not pids:
                return
            if time.monotonic() > deadline:
                raise OperationFailed(f"sessions on {name} do not end: {pids}")
            time.sleep(0.1)


def close_and_check(cfg: Config, name: str, snapshot: Snapshot) -> dict[str, Any]:
    """Close *name* to connections, then prove through the one session left that it equals the snapshot.

    The order matters: closed first, others ended, so that nothing written after the check can hide.
    """
    manifest = snapshot.manifest
    with connect(cfg.database, name) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            own_pid = cur.fetchone()[0]
        with maintenance(cfg.database) as admin, admin.cursor() as cur:
            cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        # restore_dump vacuumed it (vacuumdb --analyze): the first reads after a rollback are not slow,
        # and autovacuum finds nothing left to do in it.
        _end_other_sessions(cfg, name, own_pid)
        problems = compare_counts(manifest.counts, exact_counts(conn, list(manifest.counts)))
        if installed_modules(conn) != manifest.modules:
            problems.append("installed module versions differ from the snapshot's manifest")
    if problems:
        raise OperationFailed("the standby does not match the snapshot: " + "; ".join(problems))
    _end_other_sessions(cfg, name, None)  # our own session gone too: its statistics are written
    identity = database_identity(cfg, name)
    if identity is None or identity["allow_connections"] or identity["connected"]:
        raise OperationFailed(f"the standby {name} did not stay closed while it was checked")
    if identity["settings"]:
        raise OperationFailed(f"the standby {name} carries database-level settings: {'; '.join(identity['settings'])}")
    return identity


# -- build ------------------------------------------------------------------------------------------
def write_state(snapshot: Snapshot, state: StandbyState) -> None:
    path = state_path(snapshot.path)
    path.parent.mkdir(exist_ok=True)
    write_atomically(path, state.to_json())


def remove_state(snapshot_path: Path) -> None:
    for path in (state_path(snapshot_path), listing_path(snapshot_path)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _discard(
    cfg: Config, names: StandbyNames, database: bool = True, filestore: bool = True, ahead: bool = True
) -> None:
    """Drop a standby's database, filestore folder and read-ahead (only these names: they are the
    helper's), or of a build, only those it made."""
    if database:
        with maintenance(cfg.database) as conn:
            exists = database_exists(conn, names.database)
        if exists:
            drop_database(cfg.database, names.database)
    if filestore:
        shutil.rmtree(names.filestore, ignore_errors=True)
    if ahead:
        forget(cfg.database, names.ahead_slot, names.ahead_file)


def _terminate_on_sigterm() -> None:
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, handler)


class StandbyBuild:
    """One build, its journal operation and its record; the steps in the module's order."""

    def __init__(self, cfg: Config, snapshot: Snapshot, journal: Journal) -> None:
        self.cfg = cfg
        self.snapshot = snapshot
        self.journal = journal
        self.names = standby_names(cfg, snapshot)
        self.op = ""
        self.made = False  # whether this build wrote a record of its own
        # What this build made, each once it exists: a failure drops these and nothing else (a database
        # of the same name may be a restore's, which took the standby made by an earlier build).
        self.made_database = self.made_filestore = self.made_ahead = False
        self.state = StandbyState(
            snapshot=snapshot.id,
            state=BUILDING,
            database=self.names.database,
            filestore=str(self.names.filestore),
            operation="",
            pid=os.getpid(),
            start=process_start(os.getpid()),
            started_at=utcnow(),
        )

    @contextmanager
    def step(self, name: str, **data: Any) -> Iterator[dict[str, str]]:
        self.journal.event(self.op, name, "start", data=data)
        done = {"message": ""}
        try:
            yield done
        except BaseException as exc:
            self.journal.event(self.op, name, "failed", str(exc) or exc.__class__.__name__)
            raise
        self.journal.event(self.op, name, "done", done["message"])

    def check(self) -> str:
        cfg, snapshot = self.cfg, self.snapshot
        if snapshot.manifest.database != cfg.database.name:
            raise PreconditionError(f"snapshot {snapshot.id} is of another database")
        if not snapshot.manifest.verified_at:
            raise PreconditionError(f"snapshot {snapshot.id} is not verified: no standby is built of it")
        problems = check_listing(snapshot)  # the bytes are hashed as they are read, below
        if problems:
            raise PreconditionError(f"snapshot {snapshot.id} failed its checks: {'; '.join(problems)}")
        self.check_no_restore()
        space = space_report(cfg, snapshot)
        if not space["ok"]:
            raise StorageError(space["detail"])
        return str(space["detail"])

    def check_no_restore(self) -> None:
        """No build while a restore of the database is unfinished: it may have taken a standby, whose
        names are this build's, and its resume needs the server. Any helper's running restore holds the
        database's restore lock; a dead one of this storage is unfinished in the journal."""
        name = self.cfg.database.name
        running = restore_running(self.cfg.database)
        if running:
            raise PreconditionError(f"a restore of database {name} is running ({running}): no standby is built now")
        for pending in self.journal.unfinished("restore"):
            raise PreconditionError(
                f"restore {pending.id} of database {name} is unfinished: no standby is built before it is"
                " finished ('odoo-rollback resume')"
            )

    def supersede(self) -> None:
        for older, _state in existing_standbys(self.cfg):
            if older.id != self.snapshot.id:
                drop_standby(self.cfg, older, self.journal, f"superseded by the standby of {self.snapshot.id}", True)
        if read_state(self.snapshot.path) is not None:  # an earlier build of this very snapshot: afresh
            _discard(self.cfg, self.names)
            remove_state(self.snapshot.path)

    def restore(self) -> str:
        # pg_restore reads a private copy of exactly the listed dump files, hashed as they are copied
        # (verify.staged_dump), kept in the standby folder: the snapshots' one is cleaned by runs holding
        # the operation lock, which a build, running beside a deployment, does not hold.
        work = self.cfg.storage.path / STANDBY_DIR
        for leftover in work.glob(f"{PARTIAL_PREFIX}*"):  # a dead build's: builds hold the standby lock
            shutil.rmtree(leftover, ignore_errors=True)
        margin = self.cfg.storage.free_space_margin
        with (
            staged_dump(self.snapshot, work, margin) as dump,
            LowPriorityBackends(self.cfg, self.names.database) as backends,
        ):
            # Created as the live database's owner, as a restore's staging database is: the dump gives
            # its tables to that role, which a helper that is not a superuser can do only where that
            # role may create (PostgreSQL 15's schema public: its database's owner alone).
            owner = database_owner(self.cfg.database, self.cfg.database.name)
            # restore_dump refuses an existing database and drops a half-made one itself.
            restore_dump(self.cfg.database, dump, self.names.database, self.cfg.standby.jobs, owner=owner)
            self.made_database = True
        # Then owned by the helper's role until it is used: Odoo lists only its own databases.
        with maintenance(self.cfg.database) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(sql.Identifier(self.names.database)))
        if backends.reniced:
            self.state.priority += f"; {len(backends.reniced)} server backend(s) reniced"
        return self.state.priority

    def filestore(self) -> str:
        archive, entry = self.snapshot.filestore_archive, self.snapshot.manifest.files[FILESTORE_NAME]
        if os.path.lexists(self.names.filestore):
            raise PreconditionError(f"{self.names.filestore} already exists: not this build's")
        self.made_filestore = True  # absent under the standby lock: build_filestore makes it
        copy = build_filestore(archive, entry, self.cfg.filestore.path, self.names.filestore)
        state = self.state
        state.files, state.linked, state.copied = copy.files, copy.linked, copy.copied
        state.copied_bytes, state.link_problem = copy.copied_bytes, copy.link_problem
        state.listing = copy.listing
        return f"{copy.linked} linked, {copy.copied} copied ({copy.copied_bytes // 2**20} MiB)" + (
            f"; {copy.link_problem}" if copy.link_problem else ""
        )

    def close(self) -> None:
        state = self.state
        identity = close_and_check(self.cfg, self.names.database, self.snapshot)
        listing = state.listing or {}
        files = sum(1 for entry in listing.values() if entry[0] == "f")
        if files != state.files:
            raise OperationFailed(f"the standby filestore holds {files} files, the archive {state.files}")
        # Proven again now (nothing was added, nothing written since each file was verified), and kept.
        problems = filestore_problems(self.names.filestore, listing)
        if problems:
            raise OperationFailed(f"the standby filestore changed while it was built: {'; '.join(problems)}")
        text = listing_text(listing)
        write_atomically(listing_path(self.snapshot.path), text)
        state.files_digest = hashlib.sha256(text.encode()).hexdigest()
        with connect(self.cfg.database) as conn:
            state.database_bytes = database_size(conn, self.names.database)
        state.oid, state.row_xmin = identity["oid"], identity["row_xmin"]
        state.sessions, state.stats_reset = identity["sessions"], identity["stats_reset"]
        state.database_settings = identity["settings"]

    def read_ahead(self) -> str:
        """The snapshot's slot read now, up to a second slot kept with the standby: a rollback with it
        then reads after the stop only what came after the build (the build's own WAL, about the
        database's size, lies before). Only an optimization: the standby is ready without it."""
        slot, tail = slot_of(self.snapshot.manifest), self.names.ahead_slot
        if not slot or not tail:
            return "the snapshot has no replication slot: nothing to read ahead"
        self.made_ahead = True  # from here the slot and its file may exist
        try:
            ahead = read_ahead_now(
                self.cfg.database,
                self.cfg.database.name,
                slot,
                tail,
                self.names.ahead_file,
                STANDBY_TAIL_WAIT_SECONDS,
            )
        except (RollbackError, OSError, psycopg2.Error) as exc:
            return f"no read-ahead: {str(exc).strip()}"
        state = self.state
        state.ahead_slot, state.ahead_lsn, state.ahead_changes, state.ahead_sha256 = (
            ahead.tail_slot,
            ahead.lsn,
            ahead.count,
            ahead.sha256,
        )
        return f"read ahead: {ahead.count} change(s) up to {ahead.lsn}, kept with the slot {ahead.tail_slot}"

    def run(self) -> StandbyState:
        with standby_lock(self.cfg):
            try:
                return self._steps()
            except BaseException as exc:
                self.fail(str(exc) or exc.__class__.__name__)  # under the lock: a restore waits for it
                raise

    def _steps(self) -> StandbyState:
        with self.step("check") as done:
            done["message"] = self.check()
        with self.step("supersede"):
            self.supersede()
        write_state(self.snapshot, self.state)
        self.made = True
        with self.step("restore", database=self.names.database, jobs=self.cfg.standby.jobs) as done:
            done["message"] = self.restore()
        with self.step("filestore", path=str(self.names.filestore)) as done:
            done["message"] = self.filestore()
        with self.step("close") as done:
            self.close()
            done["message"] = "closed to connections; counts and module versions equal the snapshot's"
        with self.step("read_ahead", slot=self.names.ahead_slot) as done:  # journaled before the slot exists
            done["message"] = self.read_ahead()
        self.state.state, self.state.ready_at = READY, utcnow()
        write_state(self.snapshot, self.state)
        return self.state

    def fail(self, error: str) -> None:
        """Nothing half-made is left: the copy is dropped, the record says why."""
        if not self.made:
            return  # refused before anything was made (an earlier standby of it stays as it was)
        with contextlib.suppress(Exception):
            _discard(self.cfg, self.names, self.made_database, self.made_filestore, self.made_ahead)
        with contextlib.suppress(OSError):
            listing_path(self.snapshot.path).unlink()
        self.state.state, self.state.error = STATE_FAILED, error
        with contextlib.suppress(Exception):
            write_state(self.snapshot, self.state)


def build_standby(cfg: Config, snapshot: Snapshot, journal: Journal) -> StandbyState:
    """Restore *snapshot* into its standby, prove it equal to the snapshot and close it; see the module."""
    _terminate_on_sigterm()  # a restore that needs the server now stops this build: clean up, then exit
    build = StandbyBuild(cfg, snapshot, journal)
    build.state.priority = lower_own_priority()
    build.op = build.state.operation = journal.begin(
        "standby",
        cfg.database.name,
        {"snapshot": snapshot.id, "database": build.names.database, "filestore": str(build.names.filestore)},
    )
    try:
        state = build.run()
    except BaseException as exc:
        error = str(exc) or exc.__class__.__name__
        journal.finish(build.op, FAILED, f"no standby of {snapshot.id}: {error}")
        raise
    journal.finish(
        build.op, DONE, f"standby of {snapshot.id} ready as {build.names.database}", {"standby": state.summary()}
    )
    return state


def spawn_build(cfg: Config, snapshot: Snapshot, journal: Journal | None = None, op: str | None = None) -> int:
    """Start ``odoo-rollback standby build`` in the background (its own session: it outlives the caller)."""
    if cfg.source is None:
        raise PreconditionError("a background standby build needs the helper's configuration file")
    log_dir = cfg.storage.path / "standby"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != JOB_ENV_VAR}  # not part of the caller's API job
    with (log_dir / f"{snapshot.id}.log").open("ab") as log:
        process = subprocess.Popen(
            [*CLI, "--config", str(Path(cfg.source).resolve()), "standby", "build", snapshot.id, "--json"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    if journal and op:
        journal.event(op, "standby", "info", f"standby of {snapshot.id} being built (process {process.pid})")
    return process.pid


# -- proof, use, drop -------------------------------------------------------------------------------
class NotUsable(Exception):
    """Why a standby cannot be used: the restore stages from the snapshot instead."""


def prove_standby(cfg: Config, snapshot: Snapshot, state: StandbyState | None = None) -> StandbyState:
    """The standby of *snapshot*, proven to be as it was built; NotUsable says why not."""
    state = state or read_state(snapshot.path)
    if state is None:
        raise NotUsable("no standby was built of this snapshot")
    if state.state != READY:
        raise NotUsable(f"its standby is {state.shown_state}")
    names = standby_names(cfg, snapshot)
    if state.database != names.database or Path(state.filestore) != names.filestore:
        raise NotUsable("its standby's record names other databases or folders")
    if state.database_settings is None:
        raise NotUsable("its standby was built by an earlier version, which did not record what proves it now")
    identity = database_identity(cfg, names.database)
    if identity is None:
        raise NotUsable(f"the standby database {names.database} is gone")
    expected = {"oid": state.oid, "row_xmin": state.row_xmin, "sessions": state.sessions}
    changed = [key for key, value in expected.items() if identity[key] != value or value is None]
    if identity["stats_reset"] != state.stats_reset:
        changed.append("stats_reset")  # statistics lost (a server crash): it cannot be proven
    if identity["allow_connections"] or identity["connected"]:
        changed.append("connections")
    if identity["settings"] != state.database_settings:  # the build refused any, so: none
        changed.append(f"database-level settings: {'; '.join(identity['settings'])}")
    if changed:
        raise NotUsable(f"the standby database was changed or opened after it was built ({', '.join(changed)})")
    if state.listing is None:  # loaded once: a restore proves its standby twice, after its record went
        state.listing = read_listing(snapshot.path, state.files_digest)
    if state.listing is None:
        raise NotUsable("the standby filestore's listing is missing or not the one its build wrote")
    problems = filestore_problems(names.filestore, state.listing)
    if problems:
        raise NotUsable(f"the standby filestore was changed after it was built: {'; '.join(problems)}")
    return state


def standby_read_ahead(cfg: Config, snapshot: Snapshot, state: StandbyState) -> ReadAhead | None:
    """The read-ahead kept with a proven standby, when its slot and file are as the build left them;
    else None (and what is left of it goes): the restore then reads the snapshot's slot whole."""
    names = standby_names(cfg, snapshot)
    if state.ahead_slot and state.ahead_lsn and state.ahead_slot == names.ahead_slot:
        with contextlib.suppress(OSError):
            if sha256_file(names.ahead_file) == state.ahead_sha256:
                return ReadAhead(state.ahead_slot, state.ahead_lsn, names.ahead_file, state.ahead_changes)
    forget(cfg.database, names.ahead_slot, names.ahead_file)
    return None


def adopt_standby(cfg: Config, name: str) -> None:
    """Give the standby to the live database's owner: it is about to go live. It stays closed to
    connections; the restore opens it, under the live name, right before the services start."""
    owner = database_owner(cfg.database, cfg.database.name)
    if owner:
        with maintenance(cfg.database) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(name), sql.Identifier(owner)))


def drop_standby(cfg: Config, snapshot: Snapshot, journal: Journal, reason: str, locked: bool = False) -> bool:
    """Drop the standby of *snapshot* (database, filestore, record); False when it had none.

    Called where snapshots are deleted (prune) and when a newer standby supersedes it.
    """
    state = read_state(snapshot.path)
    if state is None:
        return False
    if not locked and state.shown_state == BUILDING:
        cancel_build(cfg)  # a standby of a snapshot that goes is not worth finishing
    names = standby_names(cfg, snapshot)
    with contextlib.nullcontext() if locked else standby_lock(cfg, wait=CANCEL_SECONDS):
        op = journal.begin("standby_drop", cfg.database.name, {"snapshot": snapshot.id, "reason": reason})
        try:
            _discard(cfg, names)
            remove_state(snapshot.path)
        except BaseException as exc:
            journal.finish(op, FAILED, str(exc) or exc.__class__.__name__)
            raise
        journal.finish(op, DONE, f"standby of {snapshot.id} dropped: {reason}")
    return True
