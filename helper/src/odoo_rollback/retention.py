"""Which snapshots a retention rule drops: pure selection, shared by the local and the remote retention."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from .config import RetentionRule
from .storage import Snapshot


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def newest_verified_pre_deploy(snapshots: Iterable[Snapshot]) -> str | None:
    return next((s.id for s in snapshots if s.manifest.kind == "pre_deploy" and s.manifest.verified_at), None)


def select_prunable(
    snapshots: list[Snapshot],
    rule: RetentionRule,
    protected: set[str] | None = None,
    now: datetime | None = None,
) -> list[Snapshot]:
    """The snapshots *rule* drops, newest first; *snapshots* is newest first."""
    if not rule.active:
        return []
    keep = set(protected or ())
    pre_deploy = newest_verified_pre_deploy(snapshots)
    if pre_deploy:
        keep.add(pre_deploy)
    oldest_kept = (now or datetime.now(timezone.utc)) - timedelta(days=rule.max_days) if rule.max_days else None
    seen: dict[str, int] = {}
    doomed = []
    for snapshot in snapshots:
        kind = snapshot.manifest.kind
        seen[kind] = seen.get(kind, 0) + 1
        too_many = bool(rule.keep_last) and seen[kind] > rule.keep_last
        too_old = oldest_kept is not None and parse_time(snapshot.manifest.created_at) < oldest_kept
        if (too_many or too_old) and snapshot.id not in keep:
            doomed.append(snapshot)
    return doomed
