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
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import Config, HealthConfig
from .db import connect
from .errors import RollbackError
from .journal import Journal
from .kept import list_kept, select_droppable
from .output import human_size
from .services import backend_for
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


def http_check(cfg: HealthConfig, attempts: int | None = None) -> HealthResult:
    """Try the URL until it answers 2xx/3xx or the attempts run out. No URL configured: ok, not checked."""
    if not cfg.url:
        return HealthResult(ok=True, url=None, status=None, seconds=0.0, attempts=0, error="no [health] url")
    if not cfg.url.startswith(("http://", "https://")):
        return HealthResult(False, cfg.url, None, 0.0, 0, "health.url must be http:// or https://")
    tries = attempts or cfg.attempts
    status, seconds, error = None, 0.0, None
    for attempt in range(1, tries + 1):
        status, seconds, error = probe(cfg.url, cfg.timeout)
        if status is not None and status < 400:
            return HealthResult(True, cfg.url, status, seconds, attempt)
        if attempt < tries:
            time.sleep(cfg.interval)
    return HealthResult(False, cfg.url, status, seconds, tries, error)


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
            "system": self.system,
        }


def _storage_check(cfg: Config) -> tuple[Check, int | None]:
    """Free disk in the storage, against what the next snapshot will need (the newest one's size + margin),
    and what the snapshots and the databases kept beside the live one take."""
    storage = cfg.storage.path if cfg.storage.path.exists() else cfg.storage.path.parent
    if not storage.exists():
        return Check("storage", False, f"{cfg.storage.path} does not exist"), None
    free = shutil.disk_usage(storage).free
    snapshots = SnapshotStore(cfg.storage).list()
    detail = f"{free // 2**20} MiB free in {storage}; snapshots {human_size(sum(s.manifest.size for s in snapshots))}"
    try:
        kept = list_kept(cfg, Journal(cfg.storage.journal_path))
        detail += f", {len(kept)} kept database(s) and filestore(s) {human_size(sum(i.size for i in kept))}"
    except RollbackError:
        kept = []  # the database check says why the server cannot be reached
        detail += ", kept databases not counted (no database server)"
    ok = free > 0
    if snapshots:
        # Monitoring should say so before a deploy is refused for lack of room for its snapshot.
        needed = int(snapshots[0].manifest.size * (1 + cfg.storage.free_space_margin))
        ok = free >= needed
        detail += f"; the next snapshot needs about {needed // 2**20} MiB" + ("" if ok else ": too little")
    overdue = select_droppable(kept, cfg.retention.kept)
    if overdue:
        ok = False
        names = ", ".join(i.name for i in overdue)
        detail += f"; {len(overdue)} kept beyond retention ({names}): run 'odoo-rollback prune'"
    return Check("storage", ok, detail), free


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
    storage, free = _storage_check(cfg)
    checks.append(storage)
    return HealthReport(cfg.database.name, tuple(checks), reachable, services, result, free, system_load())
