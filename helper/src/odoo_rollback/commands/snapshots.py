"""snapshot, list, verify, counts, prune, kept."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Config, RetentionRule
from ..counts import exact_counts
from ..db import connect
from ..errors import EXIT_CHECK_FAILED, EXIT_FAILED, EXIT_OK, UsageError
from ..journal import Journal
from ..kept import drop_by_hand, held_unexported, list_kept, unexported_advice
from ..output import Output, human_size, table
from ..prune import describe_rule
from ..prune import prune as prune_snapshots
from ..remote import apply_remote_retention, ensure_local, locations, push_snapshot
from ..snapshot import take_snapshot
from ..standby import spawn_build
from ..storage import RefusedFolder, SnapshotStore
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
    verify_result = summary.get("verify")
    return EXIT_CHECK_FAILED if isinstance(verify_result, dict) and not verify_result["ok"] else EXIT_OK


def _refused_doc(folder: RefusedFolder, location: str) -> dict[str, Any]:
    """A folder under a snapshot's name that is not that snapshot, as ``list --json`` shows it."""
    return {"id": folder.id, "path": str(folder.path), "location": location, "refused": folder.reason}


def list_snapshots(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    """Local snapshots and, with [remotes], the copies off-host: each says where it is. Folders under a
    snapshot's name that do not hold it (storage.open_snapshot) follow, each with why it is refused."""
    local, refused_here = SnapshotStore(cfg.storage).scan()
    where, remote_only, unreachable, refused_there = locations(cfg) if cfg.remotes else ({}, {}, [], [])
    docs = []
    for snap in sorted([*local, *remote_only.values()], key=lambda s: (s.manifest.created_at, s.id), reverse=True):
        doc = snap.summary()
        remotes = where.get(snap.id, [])
        doc["remotes"] = remotes
        doc["location"] = "remote" if snap.id in remote_only else ("both" if remotes else "local")
        if snap.id in remote_only:
            doc["path"] = None
        docs.append(doc)
    docs += [_refused_doc(f, "local") for f in refused_here] + [_refused_doc(f, "remote") for f in refused_there]

    def human(rows: list[dict[str, Any]]) -> str:
        good = [d for d in rows if "refused" not in d]
        if not rows:
            return "no snapshots yet: take one with 'odoo-rollback snapshot --kind pre_deploy'"
        text = (
            table(
                ["id", "kind", "created", "size", "verified", "where", "standby", "label"],
                [
                    (
                        d["id"],
                        d["kind"],
                        d["created_at"],
                        human_size(d["size"]),
                        d["verified_at"] or "no",
                        d["location"] + (f" ({', '.join(d['remotes'])})" if d["remotes"] else ""),
                        (d.get("standby") or {}).get("state", "-"),
                        d["label"],
                    )
                    for d in good
                ],
            )
            if good
            else "no usable snapshot"
        )
        bad = [f"REFUSED {d['id']} ({d['location']}): {d['refused']}" for d in rows if "refused" in d]
        return "\n".join([text, *bad, *(f"remote not listed: {u}" for u in unreachable)])

    out.emit(docs, human)
    return EXIT_OK


def push(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    """Copy a verified snapshot to the remotes (what runs in the background after a verified snapshot)."""
    if not cfg.remotes:
        raise UsageError("no [remotes.<name>] configured: nowhere to copy to")
    if args.remote and args.remote not in {r.name for r in cfg.remotes}:
        raise UsageError(f"no remote {args.remote!r} in [remotes]")
    results = push_snapshot(cfg, args.id, Journal(cfg.storage.journal_path), only=args.remote)

    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return f"no remote takes snapshots of this kind ({args.id})"
        return "\n".join(
            f"{r['remote']}: copied and checked" if r["ok"] else f"{r['remote']}: FAILED: {r['error']}" for r in rows
        )

    out.emit(results, human)
    return EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILED


def verify(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    snap = ensure_local(cfg, args.id, Journal(cfg.storage.journal_path))
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
    """Apply the configured retention (or --keep N for this run) to snapshots and kept databases."""
    if args.keep is not None and args.keep < 1:
        raise UsageError("--keep must be at least 1")
    rule = RetentionRule(keep_last=args.keep) if args.keep is not None else cfg.retention.snapshots
    journal = Journal(cfg.storage.journal_path)
    removed, dropped, cleaned = prune_snapshots(cfg, journal, rule, dry_run=args.dry_run)
    held = [unexported_advice(i) for i in held_unexported(cfg, journal)]
    remote_removed = {} if args.dry_run else {r.name: apply_remote_retention(cfg, r, journal) for r in cfg.remotes}
    doc = {
        "removed": [s.id for s in removed],
        "dropped": [i.name for i in dropped],
        "remote_removed": remote_removed,
        "dry_run": args.dry_run,
        "rule": describe_rule(rule),
        "kept_rule": describe_rule(cfg.retention.kept, per_kind=False),
        "kept_not_dropped": held,  # beyond retention, but the only copy of changes no export has
        **cleaned,
    }

    def human(d: dict[str, Any]) -> str:
        verb = "would remove" if d["dry_run"] else "removed"
        lines = [f"{verb} {len(d['removed'])} snapshot(s) ({d['rule']})", *(f"  {i}" for i in d["removed"])]
        drop = "would drop" if d["dry_run"] else "dropped"
        lines.append(f"{drop} {len(d['dropped'])} kept database(s) ({d['kept_rule']})")
        lines.extend(f"  {name}" for name in d["dropped"])
        lines.extend(f"not dropped: {advice}" for advice in d["kept_not_dropped"])
        for remote, ids in d["remote_removed"].items():
            lines.append(f"removed {len(ids)} snapshot(s) from remote {remote}")
        return "\n".join(lines)

    out.emit(doc, human)
    return EXIT_OK


def kept(cfg: Config, args: argparse.Namespace, out: Output) -> int:
    if args.force and not args.drop:
        raise UsageError("--force goes with --drop NAME")
    if args.drop:
        dropped = drop_by_hand(cfg, Journal(cfg.storage.journal_path), args.drop, force=args.force)
        out.emit({"dropped": dropped.name, "was": dropped.as_dict()}, lambda d: f"dropped {d['dropped']}")
        return EXIT_OK
    items = [i.as_dict() for i in list_kept(cfg, Journal(cfg.storage.journal_path))]

    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "nothing kept beside the live database and filestore"
        body = table(
            ["name", "purpose", "created", "database", "filestore", "protected"],
            [
                (
                    r["name"],
                    r["purpose"],
                    r["created_at"],
                    human_size(r["database_size"]) if r["database"] else "-",
                    human_size(r["filestore_size"]) if r["filestore"] else "-",
                    r["protected"] or "",
                )
                for r in rows
            ],
        )
        return f"{body}\n{len(rows)} kept, {human_size(sum(r['size'] for r in rows))} in all"

    out.emit(items, human)
    return EXIT_OK
