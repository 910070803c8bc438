"""The restore engine: the live database is never destroyed before its replacement is proven good.

The steps are one ordered table, :data:`STEPS` (name, method, text shown to people); each is journaled
before and after, run forward by :func:`restore_snapshot` and, after a crash once the swap committed, by
:func:`resume` from the journal's last completed step. The plan lists them, the progress mails show
their texts and the tests read their names from the same table:

1. ``preflight``   nothing unlisted in the snapshot, right database, free disk, server and service
                   backend reachable, code folder revertable; then the dump's listed files copied to a
                   private folder, hashed as they are copied, and the copy readable by pg_restore (not
                   when a ready standby is recorded: then only if staging happens after all).
                   Any failure: nothing changed.
   ``standby``     a ready warm standby of the snapshot (see :mod:`odoo_rollback.standby`), proven to be
                   as it was built, takes the place of the staging database: staging and check are skipped.
2. ``staging``     parallel pg_restore of that checked copy into ``<db>__restore_<time>``, and the
                   filestore archive hashed as tar extracts it next to the live one, while the services
                   keep running (the downtime excludes this).
3. ``check``       the staging database's exact counts and module versions equal the manifest's.
4. ``stop``        services stopped; the live and staging databases closed to connections (a writer
                   the backend does not stop cannot write into either until the start).
   ``standby_recheck`` the standby proven again, then given to the live owner (it stays closed); if it changed,
                   staging and check are done here after all (the services stay stopped).
5. ``swap``        one transaction renames live -> ``<db>__failed_<time>`` and staging -> live (atomic:
                   the live name always holds a whole database); then the filestore folders by rename.
6. ``code``        git checkout of the snapshot's revision, when a code folder is configured.
7. ``verify_live`` the live database is the staging database that was checked (same oid: renames keep it).
8. ``start``       the restored database opened, services started, health check.
9. ``lost_rows``   every change made after the snapshot, read from the kept ``<db>__failed_<time>``
                   (by its replication slot, or the fallback) and exported: after the start, so that
                   the downtime does not grow with the database (restore_capture.py).
On a failure after the swap, everything is swapped back and the services started (:func:`undo`); what
was written into the restored database meanwhile is exported and that database kept.

A crash before the swap committed is undone by :func:`resume`; after it, the remaining steps are run
(each is safe to run again), and undone if one fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from . import code as code_tree
from .config import Config
from .counts import exact_counts
from .db import connect, database_exists, end_sessions, maintenance, sessions_in_reach
from .dump import database_owner, drop_database, restore_dump
from .errors import OperationFailed, PreconditionError, RollbackError, StorageError, UsageError
from .events import DONE as STEP_DONE
from .events import FAILED as STEP_FAILED
from .events import SKIPPED, START, RunProgress, StepEvent
from .filestore import extract_filestore
from .health import http_check
from .journal import DONE, FAILED, RUNNING, UNDONE, Journal, JournalError, JournalWriter, Operation, owner_of
from .lock import OperationRunning, describe_operation, operation_alive, operation_lock
from .lost_files import FILES_FOLDER
from .lost_rows import LostChanges
from .manifest import FILESTORE_NAME
from .modules import installed_modules
from .notify import ProgressNotifier
from .read_ahead import forget
from .request import RestoreRequest
from .restore_capture import RestoreCapture, plan_lost_changes, set_connections, written_until
from .role import creating_problems, require
from .services import ServiceBackend, backend_for
from .standby import (
    NotUsable,
    adopt_standby,
    cancel_build,
    drop_standby,
    prove_standby,
    remove_state,
    standby_lock,
    standby_read_ahead,
)
from .standby_state import READY, STANDBY_DIR, StandbyState, read_state, standby_summary
from .storage import Snapshot, SnapshotStore
from .verify import check_listing, compare_counts, staged_dump

# In a run's names: the staging database this run made or took (only that one may its undo drop).
STAGING_MADE = "staging_made"


def _names(cfg: Config) -> dict[str, str]:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    db = cfg.database.name
    fs = cfg.filestore.path
    return {
        "live": db,
        "staging": f"{db}__restore_{stamp}",
        "failed": f"{db}__failed_{stamp}",
        "filestore": str(fs),
        "filestore_staging": str(fs.parent / f".{fs.name}__restore_{stamp}"),
        "filestore_failed": str(fs.parent / f"{fs.name}__failed_{stamp}"),
    }


@dataclass
class StepTiming:
    name: str
    seconds: float
    ok: bool
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "seconds": round(self.seconds, 3), "ok": self.ok}
        if self.skipped:
            doc["skipped"] = True
        return doc


@dataclass
class RestoreResult:
    ok: bool
    database: str
    snapshot: str
    kept_as: str | None = None
    lost_rows: dict[str, int] = field(default_factory=dict)
    lost_rows_file: str | None = None
    steps: list[StepTiming] = field(default_factory=list)
    downtime_seconds: float | None = None
    total_seconds: float = 0.0
    undone: bool = False
    error: str | None = None
    rto: dict[str, Any] = field(default_factory=dict)
    # lost_rows_mode, lost_changes (per table and kind), lost_schema, lost_rows_limits, the CSV files,
    # and written_after_start for an undo: see restore_capture.py.
    lost: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "database": self.database,
            "snapshot": self.snapshot,
            "kept_as": self.kept_as,
            "lost_rows": self.lost_rows,
            "lost_rows_total": sum(self.lost_rows.values()),
            "lost_rows_file": self.lost_rows_file,
            "steps": [s.as_dict() for s in self.steps],
            "downtime_seconds": None if self.downtime_seconds is None else round(self.downtime_seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
            "undone": self.undone,
            "error": self.error,
            "rto": self.rto,
            **self.lost,
        }


def rto_assessment(cfg: Config, seconds: float) -> dict[str, Any]:
    minutes = seconds / 60
    return {
        "target_minutes": cfg.rto.target_minutes,
        "max_minutes": cfg.rto.max_minutes,
        "minutes": round(minutes, 2),
        "met": minutes <= cfg.rto.target_minutes,
        "warning": minutes > cfg.rto.target_minutes,
        "escalate": minutes > cfg.rto.max_minutes,
    }


def plan_restore(cfg: Config, snapshot: Snapshot) -> dict[str, Any]:
    """What a restore would do and lose, changing nothing."""
    check_snapshot_database(cfg, snapshot)
    lost = plan_lost_changes(cfg, snapshot).report()
    return {
        "snapshot": snapshot.id,
        "snapshot_created_at": snapshot.manifest.created_at,
        "database": cfg.database.name,
        **lost,
        "services": cfg.services.backend,
        "code_revision": snapshot.manifest.code_revision if cfg.code.path else None,
        "standby": standby_summary(snapshot.path),
        "steps": list(STEP_NAMES),
    }


def check_snapshot_database(cfg: Config, snapshot: Snapshot) -> None:
    if snapshot.manifest.database != cfg.database.name:
        raise UsageError(
            f"snapshot {snapshot.id} is of database {snapshot.manifest.database!r}, "
            f"not of the configured database {cfg.database.name!r}"
        )


def rename_pair(cfg: Config, first: tuple[str, str], second: tuple[str, str]) -> str:
    """Two database renames in one transaction: both happen or neither (atomic swap). Returns the WAL
    position after it committed (:func:`written_until`): a rename needs every other session of the
    database gone, so every commit made in *first* until then is before it."""
    with maintenance(cfg.database) as conn:
        for attempt in range(10):
            end_sessions(conn, first[0])
            end_sessions(conn, second[0])
            try:
                conn.autocommit = False
                with conn.cursor() as cur:
                    for old, new in (first, second):
                        cur.execute(
                            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(old), sql.Identifier(new))
                        )
                conn.commit()
            except Exception as exc:  # an Odoo worker reconnected in between: end it and try again
                conn.rollback()
                if attempt == 9:
                    raise OperationFailed(f"cannot rename the databases: {str(exc).strip()}") from exc
                time.sleep(0.3)
                continue
            finally:
                conn.autocommit = True
            return written_until(conn)
    raise AssertionError("unreachable: the last attempt returns or raises")


class RestoreRun:
    """One restore, with its journal operation and step timings.

    Its steps are published as events on :attr:`progress`; the journal writer is its first listener
    (a line is on disk before the step goes on), the progress mailer another.
    """

    def __init__(
        self,
        cfg: Config,
        snapshot: Snapshot,
        journal: Journal,
        show_progress: bool = False,
        *,
        completed: Sequence[str] = (),
    ) -> None:
        self.cfg = cfg
        self.snapshot = snapshot
        self.journal = journal
        self.show_progress = show_progress
        self.backend = backend_for(cfg.services)
        self.names = _names(cfg)
        self.result = RestoreResult(ok=False, database=cfg.database.name, snapshot=snapshot.id)
        self.progress = RunProgress(cfg.database.name, snapshot.id, completed=completed)
        self.progress.subscribe(JournalWriter(journal, self.progress))
        self.stopped_at: float | None = None
        self.code_previous: str | None = None
        self.staging_oid: int | None = None  # of the staging database the check step counted
        self.started: list[str] = []  # steps begun, in order
        self.standby: StandbyState | None = None  # the warm standby this run swaps in, if any
        # The checked copy of the dump that pg_restore reads (see verify.staged_dump), from the
        # preflight to the end of the staging step.
        self.staged = ExitStack()
        self.dump: Path | None = None
        self.capture = RestoreCapture(cfg, snapshot)
        # The lost changes, read from the replaced database while the services start (start_export).
        self.exporting: Future[tuple[LostChanges, dict[str, Any]]] | None = None

    @property
    def op(self) -> str:
        """The journal operation's id."""
        return self.progress.operation

    @op.setter
    def op(self, value: str) -> None:
        self.progress.operation = value

    @property
    def completed(self) -> tuple[str, ...]:
        return self.progress.view().completed

    @contextmanager
    def step(self, name: str, **data: Any) -> Iterator[None]:
        text = STEP_TEXT.get(name, name)
        self.started.append(name)
        self.progress.publish(StepEvent(name, START, data=data, text=text))
        started = time.monotonic()
        try:
            yield
        except BaseException as exc:
            self.result.steps.append(StepTiming(name, time.monotonic() - started, False))
            self.progress.publish(StepEvent(name, STEP_FAILED, str(exc), text=text))
            raise
        self.result.steps.append(StepTiming(name, time.monotonic() - started, True))
        self.progress.publish(StepEvent(name, STEP_DONE, text=text))

    def run_steps(self, steps: Sequence[Step]) -> None:
        """Run *steps* forward, in the table's order; a step that declares itself skipped is journaled so."""
        for row in steps:
            reason = row.skipped(self)
            if reason:
                self.result.steps.append(StepTiming(row.name, 0.0, True, skipped=True))
                self.progress.publish(StepEvent(row.name, SKIPPED, reason, text=STEP_TEXT[row.name]))
                continue
            with self.step(row.name, **row.journal_data(self)):
                row.method(self)

    @classmethod
    def resumed(cls, cfg: Config, journal: Journal, op: Operation) -> RestoreRun:
        """The run a crash interrupted, as its journal operation records it."""
        snapshot = SnapshotStore(cfg.storage).get(op.data["snapshot"])
        run = cls(cfg, snapshot, journal, completed=op.data.get("completed", []))
        run.op = op.id
        run.names = dict(op.data["names"])
        run.code_previous = op.data.get("code_previous")
        run.staging_oid = op.data.get("staging_oid")
        run.capture = RestoreCapture.from_journal(cfg, snapshot, op.data)
        if op.data.get("services_stopped"):
            run.stopped_at = time.monotonic()
        return run

    def undo(self, swapped: bool) -> None:
        self.end_export()
        self.capture.discard_read_ahead()
        undo(
            self.cfg,
            self.progress,
            self.names,
            self.backend,
            swapped=swapped,
            services_stopped=self.stopped_at is not None,
            code_previous=self.code_previous,
            capture=self.capture,
            result=self.result,
        )
        self.result.undone = swapped

    def swapped(self) -> bool:
        """Whether the live name now holds the restored database (the swap's transaction committed)."""
        if SWAP in self.completed:
            return True
        return SWAP in self.started and database_swapped(self.cfg, self.names)

    # -- the steps, in the order of STEPS --------------------------------------------------------------
    def preflight(self) -> None:
        cfg, manifest = self.cfg, self.snapshot.manifest
        check_snapshot_database(cfg, self.snapshot)
        # Cheap checks first; the hashes are taken below, as the dump is copied, and as tar reads the
        # filestore archive in the staging step.
        problems = check_listing(self.snapshot)
        archive, entry = self.snapshot.filestore_archive, manifest.files.get(FILESTORE_NAME)
        if entry is None:
            problems.append(f"{FILESTORE_NAME}: not in the manifest")
        elif not archive.is_file() or archive.stat().st_size != entry["size"]:
            problems.append(f"{FILESTORE_NAME}: missing, or its size differs from the manifest's")
        if problems:
            raise PreconditionError(f"snapshot {self.snapshot.id} failed its checks: {'; '.join(problems)}")
        with connect(cfg.database) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_database_size(%s)", (cfg.database.name,))
        with maintenance(cfg.database) as conn:
            # The stop ends every session on the live database; one this role may not end (a
            # superuser's psql) would fail the swap after the services were stopped: refused now.
            sessions_in_reach(conn, cfg.database.name, error=PreconditionError)
        # Staging is made owned as the live database is (a refused standby is replaced by one too).
        require("restore", creating_problems(cfg.database, database_owner(cfg.database, cfg.database.name)))
        fs = cfg.filestore.path
        if not fs.is_dir():
            raise PreconditionError(f"filestore folder {fs} does not exist (check [filestore] path)")
        archive_size = self.snapshot.filestore_archive.stat().st_size
        free = shutil.disk_usage(fs.parent).free
        if free < archive_size * (1 + cfg.storage.free_space_margin):
            raise StorageError(
                f"not enough free disk beside the filestore {fs}: {free // 2**20} MiB free, "
                f"{archive_size // 2**20} MiB needed"
            )
        if os.stat(fs.parent).st_dev != os.stat(fs).st_dev:
            raise PreconditionError(f"filestore {fs} is a mount point: it cannot be swapped by rename")
        self.check_names_free()
        self.backend.check()
        if cfg.code.path and manifest.code_revision:
            code_tree.check_revertable(cfg.code.path, manifest.code_revision)
            self.code_previous = code_tree.head(cfg.code.path)
            self.journal.update(self.op, {"code_previous": self.code_previous})
        standby = read_state(self.snapshot.path)
        if not (standby and standby.shown_state == READY):
            # With a ready standby the dump is not read (its bytes were checked as the standby was
            # built from them); should the standby be refused, staging makes the checked copy then.
            self.stage_dump()

    def stage_dump(self) -> Path:
        """The checked private copy of the dump that pg_restore reads (see verify.staged_dump)."""
        root = SnapshotStore(self.cfg.storage).root
        self.dump = self.staged.enter_context(staged_dump(self.snapshot, root, self.cfg.storage.free_space_margin))
        return self.dump

    def check_names_free(self) -> None:
        """This run's names are taken by nothing yet: the undo drops only what this run made, and a
        database or folder under one of them is another's (a run started in the same second)."""
        names = self.names
        with maintenance(self.cfg.database) as conn:
            taken = [names[key] for key in ("staging", "failed") if database_exists(conn, names[key])]
        taken += [names[key] for key in ("filestore_staging", "filestore_failed") if os.path.lexists(names[key])]
        if taken:
            raise PreconditionError(f"{', '.join(taken)} already exist(s): not this run's; try again in a second")

    def mark_staging_made(self) -> None:
        """Journaled before the staging database and folder are made (or a standby taken as them):
        from here they are this run's, which the undo and resume may drop."""
        self.names[STAGING_MADE] = self.names["staging"]
        self.journal.update(self.op, {"names": self.names})

    def use_standby(self) -> None:
        """A ready standby in the place of the staging database, once proven; else staging as ever."""
        cancel_build(self.cfg, self.journal, self.op)  # one still building is no use now: the server is needed
        with standby_lock(self.cfg, wait=10):
            try:
                state = prove_standby(self.cfg, self.snapshot)
            except NotUsable as exc:
                self.progress.note("standby", "info", f"no standby used: {exc}")
                if read_state(self.snapshot.path) is not None:  # not usable ever again: its space back
                    drop_standby(self.cfg, self.snapshot, self.journal, f"refused by a restore: {exc}", locked=True)
                return
            # From here it is this run's staging: its record goes (nothing else will use or drop it),
            # and undo or resume discard it like any staging database.
            self.names.update(staging=state.database, filestore_staging=state.filestore)
            self.names[STAGING_MADE] = state.database
            # Its oid is part of what was proven: verify_live compares the live one with it.
            self.staging_oid = state.oid
            # standby_taken stays, whatever happens next: the standby is this run's now, and gone
            # after it (live, or dropped with the staging); Odoo reads from it that none is left.
            self.journal.update(
                self.op,
                {
                    "names": self.names,
                    "standby_used": state.database,
                    "standby_taken": state.database,
                    "staging_oid": state.oid,
                },
            )
            ahead = standby_read_ahead(self.cfg, self.snapshot, state)
            if ahead is not None:  # journaled before it is this run's: a resume drops it
                self.journal.update(self.op, {"capture_tail": ahead.tail_slot, "capture_ahead_file": str(ahead.path)})
                self.progress.note("standby", "info", self.capture.adopt_read_ahead(ahead))
            remove_state(self.snapshot.path)
            self.standby = state
        self.progress.note("standby", "info", f"the ready standby {state.database} replaces the staging")

    def _standby_used(self) -> str | None:
        return f"the standby {self.standby.database} is used" if self.standby else None

    def recheck_standby(self) -> None:
        """Right before the swap: still as it was built, or staged after all (never unproven bytes)."""
        assert self.standby is not None
        try:
            prove_standby(self.cfg, self.snapshot, self.standby)
        except NotUsable as exc:
            self.progress.note("standby", "info", f"standby refused at the last check, staging instead: {exc}")
            discard_staging(self.cfg, self.names)
            fresh = _names(self.cfg)
            self.names.update(staging=fresh["staging"], filestore_staging=fresh["filestore_staging"])
            self.names.pop(STAGING_MADE, None)
            self.check_names_free()
            self.journal.update(self.op, {"names": self.names, "standby_used": None, "staging_oid": None})
            self.standby, self.staging_oid = None, None
            self.build_staging()
            self.check_staging()
            return
        adopt_standby(self.cfg, self.standby.database)

    def build_staging(self) -> None:
        """pg_restore and the filestore's tar at the same time: tar waits on the disk while pg_restore
        and the server use the CPUs, so the filestore costs (almost) nothing on top of the database."""
        # A refused standby: the copy was not made in the preflight, it is made now.
        dump = self.dump if self.dump is not None else self.stage_dump()
        owner = database_owner(self.cfg.database, self.cfg.database.name)
        manifest = self.snapshot.manifest
        self.mark_staging_made()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="filestore") as pool:
            files = pool.submit(
                extract_filestore,
                self.snapshot.filestore_archive,
                Path(self.names["filestore_staging"]),
                manifest.files[FILESTORE_NAME],
            )
            try:
                with self.staged:  # the copy is removed once pg_restore has read it
                    restore_dump(
                        self.cfg.database,
                        dump,
                        self.names["staging"],
                        self.cfg.storage.effective_jobs,
                        owner=owner,
                        show_progress=self.show_progress,
                        vacuum=False,  # statistics now; autovacuum vacuums while the services run
                        loaded=self.begin_read_ahead,
                    )
                self.dump = None
            except BaseException:
                # The database's error is the one to report; tar is waited for (the pool's exit), so
                # that the undo removes a folder nothing writes to any more.
                files.cancel()
                raise
            files.result()

    def begin_read_ahead(self) -> None:
        """Staging is loaded: the snapshot's slot is read ahead while it is analyzed and checked, so
        that after the start only what came after is read (see read_ahead.py). Only an optimization:
        when it cannot be had, the export reads the slot whole, as it always could."""
        if self.stopped_at is not None:
            return  # a standby refused after the stop: the stop's position is taken, nothing to gain
        live = self.names["live"]
        try:
            tail = self.capture.read_ahead_slot(live)
            if tail is None:
                return
            # Journaled before the slot exists: a resume after a crash drops it.
            self.journal.update(self.op, {"capture_tail": tail})
            self.capture.begin_read_ahead(live)
        except (RollbackError, OSError, psycopg2.Error) as exc:
            self.capture.discard_read_ahead()
            self.progress.note("staging", "info", f"no read-ahead of the snapshot's slot: {exc}")

    def check_staging(self) -> None:
        manifest = self.snapshot.manifest
        with connect(self.cfg.database, self.names["staging"]) as conn:
            problems = compare_counts(manifest.counts, exact_counts(conn, list(manifest.counts)))
            modules = installed_modules(conn)
        if modules != manifest.modules:
            problems.append("installed module versions differ from the snapshot's manifest")
        if problems:
            raise OperationFailed("the restored staging database does not match the snapshot: " + "; ".join(problems))
        self.staging_oid = database_oid(self.cfg, self.names["staging"])
        self.journal.update(self.op, {"staging_oid": self.staging_oid})
        self.capture.read_staging(self.names["staging"])
        read_ahead = self.capture.await_read_ahead()
        if read_ahead:
            self.progress.note("check", "info", read_ahead)

    def stop_services(self) -> None:
        self.stopped_at = time.monotonic()
        self.journal.update(self.op, {"services_stopped": True})
        self.backend.stop()
        with maintenance(self.cfg.database) as conn:
            end_sessions(conn, self.cfg.database.name)
        stop = self.capture.close(self.names["live"], self.names["staging"])
        self.journal.update(self.op, {"capture_stop": stop})

    @property
    def export_folder(self) -> Path:
        return self.cfg.storage.path / "restores" / self.op

    def start_export(self) -> Future[tuple[LostChanges, dict[str, Any]]]:
        """Read the replaced database, kept aside, in a thread: it runs while the services start (a
        real Odoo takes seconds to answer; the export reads the WAL written since the snapshot, which
        grows with the database). Nothing else uses that database, and the export holds no lock the
        start needs; its slot stays until the start proved healthy (export_lost_rows)."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lost-rows")
        n = self.names
        self.exporting = pool.submit(
            self.capture.read_replaced,
            n["failed"],
            n["live"],
            self.export_folder,
            (Path(n["filestore_failed"]), Path(n["filestore"])),
        )
        pool.shutdown(wait=False)  # the thread ends with its one task
        return self.exporting

    def end_export(self) -> None:
        """Before an undo: the export ends (its sessions would keep the replaced database from going
        back live) and what it wrote goes, since nothing is lost after all."""
        if self.exporting is None:
            return
        while not self.exporting.done():
            with contextlib.suppress(RollbackError, psycopg2.Error), maintenance(self.cfg.database) as conn:
                end_sessions(conn, self.names["failed"])
            with contextlib.suppress(Exception):
                self.exporting.exception(timeout=0.2)
        self.exporting = None
        shutil.rmtree(self.export_folder, ignore_errors=True)

    def export_lost_rows(self) -> None:
        """The services run again: the export begun at the start is awaited (begun now after a resume),
        then the snapshot's slot is dropped. A failure here loses nothing (the kept database and its
        slot still hold every change): it is reported, and the restore, healthy, is not undone for it."""
        folder = self.export_folder
        try:
            changes, report = (self.exporting or self.start_export()).result()
            self.capture.release_slot(changes)
        except (RollbackError, OSError, psycopg2.Error) as exc:
            if isinstance(exc, OSError):  # a half export is no record, and the journal needs the room
                for partial in (*folder.glob("*.jsonl"), *folder.glob("*.csv")):
                    with contextlib.suppress(OSError):
                        partial.unlink()
                shutil.rmtree(folder / FILES_FOLDER, ignore_errors=True)  # the kept filestore has them
            message = (
                f"the lost changes could not be exported: {str(exc).strip()}; the replaced database "
                f"{self.names['failed']} still holds them all"
            )
            self.result.lost = {"lost_rows_error": message}
            # Read by kept-database retention, which then keeps that database (kept.unexported).
            with contextlib.suppress(JournalError):
                self.journal.update(self.op, {"lost_rows_error": message})
            self.progress.note("lost_rows", STEP_FAILED, message)
            return
        finally:
            self.exporting = None
        self.result.lost_rows = changes.by_table()
        self.result.lost_rows_file = report.pop("lost_rows_file")
        odoo = {"lost_summary": report.pop("lost_summary"), "lost_export": report.pop("lost_export")}
        report.pop("lost_rows")
        report.pop("lost_rows_total")
        self.result.lost = report
        self.journal.update(
            self.op,
            {"lost_rows": self.result.lost_rows, "lost_rows_file": self.result.lost_rows_file, **report, **odoo},
        )

    def swap(self) -> None:
        """Idempotent, so that resume runs it again after a crash anywhere inside it."""
        n = self.names
        lsn = None
        if not database_swapped(self.cfg, n):
            lsn = rename_pair(self.cfg, (n["live"], n["failed"]), (n["staging"], n["live"]))
            self.progress.note("swap_database", STEP_DONE, data={"kept_as": n["failed"]})
        # The slot is read up to here: a superuser writer may have written into the replaced database
        # until the rename (it ignores the close of the stop), never after.
        self.journal.update(self.op, {"capture_stop": self.capture.swapped(lsn)})
        swap_filestore(n)
        self.result.kept_as = n["failed"]

    def revert_code(self) -> None:
        if self.cfg.code.path and self.snapshot.manifest.code_revision:
            code_tree.checkout(self.cfg.code.path, self.snapshot.manifest.code_revision)

    def verify_live(self) -> None:
        """The database now under the live name is the one the check step counted: a rename keeps a
        database's oid, so comparing oids proves it in one query where a recount would read every
        table again during the downtime. Without a checked staging database, the counts are read."""
        if self.staging_oid is not None:
            live = database_oid(self.cfg, self.cfg.database.name)
            if live != self.staging_oid:
                raise OperationFailed(
                    f"the live database after the swap (oid {live}) is not the staging database checked "
                    f"before it (oid {self.staging_oid})"
                )
            return
        manifest = self.snapshot.manifest
        self.capture.reachable_for_checks(self.names["live"])
        with connect(self.cfg.database) as conn:
            problems = compare_counts(manifest.counts, exact_counts(conn, list(manifest.counts)))
        if problems:
            raise OperationFailed(
                "the live database after the swap does not match the snapshot: " + "; ".join(problems)
            )

    def start_services(self) -> None:
        opened = self.capture.open_live(self.names["live"])
        self.journal.update(self.op, {"capture_opened": opened})
        self.start_export()
        self.backend.start()
        health = http_check(self.cfg.health)
        self.journal.update(self.op, {"health": health.as_dict()})
        if not health.ok:
            raise OperationFailed(
                f"health check of {health.url} failed after {health.attempts} attempts: {health.error}"
            )
        if self.stopped_at is not None:
            self.result.downtime_seconds = time.monotonic() - self.stopped_at


def _no_data(run: RestoreRun) -> dict[str, Any]:
    return {}


def _never_skipped(run: RestoreRun) -> str | None:
    return None


@dataclass(frozen=True)
class Step:
    """One row of the restore: what it is called, what it does, and what people are told it does.

    ``skipped`` returns why the step is not needed in this run (journaled as ``skipped``), or None;
    ``journal_data`` is what the step's ``start`` line records.
    """

    name: str
    method: Callable[[RestoreRun], None]
    text: str
    journal_data: Callable[[RestoreRun], dict[str, Any]] = _no_data
    skipped: Callable[[RestoreRun], str | None] = _never_skipped


SWAP = "swap"  # the point of no return: before it resume undoes, after it resume finishes

STEPS: tuple[Step, ...] = (
    Step("preflight", RestoreRun.preflight, "checking the snapshot, the server and the services"),
    Step("standby", RestoreRun.use_standby, "looking for a ready standby of the snapshot"),
    Step(
        "staging",
        RestoreRun.build_staging,
        "restoring the snapshot into a staging database",
        journal_data=lambda run: {"database": run.names["staging"]},
        skipped=RestoreRun._standby_used,
    ),
    Step(
        "check",
        RestoreRun.check_staging,
        "comparing the staging database with the snapshot",
        skipped=RestoreRun._standby_used,
    ),
    Step(
        "stop",
        RestoreRun.stop_services,
        "stopping the services",
        journal_data=lambda run: {"backend": run.backend.name},
    ),
    Step(
        "standby_recheck",
        RestoreRun.recheck_standby,
        "proving the standby unchanged and giving it to the live owner",
        skipped=lambda run: None if run.standby else "no standby used",
    ),
    Step(SWAP, RestoreRun.swap, "putting the restored database in place", journal_data=lambda run: dict(run.names)),
    Step("code", RestoreRun.revert_code, "checking out the snapshot's code revision"),
    Step("verify_live", RestoreRun.verify_live, "proving the live database is the one checked"),
    Step("start", RestoreRun.start_services, "starting the services and checking their health"),
    Step(
        "lost_rows", RestoreRun.export_lost_rows, "exporting the changes the restore replaced, from the kept database"
    ),
)
STEP_NAMES: tuple[str, ...] = tuple(row.name for row in STEPS)
# What the progress mails say of each step: "staging (restoring the snapshot into a staging database)".
STEP_TEXT: dict[str, str] = {"": "starting", **{row.name: f"{row.name} ({row.text})" for row in STEPS}}


def swap_filestore(names: dict[str, str]) -> None:
    """Live filestore aside, staging into place; each rename is journaled by the caller's step.

    Idempotent, so that resume can call it again after a crash between the two renames.
    """
    live, staging, failed = Path(names["filestore"]), Path(names["filestore_staging"]), Path(names["filestore_failed"])
    if staging.exists() and live.exists() and not failed.exists():
        os.rename(live, failed)
    if staging.exists() and not live.exists():
        os.rename(staging, live)


def unswap_filestore(names: dict[str, str]) -> None:
    live, failed = Path(names["filestore"]), Path(names["filestore_failed"])
    if failed.exists():
        if live.exists():
            os.rename(live, Path(names["filestore_staging"]))
        os.rename(failed, live)


def discard_staging(cfg: Config, names: dict[str, str]) -> None:
    """Drop the staging database and folder, when this run made them (see RestoreRun.mark_staging_made):
    never a database or folder of the same name that another made."""
    if names.get(STAGING_MADE) != names["staging"]:
        return
    with maintenance(cfg.database) as conn:
        exists = database_exists(conn, names["staging"])
    if exists:
        drop_database(cfg.database, names["staging"])
    shutil.rmtree(names["filestore_staging"], ignore_errors=True)


def database_oid(cfg: Config, name: str) -> int | None:
    with maintenance(cfg.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,))
        row = cur.fetchone()
    return int(row[0]) if row else None


def database_swapped(cfg: Config, names: dict[str, str]) -> bool:
    with maintenance(cfg.database) as conn:
        return database_exists(conn, names["failed"])


def swap_back(cfg: Config, names: dict[str, str], code_previous: str | None) -> None:
    """Undo a swap: the old database and filestore back under the live names, the code back."""
    if database_swapped(cfg, names):
        rename_pair(cfg, (names["live"], names["staging"]), (names["failed"], names["live"]))
    unswap_filestore(names)
    if cfg.code.path and code_previous:
        code_tree.checkout(cfg.code.path, code_previous)


def check_no_unfinished(journal: Journal, storage: Path) -> None:
    """Refuse while a restore is unfinished: running (its owner lives: wait for it), or interrupted
    (its owner died: resume finishes or undoes it); under the operation lock, the lock says which."""
    for pending in journal.unfinished("restore"):
        if owner_of(pending) is not None and operation_alive(storage, pending):
            raise OperationRunning(f"{describe_operation(journal, pending)}; try again once it has finished")
    interrupted = journal.unfinished("restore")
    if interrupted:
        raise PreconditionError(
            f"restore {interrupted[0].id} was interrupted; run 'odoo-rollback resume' before a new restore"
        )


def request_journal_data(request: RestoreRequest | None) -> dict[str, Any]:
    """What the restore's journal operation keeps of Odoo's request, for Odoo to re-create its
    rollback record from the journal after the restore replaced its database."""
    if request is None:
        return {}
    return {
        "rollback": request.rollback,
        "notify_recipients": list(request.notify.recipients),
        "notify_escalation": [c.as_dict() for c in request.notify.escalation],
    }


def restore_snapshot(
    cfg: Config,
    snapshot: Snapshot,
    journal: Journal,
    show_progress: bool = False,
    *,
    request: RestoreRequest | None = None,
) -> RestoreResult:
    """Restore *snapshot* in place of the live database, holding the operation lock throughout."""
    with operation_lock(cfg.storage.path, journal, "restore", database=cfg.database):
        check_no_unfinished(journal, cfg.storage.path)
        run = RestoreRun(cfg, snapshot, journal, show_progress)
        # The checked copy of the dump and an older snapshot's staged keys go, however the run ends.
        with run.staged, run.capture.staged_keys:
            return _restore(cfg, snapshot, journal, run, request)


def _restore(
    cfg: Config, snapshot: Snapshot, journal: Journal, run: RestoreRun, request: RestoreRequest | None
) -> RestoreResult:
    started = time.monotonic()
    run.op = journal.begin(
        "restore",
        cfg.database.name,
        {"snapshot": snapshot.id, "names": run.names, **request_journal_data(request)},
    )
    result = run.result
    with ProgressNotifier(cfg, run.progress, journal, request) as notifier:
        try:
            run.run_steps(STEPS)
        except BaseException as exc:
            result.error = str(exc) or exc.__class__.__name__
            result.total_seconds = time.monotonic() - started
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise  # the journal says where it stopped; resume finishes or undoes it
            run.progress.fail(result.error)  # from here, journal lines are best effort: the undo goes on
            swapped = _swapped_or_unknown(run)
            run.undo(swapped)
            state = UNDONE if swapped else FAILED
            # A journal on a full disk must not hide the error; resume closes the operation later.
            with contextlib.suppress(JournalError):
                journal.finish(run.op, state, result.error, {"result": result.as_dict()})
            # Odoo may still be down: the helper tells the recipients itself. Whatever the mail or the
            # journal does then, the restore's own error is the one raised.
            with contextlib.suppress(Exception):
                notifier.final(state, _failure_message(result, swapped))
            if isinstance(exc, RollbackError):
                raise type(exc)(_failure_message(result, swapped)) from exc
            raise
    result.ok = True
    result.total_seconds = time.monotonic() - started
    if run.stopped_at is not None and result.downtime_seconds is None:
        result.downtime_seconds = time.monotonic() - run.stopped_at
    result.rto = rto_assessment(cfg, result.total_seconds)
    try:
        journal.finish(
            run.op,
            DONE,
            f"restored {snapshot.id}; the old database is kept as {result.kept_as}",
            {"result": result.as_dict()},
        )
    except JournalError as exc:
        raise OperationFailed(
            f"restored {snapshot.id} (the old database is kept as {result.kept_as}), but the journal could not "
            f"record the end ({exc}); once it has room, 'odoo-rollback resume' records it"
        ) from exc
    return result


def _swapped_or_unknown(run: RestoreRun) -> bool:
    try:
        return run.swapped()
    except RollbackError:
        # The server cannot say: assume the swap happened; swap_back looks again before renaming.
        return SWAP in run.started


def _failure_message(result: RestoreResult, swapped: bool) -> str:
    if swapped:
        return f"restore failed after the swap and was undone: the previous database is live again ({result.error})"
    return f"restore failed; the live database was not touched ({result.error})"


def undo(
    cfg: Config,
    progress: RunProgress,
    names: dict[str, str],
    backend: ServiceBackend,
    *,
    swapped: bool,
    services_stopped: bool,
    code_previous: str | None,
    capture: RestoreCapture | None = None,
    result: RestoreResult | None = None,
) -> None:
    """Put things back as they were; every action is published (and so journaled)."""
    if swapped:
        progress.note("undo", START, "swapping back")
        # The services may have been started on the restored database: stop them first, so that
        # nothing reconnects while the databases are renamed back.
        with contextlib.suppress(RollbackError):
            backend.stop()
        swap_back(cfg, names, code_previous)
        progress.note("undo", STEP_DONE, "the previous database and filestore are live again")
    if services_stopped:
        # Closed at the stop (and after a swap back, the live name holds that database again).
        with contextlib.suppress(RollbackError):
            set_connections(cfg.database, names["live"], True, capture.limit if capture else -1)
    try:
        if not (swapped and keep_written(cfg, progress, names, capture, result)):
            discard_staging(cfg, names)  # after a swap back, the restored copy: the snapshot still holds it
    except RollbackError as exc:
        progress.note("cleanup", STEP_FAILED, str(exc))
    if services_stopped:
        progress.note("restart", START)
        try:
            backend.start()
            progress.note("restart", STEP_DONE)
        except RollbackError as exc:
            progress.note("restart", STEP_FAILED, f"services could not be started again: {exc}")


def keep_written(
    cfg: Config,
    progress: RunProgress,
    names: dict[str, str],
    capture: RestoreCapture | None,
    result: RestoreResult | None,
) -> bool:
    """After a swap back, before the restored copy is dropped: what was written into it after it was
    opened is exported, and when anything was, it is kept as ``<db>__undone_<time>`` (with its
    filestore) instead. True when it was kept."""
    if capture is None or not capture.opened:
        return False
    folder = cfg.storage.path / "restores" / progress.operation / "written_after_start"
    try:
        rescued = capture.rescue_restored(names["staging"], folder)
    except (RollbackError, OSError, psycopg2.Error) as exc:
        rescued = {"keep": True, "error": str(exc).strip()}
    if result is not None:
        result.lost["written_after_start"] = rescued
    if not rescued["keep"]:
        return False
    kept = names["staging"].replace("__restore_", "__undone_")
    with maintenance(cfg.database) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(names["staging"]), sql.Identifier(kept))
        )
    set_connections(cfg.database, kept, True, capture.limit)
    staging_fs = Path(names["filestore_staging"])
    if staging_fs.exists():
        os.rename(staging_fs, staging_fs.parent / staging_fs.name.lstrip(".").replace("__restore_", "__undone_"))
    rescued["kept_as"] = kept
    progress.note(
        "undo",
        STEP_DONE,
        f"rows were written into the restored database after the start: exported to {folder}, "
        f"and the database kept as {kept}",
        data={"written_after_start": {k: v for k, v in rescued.items() if k != "lost_rows_limits"}},
    )
    return True


def _finish_after_swap(cfg: Config, journal: Journal, op: Operation) -> dict[str, Any]:
    """The database swap had committed: run the remaining steps of :data:`STEPS` forward, with the same
    checks as an uninterrupted restore, and swap back if one fails."""
    run = RestoreRun.resumed(cfg, journal, op)
    run.progress.note("resume", START, "finishing the restore after the swap")
    try:
        run.run_steps([row for row in STEPS if row.name not in run.completed])
    except Exception as exc:  # an interruption (Ctrl-C) is left for the next resume
        error = str(exc) or exc.__class__.__name__
        run.progress.fail(error)  # from here, journal lines are best effort: the undo goes on
        run.progress.note("resume", STEP_FAILED, error)
        run.undo(swapped=True)
        journal.finish(op.id, UNDONE, error)
        return {"id": op.id, "outcome": "undone", "problems": [error]}
    run.progress.note("resume", STEP_DONE)
    journal.finish(op.id, DONE, "finished after an interruption", {"kept_as": run.names["failed"]})
    return {"id": op.id, "outcome": "finished", "kept_as": run.names["failed"]}


def resume(cfg: Config, journal: Journal) -> list[dict[str, Any]]:
    """Finish or undo every restore a crash left running; returns what was done for each."""
    outcomes = []
    for op in journal.unfinished("restore"):
        names = op.data.get("names") or {}
        # A read-ahead's slot and (a standby's) file: the export reads the snapshot's slot whole.
        ahead_file = Path(op.data.get("capture_ahead_file") or ".")
        with contextlib.suppress(RollbackError, psycopg2.Error):
            forget(
                cfg.database,
                op.data.get("capture_tail"),
                ahead_file if ahead_file.parent == cfg.storage.path / STANDBY_DIR else None,  # only ever one
            )
        events = journal.events(operation_id=op.id)
        swap_started = any(e.step == SWAP and e.status == START for e in events)
        if names and swap_started and database_swapped(cfg, names):
            outcomes.append(_finish_after_swap(cfg, journal, op))
            continue
        progress = RunProgress(cfg.database.name, str(op.data.get("snapshot", "")), operation=op.id)
        progress.subscribe(JournalWriter(journal, progress))
        progress.note("resume", START, "undoing the restore: the live database was not replaced")
        backend = backend_for(cfg.services)
        services_stopped = bool(op.data.get("services_stopped"))
        if names:
            unswap_filestore(names)
            undo(
                cfg,
                progress,
                names,
                backend,
                swapped=False,
                services_stopped=services_stopped,
                code_previous=op.data.get("code_previous"),
            )
            with contextlib.suppress(RollbackError):
                limit = int((op.data.get("capture_stop") or {}).get("connection_limit", -1))
                set_connections(cfg.database, names["live"], True, limit)
        elif services_stopped:
            backend.start()
        progress.note("resume", STEP_DONE)
        journal.finish(op.id, FAILED, "interrupted before the swap; undone, the live database is unchanged")
        outcomes.append({"id": op.id, "outcome": "undone"})
    return outcomes


__all__ = ["RUNNING", "STEPS", "RestoreResult", "Step", "plan_restore", "restore_snapshot", "resume", "rto_assessment"]
