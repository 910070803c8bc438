"""restore, rollback, resume, journal, drill."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import Config
from ..drill import run_drill
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, PreconditionError
from ..journal import Journal
from ..leftovers import clean_dead_runs
from ..lock import OperationRunning, operation_lock
from ..lost_rows import EXACT, LIMITS
from ..output import Output, table
from ..remote import ensure_local
from ..request import RestoreRequest, load_request
from ..restore import plan_restore, restore_snapshot
from ..restore import resume as resume_restores
from ..storage import Snapshot, SnapshotStore


def _newest_verified(cfg: Config) -> Snapshot:
    snapshot = SnapshotStore(cfg.storage).newest("pre_deploy", verified=True, database=cfg.database.name)
    if snapshot is None:
        raise PreconditionError(
            f"no verified pre_deploy snapshot of {cfg.database.name}: take one with "
            "'odoo-rollback snapshot --kind pre_deploy --verify'"
        )
    return snapshot


LOST_KINDS = ("inserted", "updated", "deleted", "written", "truncated")


def lost_changes_text(doc: dict[str, Any]) -> list[str]:
    """The lost changes per table and kind, how they were found, and what that way cannot see."""
    lines = []
    if doc.get("lost_rows_error"):
        lines.append(f"WARNING: {doc['lost_rows_error']}")
    changes: dict[str, dict[str, int]] = doc.get("lost_changes") or {}
    if changes:
        kinds = [k for k in LOST_KINDS if any(k in per for per in changes.values())]
        rows = [(t, *(per.get(k, 0) for k in kinds), sum(per.values())) for t, per in sorted(changes.items())]
        rows.append(("total", *(sum(per.get(k, 0) for per in changes.values()) for k in kinds), doc["lost_rows_total"]))
        lines.append(table(["table", *kinds, "total"], rows))
    lines.extend(
        f"{c['change']}: {c['table']}"
        + (f".{c['column']}" if c.get("column") else "")
        + (f" ({c['from']} -> {c['to']})" if c.get("from") else "")
        for c in doc.get("lost_schema", [])
    )
    if doc.get("lost_rows_mode"):
        how = {
            "exact": "exact (the snapshot's logical replication slot: every table, every change)",
            "fallback": "fallback (row versions newer than the snapshot; no logical decoding)",
            "timestamps": "timestamps (create_date/write_date of the tracked tables only)",
        }[doc["lost_rows_mode"]]
        lines.append(f"Found by: {how}")
        # The exact mode's fixed limits are in its name; what it met in this database (sequences set back,
        # unlogged tables, large objects) is shown as the other modes' limits are.
        lines.extend(
            f"  cannot see: {limit}"
            for limit in doc.get("lost_rows_limits", [])
            if doc["lost_rows_mode"] != "exact" or limit not in LIMITS[EXACT]
        )
    files = doc.get("lost_files") or {}
    if files.get("files"):
        lines.append(
            f"Attachment files written after the snapshot: {files['files']} copied to {files['folder']} "
            "(the filestore's layout: copy them into the live filestore with the attachments' rows)"
        )
    lines.extend(f"  attachment file: {problem}" for problem in files.get("problems", []))
    written = doc.get("written_after_start")
    if written and written.get("lost_rows_total"):
        where = f"; that database is kept as {written['kept_as']}" if written.get("kept_as") else ""
        lines.append(
            f"Written into the restored database before the undo: {written['lost_rows_total']} rows, "
            f"exported to {written.get('lost_rows_file')}{where}"
        )
    return lines


def _standby_text(standby: dict[str, Any] | None) -> str:
    if standby and standby["ready"]:
        return f"Standby: {standby['database']} is ready: still proven unchanged, it is swapped in (no staging)."
    state = standby["state"] if standby else "none"
    return f"Standby: {state}; the snapshot is restored into a staging database first."


def _plan_text(doc: dict[str, Any]) -> str:
    lines = [
        f"Plan: restore snapshot {doc['snapshot']} (taken {doc['snapshot_created_at']}) in place of {doc['database']}.",
        f"Steps: {', '.join(doc['steps'])}. The current database is kept, renamed, not dropped.",
        _standby_text(doc.get("standby")),
        f"Rows changed since the snapshot, which the restore would lose: {doc['lost_rows_total']}",
        *lost_changes_text(doc),
        "Nothing was changed. Run again with --yes to restore.",
    ]
    return "\n".join(lines)


def _result_text(doc: dict[str, Any]) -> str:
    lines = [
        f"Restored {doc['snapshot']} as {doc['database']}; the previous database is kept as {doc['kept_as']}.",
        f"Downtime {doc['downtime_seconds']} s, total {doc['total_seconds']} s.",
        f"Lost rows: {doc['lost_rows_total']} (exported to {doc['lost_rows_file']})",
        *lost_changes_text(doc),
        table(["step", "seconds", "ok"], [(s["name"], s["seconds"], "yes" if s["ok"] else "NO") for s in doc["steps"]]),
    ]
    rto = doc["rto"]
    if rto.get("escalate"):
        lines.append(f"ESCALATE: {rto['minutes']} min is past the RTO maximum of {rto['max_minutes']} min")
    elif rto.get("warning"):
        lines.append(f"WARNING: {rto['minutes']} min is past the RTO target of {rto['target_minutes']} min")
    return "\n".join(lines)


def _restore(
    cfg: Config, snapshot: Snapshot, request: RestoreRequest | None, args: argparse.Namespace, out: Output
) -> int:
    if not args.yes:
        out.emit(plan_restore(cfg, snapshot), _plan_text)
        return EXIT_OK
    result = restore_snapshot(
        cfg, snapshot, Journal(cfg.storage.journal_path), show_progress=out.interactive, request=request
    )
    out.emit(result.as_dict(), _result_text)
    return EXIT_OK


def _request(args: argparse.Namespace) -> RestoreRequest | None:
    # Read first: a bad request file is refused before the snapshot is even looked at.
    return load_request(args.request) if getattr(args, "request", None) else None


def restore(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    request = _request(args)
    return _restore(cfg, ensure_local(cfg, args.id, Journal(cfg.storage.journal_path)), request, args, out)


def rollback(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    request = _request(args)
    return _restore(cfg, _newest_verified(cfg), request, args, out)


def resume(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    journal = Journal(cfg.storage.journal_path)
    try:
        with operation_lock(cfg.storage.path, journal, "resume", database=cfg.database):
            outcomes = _resume_dead_runs(cfg, journal)
    except OperationRunning as exc:
        # A live run is never resumed: its owner finishes it. --wait lets it, then looks again.
        if not getattr(args, "wait", False):
            raise OperationRunning(f"{exc}; resume acts only on operations whose process has ended") from exc
        sys.stderr.write(f"odoo-rollback: waiting: {exc}\n")
        with operation_lock(cfg.storage.path, journal, "resume", wait=True, database=cfg.database):
            outcomes = _resume_dead_runs(cfg, journal)

    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "nothing to resume: no restore was interrupted"
        return "\n".join(f"{r['id']}: {r['outcome']}" for r in rows)

    out.emit(outcomes, human)
    return EXIT_OK


def _resume_dead_runs(cfg: Config, journal: Journal) -> list[dict[str, Any]]:
    """Holding the lock, every operation still running in the journal is a dead run's."""
    clean_dead_runs(cfg, journal, "resume")
    return resume_restores(cfg, journal)


