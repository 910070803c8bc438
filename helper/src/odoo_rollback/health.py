"""Is the deployment up? The HTTP check of the configured URL, and the one health report.

:func:`health_report` is the only report of the deployment's health: ``odoo-rollback health`` prints
it, ``GET /v1/health`` returns it (with the API's own version and running job), and ``deploy`` refuses
to start or judges its analysis rounds by it.
"""

from __future__ import annotations

import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .capture import capture_check
from .config import Config, HealthConfig
from .db import connect
from .dump import database_owner
from .errors import RollbackError
from .journal import Journal
from .kept import KeptItem, kept_databases, list_kept, select_droppable, unexported_advice
from .output import human_size
from .role import ROLE_CHECK, role_check
from .services import backend_for
from .snapshot import expected_size, needed_space
from .standby import storage_check as standby_storage_check
from .storage import SnapshotStore
from .system import system_load


@dataclass(frozen=True)
class HealthResult:
    ok: bool
    url: str | None
    status: int | None
    seconds: float
    attempts: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(url: str, timeout: float) -> tuple[int | None, float, str | None]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - configured http(s) URL
            return response.status, time.monotonic() - started, None
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - started, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, time.monotonic() - started, str(reason)


FIRST_RETRY = 0.1  # seconds: a service that has just started often answers within a few tenths


def retry_delays(interval: float) -> Iterator[float]:
    """0.1, 0.2, 0.4 ... seconds, doubling up to *interval*, then *interval* for ever."""
    delay = min(FIRST_RETRY, interval)
    while True:
        yield delay
        delay = min(delay * 2, interval)


def http_check(cfg: HealthConfig, attempts: int | None = None) -> HealthResult:
    """Try the URL until it answers 2xx/3xx or the patience runs out. No URL configured: ok, not checked.

    The patience is what ``attempts`` tries ``interval`` seconds apart give, (attempts - 1) x interval
    seconds of waiting; within it the tries come soon after the start and back off (0.1 s, doubling
    up to ``interval``): a service that answers after 0.3 s is seen then, not after a whole interval,
    the restore's downtime included.
    """
    if not cfg.url:
        return HealthResult(ok=True, url=None, status=None, seconds=0.0, attempts=0, error="no [health] url")
    if not cfg.url.startswith(("http://", "https://")):
        return HealthResult(False, cfg.url, None, 0.0, 0, "health.url must be http:// or https://")
    tries = attempts or cfg.attempts
    patience = (tries - 1) * cfg.interval
    waited = 0.0
    delays = retry_delays(cfg.interval)
    attempt = 0
    while True:
        attempt += 1
        status, seconds, error = probe(cfg.url, cfg.timeout)
        if status is not None and status < 400:
            return HealthResult(True, cfg.url, status, seconds, attempt)
        if waited >= patience - 1e-9:
            return HealthResult(False, cfg.url, status, seconds, attempt, error)
        delay = min(next(delays), patience - waited)
        time.sleep(delay)
        waited += delay


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class HealthReport:
    """Each check with its verdict, and the measures behind them for whoever reads them as data."""

    database: str
    checks: tuple[Check, ...]
    database_reachable: bool
    services: dict[str, str]  # service -> state, or {"error": why the backend cannot tell}
    http: HealthResult | None  # None: no [health] url, or not asked for
    storage_free_bytes: int | None
    system: dict[str, Any] = field(default_factory=dict)
    # What the next snapshot needs on disk (margin included; None: unknown) and the databases restores
    # kept aside: Odoo's overview shows them beside the free storage.
    next_snapshot_needs_bytes: int | None = None
    kept_databases: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failed(self, *, ignore: tuple[str, ...] = ()) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.name not in ignore]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [c.as_dict() for c in self.checks],
            "database": self.database,
            "database_reachable": self.database_reachable,
            "services": self.services,
            "http": self.http.as_dict() if self.http else None,
            "storage_free_bytes": self.storage_free_bytes,
            "next_snapshot_needs_bytes": self.next_snapshot_needs_bytes,
            "kept_databases": list(self.kept_databases),
            "system": self.system,
        }


def _next_snapshot_needs(cfg: Config, database_reachable: bool) -> int | None:
    """The newest snapshot's size plus the margin; before the first one, the estimate the snapshot checks."""
    newest = next(iter(SnapshotStore(cfg.storage).list()), None)
    if newest is not None:
        return needed_space(cfg, newest.manifest.size)
    return needed_space(cfg, expected_size(cfg)) if database_reachable else None


