"""Verifying a snapshot: checksums, a readable dump, and (deep) a real restore with matching counts.

Integrity is of the whole folder, not only of the files the manifest lists: anything else in it is a
problem (pg_restore would read a plain ``NNNN.dat`` put beside the checksummed ``NNNN.dat.gz``).

What is restored or exported (by ``restore``, ``drill``, ``verify --deep``, ``copy`` and ``export``) is
never read from the snapshot folder itself: :func:`staged_dump` copies the files the manifest lists,
and only those, into a private folder, hashing each as it is copied, and pg_restore reads that copy.
Its bytes are the bytes that were checked, whatever happens to the snapshot folder meanwhile.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .checksums import check_files, copy_verified, unlisted_entries
from .config import Config
from .counts import exact_counts
from .db import connect
from .dump import drop_database, list_dump, restore_scratch
from .errors import OperationFailed, PreconditionError, RollbackError, StorageError, os_failure
from .journal import DONE, FAILED, Journal, JournalError
from .lock import operation_lock
from .manifest import DUMP_NAME, MANIFEST_NAME
from .remote import push_in_background
from .storage import PARTIAL_PREFIX, Snapshot, SnapshotStore, partial_in_use

# The manifest's own replacement while ``mark_verified`` writes it (see storage.write_atomically).
MANIFEST_TMP = f".{MANIFEST_NAME}.tmp"


@dataclass
class VerifyResult:
    id: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    deep: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ok": self.ok, "problems": self.problems, "deep": self.deep}


def check_listing(snapshot: Snapshot) -> list[str]:
    """Every entry of the snapshot folder is listed in the manifest (or is the manifest)."""
    return unlisted_entries(snapshot.path, [*snapshot.manifest.files, MANIFEST_NAME, MANIFEST_TMP])


def check_integrity(snapshot: Snapshot) -> list[str]:
    """Nothing unlisted, checksums of every listed file, and pg_restore --list on the dump."""
    expected = {name: entry for name, entry in snapshot.manifest.files.items() if name != MANIFEST_NAME}
    problems = check_listing(snapshot) + check_files(snapshot.path, expected)
    if not problems:
        try:
            list_dump(snapshot.dump_path)
        except OperationFailed as exc:
            problems.append(f"dump unreadable: {exc}")
    return problems


# Hashing and writing release the GIL: two files at a time copied a 98 MiB dump in 0.09 s instead of
# 0.14-0.26 s on this 2-core machine; more threads gained nothing.
COPY_THREADS = 2


def _copy_one(snapshot: Snapshot, folder: Path, name: str, entry: dict[str, Any]) -> str | None:
    """The problem with one listed file, or None once its checked copy is made."""
    target = folder / name
    try:
        problem = copy_verified(snapshot.path / name, target, entry)
    except FileNotFoundError:
        problem = "missing"
    except OSError as exc:
        if exc.filename and Path(exc.filename) == target:
            raise os_failure(exc, "the checked copy of the dump") from exc
        problem = f"unreadable ({exc.strerror})"
    return f"{name}: {problem}" if problem else None


def _copy_listed(snapshot: Snapshot, folder: Path, free_space_margin: float) -> list[str]:
    dump_files = {name: entry for name, entry in snapshot.manifest.files.items() if name.startswith(f"{DUMP_NAME}/")}
    needed = int(sum(int(entry["size"]) for entry in dump_files.values()) * (1 + free_space_margin))
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise StorageError(
            f"not enough free disk in {folder.parent} for a checked copy of the dump: "
            f"{free // 2**20} MiB free, {needed // 2**20} MiB needed"
        )
    (folder / DUMP_NAME).mkdir(mode=0o700)
    for name in dump_files:
        (folder / name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The largest first, so that the two threads end together.
    largest_first = sorted(dump_files.items(), key=lambda item: (-int(item[1]["size"]), item[0]))
    with ThreadPoolExecutor(max_workers=COPY_THREADS, thread_name_prefix="checked-copy") as pool:
        outcomes = list(pool.map(lambda item: _copy_one(snapshot, folder, *item), largest_first))
    return sorted(problem for problem in outcomes if problem)


@contextmanager
def staged_dump(snapshot: Snapshot, root: Path, free_space_margin: float = 0.2) -> Iterator[Path]:
    """The snapshot's dump as pg_restore must read it: a private copy of exactly the listed files, each
    hashed as it was copied, and readable by pg_restore --list. Refused (PreconditionError, nothing
    changed) when the snapshot folder holds anything unlisted or a listed file differs. The copy is
    removed on leaving; a run killed meanwhile leaves a ``.partial-read-*`` folder that the next locked
    run removes."""
    problems = check_listing(snapshot)
    if problems:
        raise PreconditionError(f"snapshot {snapshot.id} failed its checks: {'; '.join(problems)}")
    folder = root / f"{PARTIAL_PREFIX}read-{snapshot.id}-{os.urandom(3).hex()}"
    with partial_in_use(folder):
        try:
            folder.mkdir(mode=0o700)
        except OSError as exc:
            raise StorageError(f"cannot make a folder in {root} for the checked copy: {exc.strerror}") from exc
        try:
            problems = _copy_listed(snapshot, folder, free_space_margin)
            if problems:
                raise PreconditionError(f"snapshot {snapshot.id} failed its checks: {'; '.join(problems)}")
            try:
                list_dump(folder / DUMP_NAME)
            except OperationFailed as exc:
                raise PreconditionError(f"snapshot {snapshot.id} failed its checks: dump unreadable: {exc}") from exc
            yield folder / DUMP_NAME
        finally:
            shutil.rmtree(folder, ignore_errors=True)


# Where an export, which runs without the operation lock (beside a restore, say), makes its checked copy:
# not in snapshots/, whose partial folders every locked run removes but its own process's.
READING_DIR = "reading"


def _remove_dead_readers(base: Path) -> None:
    """Remove the folders of *base* that no live process holds (its flock is free: a dead run's)."""
    for path in base.iterdir():
        if path.name.startswith(".") or path.is_symlink() or not path.is_dir():
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live run's
        else:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


@contextmanager
def unlocked_read_root(storage: Path) -> Iterator[Path]:
    """A folder of this run's own in ``<storage>/reading`` for :func:`staged_dump`, for a run that does
    not hold the operation lock. It is flock-held while in use and removed on leaving; a killed run's is
    removed by the next such run (its flock is free then)."""
    base = storage / READING_DIR
    try:
        base.mkdir(mode=0o700, exist_ok=True)
        if base.is_symlink():  # the checked copy would be made, and read, wherever it points
            raise StorageError(f"{base} is a link: remove it (the helper makes it as a folder)")
        _remove_dead_readers(base)
        # Made under a dot name, locked, then renamed: no other run ever sees it unlocked.
        making = base / f".{os.getpid()}-{os.urandom(3).hex()}"
        making.mkdir(mode=0o700)
    except OSError as exc:
        raise StorageError(f"cannot make a folder in {base} for the checked copy: {exc.strerror}") from exc
    fd = os.open(making, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder = base / making.name[1:]
        os.rename(making, folder)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)
        shutil.rmtree(making, ignore_errors=True)  # only when the rename did not happen


def scratch_name(database: str, purpose: str) -> str:
    return f"{database}__{purpose}_{datetime.now(timezone.utc):%Y%m%d%H%M%S}"


def compare_counts(expected: dict[str, int | None], actual: dict[str, int | None]) -> list[str]:
    return [
        f"table {table}: {actual.get(table)} rows restored, {count} in the manifest"
        for table, count in sorted(expected.items())
        if actual.get(table) != count
    ]


def verify_snapshot(
    cfg: Config, snapshot: Snapshot, deep: bool = False, journal: Journal | None = None, show_progress: bool = False
) -> VerifyResult:
    """Verify *snapshot*; a deep verify makes a scratch database, so it holds the operation lock."""
    if not deep:
        return _verify(cfg, snapshot, False, journal, show_progress)
    with operation_lock(
        cfg.storage.path, journal or Journal(cfg.storage.journal_path), "verify", database=cfg.database
    ):
        return _verify(cfg, snapshot, True, journal, show_progress)


def _verify(cfg: Config, snapshot: Snapshot, deep: bool, journal: Journal | None, show_progress: bool) -> VerifyResult:
    op = (
        journal.begin("verify", snapshot.manifest.database, {"snapshot": snapshot.id, "deep": deep})
        if journal
        else None
    )
    result = VerifyResult(snapshot.id, ok=False, deep=deep)
    try:
        if op and journal:
            journal.event(op, "checksums", "start")
        result.problems = check_integrity(snapshot)
        if op and journal:
            journal.event(
                op,
                "checksums",
                "failed" if result.problems else "done",
                data={"problems": result.problems},
            )
        if deep and not result.problems:
            scratch = scratch_name(snapshot.manifest.database, "verify")
            if op and journal:
                # In the operation's data too: retention leaves an unfinished operation's scratch alone.
                journal.update(op, {"scratch": scratch})
                journal.event(op, "scratch_restore", "start", data={"database": scratch})
            created = False  # only ever drop a database this run made (another may hold the name)
            try:
                margin = cfg.storage.free_space_margin
                with staged_dump(snapshot, SnapshotStore(cfg.storage).root, margin) as dump:
                    restore_scratch(cfg.database, dump, scratch, cfg.storage.effective_jobs, show_progress)
                created = True
                with connect(cfg.database, scratch) as conn:
                    restored = exact_counts(conn, list(snapshot.manifest.counts))
                result.problems += compare_counts(snapshot.manifest.counts, restored)
            except RollbackError as exc:
                result.problems.append(f"restore into a scratch database failed: {exc}")
            finally:
                if created:
                    drop_database(cfg.database, scratch)
            if op and journal:
                journal.event(
                    op,
                    "scratch_restore",
                    "failed" if result.problems else "done",
                    data={"database": scratch, "dropped": created},
                )
        result.ok = not result.problems
        if result.ok:
            verified = SnapshotStore(cfg.storage).mark_verified(snapshot.id, deep)
            # Off-host copies start once a snapshot is known good, without making anyone wait for them.
            push_in_background(cfg, verified)
    except BaseException as exc:
        if op and journal:
            with suppress(JournalError):  # a full journal must not hide the error; the next run closes it
                journal.finish(op, FAILED, str(exc))
        raise
    if op and journal:
        journal.finish(
            op,
            DONE if result.ok else FAILED,
            "verified" if result.ok else "; ".join(result.problems),
            {"result": result.as_dict()},
        )
    return result
