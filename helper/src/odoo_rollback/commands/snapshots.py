"""snapshot, list, verify, counts, prune."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Config
from ..counts import exact_counts
from ..db import connect
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from ..journal import Journal
from ..output import Output, human_size, table
from ..prune import prune as prune_snapshots
from ..snapshot import take_snapshot
from ..standby import spawn_build
from ..storage import SnapshotStore
from ..verify import verify_snapshot


def _counts_text(counts: dict[str, int | None]) -> str:
    return table(["table", "rows"], [(t, "absent" if c is None else c) for t, c in counts.items()])


def snapshot(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    journal = Journal(cfg.storage.journal_path)
    snap = take_snapshot(cfg, args.kind, args.label, journal, show_progress=out.interactive)
    summary = snap.summary()
    standby = cfg.standby.enabled and (args.standby or cfg.standby.after_snapshot)
    if args.verify or standby:  # a standby is only ever built of a verified snapshot
        result = verify_snapshot(cfg, snap, deep=False, journal=journal)
        checked = SnapshotStore(cfg.storage).get(snap.id)
        summary = checked.summary()
        summary["verify"] = result.as_dict()
        if result.ok and standby:
            summary["standby_build_pid"] = spawn_build(cfg, checked)

    def human(doc: dict[str, Any]) -> str:
        lines = [f"snapshot {doc['id']} ({doc['kind']}) complete: {human_size(doc['size'])} in {doc['path']}"]
        if "verify" in doc:
            lines.append(
                "verified" if doc["verify"]["ok"] else "VERIFY FAILED: " + "; ".join(doc["verify"]["problems"])
            )
        if doc.get("standby_build_pid"):
            lines.append(f"standby being built in the background (process {doc['standby_build_pid']}): see 'list'")
        return "\n".join([*lines, _counts_text(doc["counts"])])

    out.emit(summary, human)
    verified = summary.get("verify")
    return EXIT_CHECK_FAILED if isinstance(verified, dict) and not verified["ok"] else EXIT_OK


def list_snapshots(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    docs = [s.summary() for s in SnapshotStore(cfg.storage).list()]

    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no snapshots yet: take one with 'odoo-rollback snapshot --kind pre_deploy'"
        return table(
            ["id", "kind", "created", "size", "verified", "standby", "label"],
            [
                (
                    d["id"],
                    d["kind"],
                    d["created_at"],
                    human_size(d["size"]),
                    d["verified_at"] or "no",
                    (d.get("standby") or {}).get("state", "-"),
                    d["label"],
                )
                for d in rows
            ],
        )

    out.emit(docs, human)
    return EXIT_OK


def verify(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    snap = SnapshotStore(cfg.storage).get(args.id)
    result = verify_snapshot(
        cfg, snap, deep=args.deep, journal=Journal(cfg.storage.journal_path), show_progress=out.interactive
    )

    def human(doc: dict[str, Any]) -> str:
        if doc["ok"]:
            return f"snapshot {doc['id']}: ok" + (" (restored and counted)" if doc["deep"] else "")
        return "\n".join([f"snapshot {doc['id']}: NOT OK"] + [f"  - {p}" for p in doc["problems"]])

    out.emit(result.as_dict(), human)
    return EXIT_OK if result.ok else EXIT_CHECK_FAILED


def counts(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    with connect(cfg.database) as conn:
        live = exact_counts(conn, cfg.counts.tables)
    out.emit(live, _counts_text)
    return EXIT_OK


def prune(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    if args.keep < 1:
        raise UsageError("--keep must be at least 1")
    removed = prune_snapshots(cfg, Journal(cfg.storage.journal_path), args.keep, dry_run=args.dry_run)
    doc = {"removed": [s.id for s in removed], "dry_run": args.dry_run}

    def human(d: dict[str, Any]) -> str:
        verb = "would remove" if d["dry_run"] else "removed"
        return f"{verb} {len(d['removed'])} snapshot(s)" + "".join(f"\n  {i}" for i in d["removed"])

    out.emit(doc, human)
    return EXIT_OK
