"""The deployment's analysis: rounds of checks after the start, and the verdict they give.

As Argo Rollouts judges a rollout: health, response time, Odoo's service log and the smoke checks, each
round plain data (journaled as it is); :func:`summarise` turns the rounds into one check per kind, each
failing one IMMEDIATE (roll back) or INCONCLUSIVE (the operator decides), and :func:`verdict_of` into
the deployment's verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .config import Config
from .errors import RollbackError
from .health import health_report
from .journal import DONE, FAILED, UNDONE
from .logs import LogScan, log_source, service_log_errors
from .role import ROLE_CHECK
from .smoke import smoke_report
from .standby import STANDBY_CHECK

DEPLOYED = "deployed"
ROLLED_BACK = "rolled_back"
PAUSED = "paused"
OUTCOME_FAILED = "failed"
# The journal's operation states (running/done/failed/undone) that each outcome ends in. A paused
# deployment is finished as far as the helper goes: the operator's decision is a restore of its own.
OPERATION_STATE = {DEPLOYED: DONE, ROLLED_BACK: UNDONE, PAUSED: DONE, OUTCOME_FAILED: FAILED}

IMMEDIATE = "immediate"  # fails the deployment: roll back
INCONCLUSIVE = "inconclusive"  # the operator decides


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    trigger: str | None = None  # IMMEDIATE or INCONCLUSIVE when not ok

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "trigger": self.trigger}


def check_round(cfg: Config, since: datetime | None, counts: dict[str, int | None] | None) -> dict[str, Any]:
    """One round of checks since the services started; plain data, journaled as it is."""
    report = health_report(cfg)
    # Room for the next snapshot (or standby) and the helper's own grants are monitoring's concern,
    # not this deployment's; the URL's own verdict is its answer (its response time is judged below).
    services_ok = not report.failed(ignore=("storage", STANDBY_CHECK, ROLE_CHECK, "http"))
    http = report.http
    log: LogScan | None = None
    log_problem = None
    try:
        log = service_log_errors(cfg, since)
    except RollbackError as exc:
        log_problem = str(exc)
    try:
        smoke = smoke_report(cfg, counts, configured_only=True)
    except RollbackError as exc:
        smoke = {"ok": False, "checks": [{"name": "smoke", "ok": False, "detail": str(exc)}]}
    return {
        "healthy": services_ok and (http is None or http.ok),
        "health_detail": "; ".join(f"{c.name}: {c.detail}" for c in report.failed(ignore=("http",)))
        or (f"{http.url}: {http.status or http.error}" if http else "services running"),
        "seconds": http.seconds if http and http.ok else None,
        "log_errors": [e.summary() for e in log.errors] if log else [],
        "log_serious": [e.summary() for e in log.serious] if log else [],
        "log_lines": log.lines_read if log else 0,
        "log_problem": log_problem,
        "smoke": smoke,
    }


def summarise(cfg: Config, rounds: list[dict[str, Any]]) -> list[Check]:
    """The analysis' verdict per check, from its rounds."""
    checks = []
    healthy = [r["healthy"] for r in rounds]
    if all(healthy):
        checks.append(Check("health", True, f"healthy in all {len(rounds)} round(s)"))
    elif not any(healthy):
        checks.append(Check("health", False, f"unhealthy in every round: {rounds[-1]['health_detail']}", IMMEDIATE))
    else:
        state = "unhealthy at the end" if not healthy[-1] else "healthy at the end"
        detail = f"unhealthy in {healthy.count(False)} of {len(rounds)} round(s), {state}: "
        checks.append(Check("health", False, detail + rounds[-1]["health_detail"], INCONCLUSIVE))

    limit = cfg.health.max_response_seconds
    times = [r["seconds"] for r in rounds if r["seconds"] is not None]
    if not cfg.health.url:
        checks.append(Check("response_time", True, "not measured: no [health] url"))
    elif not times:
        checks.append(Check("response_time", False, "no answer to measure", INCONCLUSIVE))
    else:
        slow = [t for t in times if t > limit]
        detail = f"slowest {max(times):.3f} s of {len(times)} answer(s), limit {limit} s"
        checks.append(Check("response_time", not slow, detail, INCONCLUSIVE if slow else None))

    last = rounds[-1]
    if last["log_problem"]:
        checks.append(Check("log", False, f"the service log could not be read: {last['log_problem']}", INCONCLUSIVE))
    elif last["log_serious"]:
        detail = f"{len(last['log_serious'])} critical error(s) or traceback(s), first: {last['log_serious'][0]}"
        checks.append(Check("log", False, detail, IMMEDIATE))
    elif last["log_errors"]:
        detail = f"{len(last['log_errors'])} error line(s), first: {last['log_errors'][0]}"
        checks.append(Check("log", False, detail, INCONCLUSIVE))
    elif log_source(cfg) is None:
        checks.append(Check("log", True, "not read: no service log configured ([deploy] log_file)"))
    else:
        checks.append(Check("log", True, f"no errors in {last['log_lines']} line(s) from {log_source(cfg)}"))

    smoke = last["smoke"]
    failed = [f"{c['name']}: {c['detail']}" for c in smoke["checks"] if not c["ok"]]
    checks.append(
        Check(
            "smoke",
            smoke["ok"],
            "; ".join(failed) or f"{len(smoke['checks'])} check(s) passed",
            None if smoke["ok"] else IMMEDIATE,
        )
    )
    return checks


def verdict_of(checks: list[Check]) -> tuple[str | None, str]:
    """(IMMEDIATE, INCONCLUSIVE or None when all passed, the reason in one line)."""
    for trigger in (IMMEDIATE, INCONCLUSIVE):
        hits = [c for c in checks if not c.ok and c.trigger == trigger]
        if hits:
            kind = "failed" if trigger == IMMEDIATE else "was inconclusive"
            return trigger, f"the analysis {kind}: " + "; ".join(f"{c.name}: {c.detail}" for c in hits)
    return None, "all checks passed"
