"""Retention: which snapshots go, applied after every snapshot and by ``prune``.

The rule comes from ``[retention]`` in the helper's configuration (the one source: Odoo shows it, it
does not set it). A snapshot goes when it is beyond the *keep_last* newest of its kind or older than
*max_days*, except the newest verified ``pre_deploy`` snapshot (what a rollback needs) and any snapshot
a running operation names (a restore, a drill, a verify, a deployment).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from .capture import release_capture
from .config import Config, RetentionRule
from .errors import os_failure
from .journal import DONE, FAILED, Journal, JournalError
from .kept import KeptItem, apply_kept_retention, unexported
from .leftovers import clean_dead_runs, is_dead
from .lock import operation_lock
from .retention import select_prunable
from .standby import drop_standby
from .storage import Snapshot, SnapshotStore


def snapshots_in_use(journal: Journal) -> set[str]:
    """Snapshots named by a running operation, or by an interrupted restore or deployment (``resume``
    and the next deployment need them)."""
    return {
        str(op.data["snapshot"])
        for op in journal.unfinished()
        if op.data.get("snapshot") and (op.kind in ("restore", "deploy") or not is_dead(op))
    }


def delete_snapshot(cfg: Config, snapshot: Snapshot, journal: Journal, reason: str) -> None:
    """The one place a local snapshot is deleted: whatever belongs to a snapshot goes with it here."""
    op = journal.begin("delete", snapshot.manifest.database, {"deleted": snapshot.id, "reason": reason})
    try:
        drop_standby(cfg, snapshot, journal, f"its snapshot was deleted ({reason})")  # it goes with its snapshot
        SnapshotStore(cfg.storage).remove(snapshot)
        # Its replication slot must not keep WAL; but one on a kept database whose export failed stays
        # with that database: it is the exact record of the changes only that database holds.
        release_capture(cfg.database, snapshot.manifest, keep_on=unexported(journal))
    except BaseException as exc:
        error = os_failure(exc, "delete") if isinstance(exc, OSError) else exc
        with suppress(JournalError):  # a full journal must not hide the error; the next run closes it
            journal.finish(op, FAILED, str(error) or exc.__class__.__name__)
        if error is not exc:
            raise error from exc
        raise
    journal.finish(op, DONE, f"snapshot {snapshot.id} deleted: {reason}")


def apply_retention(
    cfg: Config, journal: Journal, rule: RetentionRule | None = None, dry_run: bool = False
) -> list[Snapshot]:
    """Delete what the retention rule (default: the configured one) drops; return those snapshots.
    The caller holds the operation lock (a snapshot, or :func:`prune`)."""
    rule = rule or cfg.retention.snapshots
    store = SnapshotStore(cfg.storage)
    doomed = select_prunable(store.list(), rule, snapshots_in_use(journal))
    if not dry_run:
        for snapshot in doomed:
            delete_snapshot(cfg, snapshot, journal, f"retention: {describe_rule(rule)}")
    return doomed


def prune(
    cfg: Config, journal: Journal, rule: RetentionRule | None = None, dry_run: bool = False
) -> tuple[list[Snapshot], list[KeptItem], dict[str, Any]]:
    """The retention of snapshots and of kept databases, and what dead runs left (see leftovers), under
    the operation lock: a restore never loses its snapshot half-way."""
    if dry_run:
        return apply_retention(cfg, journal, rule, dry_run=True), apply_kept_retention(cfg, journal, dry_run=True), {}
    with operation_lock(cfg.storage.path, journal, "prune", database=cfg.database):
        cleaned = clean_dead_runs(cfg, journal, "a prune")
        op = journal.begin("prune", cfg.database.name, {"rule": describe_rule(rule or cfg.retention.snapshots)})
        try:
            removed = apply_retention(cfg, journal, rule)
            dropped = apply_kept_retention(cfg, journal)
        except BaseException as exc:
            with suppress(JournalError):  # a full journal must not hide the error; the next run closes it
                journal.finish(op, FAILED, str(exc) or exc.__class__.__name__)
            raise
        result: dict[str, Any] = {"removed": [s.id for s in removed], "dropped": [i.name for i in dropped], **cleaned}
        journal.finish(op, DONE, f"removed {len(removed)} snapshot(s), dropped {len(dropped)} kept", result)
    return removed, dropped, cleaned


def describe_rule(rule: RetentionRule, per_kind: bool = True) -> str:
    parts = []
    if rule.keep_last:
        parts.append(f"keep the last {rule.keep_last}" + (" of each kind" if per_kind else ""))
    if rule.max_days:
        parts.append(f"at most {rule.max_days:g} days")
    return " and ".join(parts) or "keep everything"


def retention_settings(cfg: Config) -> dict[str, Any]:
    """What Odoo shows (read-only) of the retention and the off-host copies; *text* says it in one line."""
    remotes = "; ".join(
        f"off-host {r.name} ({', '.join(r.kinds) or 'every kind'}): {describe_rule(r.retention)}" for r in cfg.remotes
    )
    text = (
        f"snapshots: {describe_rule(cfg.retention.snapshots)}; "
        f"kept databases: {describe_rule(cfg.retention.kept, per_kind=False)}" + (f"; {remotes}" if remotes else "")
    )
    return {
        "text": text,
        "snapshots": {**cfg.retention.snapshots.as_dict(), "text": describe_rule(cfg.retention.snapshots)},
        "kept": {**cfg.retention.kept.as_dict(), "text": describe_rule(cfg.retention.kept, per_kind=False)},
        "remotes": [
            {"name": r.name, "target": r.target, "kinds": list(r.kinds), **r.retention.as_dict()} for r in cfg.remotes
        ],
    }
