"""Verifying a snapshot: checksums, a readable dump, and (deep) a real restore with matching counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .checksums import check_files
from .config import Config
from .counts import exact_counts
from .db import connect
from .dump import drop_database, list_dump, restore_dump
from .errors import OperationFailed, RollbackError
from .journal import DONE, FAILED, Journal
from .manifest import MANIFEST_NAME
from .remote import push_in_background
from .storage import Snapshot, SnapshotStore


@dataclass
class VerifyResult:
    id: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    deep: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ok": self.ok, "problems": self.problems, "deep": self.deep}


def check_integrity(snapshot: Snapshot) -> list[str]:
    """Checksums of every file, and pg_restore --list on the dump."""
    expected = {name: entry for name, entry in snapshot.manifest.files.items() if name != MANIFEST_NAME}
    problems = check_files(snapshot.path, expected)
    if not problems:
        try:
            list_dump(snapshot.dump_path)
        except OperationFailed as exc:
            problems.append(f"dump unreadable: {exc}")
    return problems


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
    op = (
        journal.begin("verify", snapshot.manifest.database, {"snapshot": snapshot.id, "deep": deep})
        if journal
        else None
    )
    result = VerifyResult(snapshot.id, ok=False, deep=deep)
    try:
        if op:
            journal.event(op, "checksums", "start")  # type: ignore[union-attr]
        result.problems = check_integrity(snapshot)
        if op:
            journal.event(
                op,
                "checksums",
                "failed" if result.problems else "done",  # type: ignore[union-attr]
                data={"problems": result.problems},
            )
        if deep and not result.problems:
            scratch = scratch_name(snapshot.manifest.database, "verify")
            if op:
                # In the operation's data too: retention leaves an unfinished operation's scratch alone.
                journal.update(op, {"scratch": scratch})  # type: ignore[union-attr]
                journal.event(op, "scratch_restore", "start", data={"database": scratch})  # type: ignore[union-attr]
            created = False  # only ever drop a database this run made (another may hold the name)
            try:
                restore_dump(
                    cfg.database, snapshot.dump_path, scratch, cfg.storage.effective_jobs, show_progress=show_progress
                )
                created = True
                with connect(cfg.database, scratch) as conn:
                    restored = exact_counts(conn, list(snapshot.manifest.counts))
                result.problems += compare_counts(snapshot.manifest.counts, restored)
            except RollbackError as exc:
                result.problems.append(f"restore into a scratch database failed: {exc}")
            finally:
                if created:
                    drop_database(cfg.database, scratch)
            if op:
                journal.event(
                    op,
                    "scratch_restore",
                    "failed" if result.problems else "done",  # type: ignore[union-attr]
                    data={"database": scratch, "dropped": created},
                )
        result.ok = not result.problems
        if result.ok:
            verified = SnapshotStore(cfg.storage).mark_verified(snapshot.id, deep)
            # Off-host copies start once a snapshot is known good, without making anyone wait for them.
            push_in_background(cfg, verified)
    except BaseException as exc:
        if op:
            journal.finish(op, FAILED, str(exc))  # type: ignore[union-attr]
        raise
    if op:
        journal.finish(
            op,
            DONE if result.ok else FAILED,  # type: ignore[union-attr]
            "verified" if result.ok else "; ".join(result.problems),
            {"result": result.as_dict()},
        )
    return result