def journal(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    jr = Journal(cfg.storage.journal_path)
    events = jr.events(since=args.since, limit=args.limit)
    doc = {
        "events": [e.as_dict() for e in events],
        "operations": [o.as_dict() for o in jr.operations(limit=args.limit)],
        "next": events[-1].seq if events else args.since,
    }

    def human(d: dict[str, Any]) -> str:
        return table(
            ["seq", "at", "operation", "step", "status", "message"],
            [(e["seq"], e["at"][:19], e["operation_id"], e["step"], e["status"], e["message"]) for e in d["events"]],
        )

    out.emit(doc, human)
    return EXIT_OK


def drill(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    snapshot = ensure_local(cfg, args.id, Journal(cfg.storage.journal_path)) if args.id else _newest_verified(cfg)
    result = run_drill(
        cfg,
        snapshot,
        Journal(cfg.storage.journal_path),
        show_progress=out.interactive,
        neutralize=not args.no_neutralize,
    )

    def human(d: dict[str, Any]) -> str:
        verdict = "passed" if d["ok"] else "FAILED: " + "; ".join(d["problems"])
        rto = "within" if d["rto_met"] else "OUTSIDE"
        return f"drill {d['id']} of {d['snapshot']}: {verdict}; {d['seconds']} s, {rto} the RTO target"

    out.emit(result, human)
    return EXIT_OK if result["ok"] else EXIT_CHECK_FAILED