def _storage_check(cfg: Config, needed: int | None) -> tuple[Check, int | None, list[KeptItem] | None]:
    """Free disk in the storage, against what the next snapshot will need."""
    storage = cfg.storage.path if cfg.storage.path.exists() else cfg.storage.path.parent
    if not storage.exists():
        return Check("storage", False, f"{cfg.storage.path} does not exist"), None, None
    free = shutil.disk_usage(storage).free
    detail = f"{free // 2**20} MiB free in {storage}"
    snapshots = SnapshotStore(cfg.storage).list()
    detail += f"; snapshots {human_size(sum(s.manifest.size for s in snapshots))}"
    try:
        kept = list_kept(cfg, Journal(cfg.storage.journal_path))
        detail += f", {len(kept)} kept database(s) and filestore(s) {human_size(sum(i.size for i in kept))}"
    except RollbackError:
        kept = []  # the database check says why the server cannot be reached
        listed = False
        detail += ", kept databases not counted (no database server)"
    else:
        listed = True
    ok = free > 0
    if needed is not None:
        # Monitoring should say so before a deploy is refused for lack of room for its snapshot.
        ok = free >= needed
        detail += f"; the next snapshot needs about {needed // 2**20} MiB" + ("" if ok else ": too little")
    overdue = select_droppable(kept, cfg.retention.kept)
    if overdue:
        ok = False
        names = ", ".join(i.name for i in overdue)
        detail += f"; {len(overdue)} kept beyond retention ({names}): run 'odoo-rollback prune'"
    return Check("storage", ok, detail), free, kept if listed else None


def _kept_check(kept: list[KeptItem]) -> Check:
    """Fails while a kept database holds changes made after a snapshot that no export has (its
    restore's export failed): retention keeps it, and someone must read them before it is dropped."""
    only_copies = [item for item in kept if item.unexported and item.database_size is not None]
    if not only_copies:
        return Check("kept databases", True, f"{len(kept)} kept; none holds changes that are not exported")
    return Check("kept databases", False, "; ".join(unexported_advice(item) for item in only_copies))


def health_report(cfg: Config, *, http: bool = True) -> HealthReport:
    """The database answers, the services run, the URL answers in time, the storage has room.

    *http* false leaves the URL out (a caller that probes it on its own schedule)."""
    checks: list[Check] = []
    try:
        with connect(cfg.database) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        checks.append(Check("database", True, cfg.database.name))
        reachable = True
    except RollbackError as exc:
        checks.append(Check("database", False, str(exc)))
        reachable = False
    try:
        services = backend_for(cfg.services).status()
        for service, state in services.items():
            checks.append(Check(f"service {service}", state in ("running", "active"), state))
    except RollbackError as exc:
        services = {"error": str(exc)}
        checks.append(Check("services", False, str(exc)))
    result = None
    if http and cfg.health.url:
        result = http_check(cfg.health, attempts=1)
        slow = result.ok and result.seconds > cfg.health.max_response_seconds
        checks.append(
            Check(
                "http",
                result.ok and not slow,
                f"{result.url}: {result.status or result.error} in {result.seconds:.2f} s"
                + (f" (over {cfg.health.max_response_seconds} s)" if slow else ""),
            )
        )
    needed = _next_snapshot_needs(cfg, reachable)
    storage, free, kept = _storage_check(cfg, needed)
    checks.append(storage)
    if kept is not None:
        checks.append(_kept_check(kept))
    if cfg.standby.enabled:
        checks.append(Check(**standby_storage_check(cfg)))
    try:
        checks.append(Check(**capture_check(cfg)))
    except RollbackError as exc:
        checks.append(Check("capture", False, str(exc)))
    if reachable:
        try:
            owner = database_owner(cfg.database, cfg.database.name)
            checks.append(Check(**role_check(cfg.database, owner)))
        except RollbackError as exc:
            checks.append(Check(ROLE_CHECK, False, str(exc)))
    return HealthReport(
        cfg.database.name,
        tuple(checks),
        reachable,
        services,
        result,
        free,
        system_load(),
        next_snapshot_needs_bytes=needed,
        kept_databases=tuple(kept_databases(cfg.database)) if reachable else (),
    )
