"""The deployment's plan: every check that can be made before a change, and what would be done.

``odoo-rollback deploy`` without ``--yes`` prints it; with ``--yes`` the run (:mod:`odoo_rollback.deploy`)
starts from it, so a deployment never does what its plan did not show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import code as code_tree
from .config import Config
from .db import connect
from .deploy_analysis import OUTCOME_FAILED
from .errors import ConfigError, PreconditionError, UsageError
from .health import health_report
from .journal import FAILED, Journal
from .lock import operation_alive
from .modules import installed_modules
from .restore import check_no_unfinished
from .services import backend_for
from .smoke import check_smoke_config
from .standby import STANDBY_CHECK
from .storage import Snapshot, SnapshotStore

STEPS = ("preflight", "snapshot", "stop", "checkout", "update", "start", "analysis")
MODULE_NAME = re.compile(r"^[A-Za-z0-9_]+$")
# What Python and tools leave in a work tree by themselves; anything else untracked is refused.


@dataclass(frozen=True)
class DeployRequest:
    revision: str
    modules: tuple[str, ...] = ()
    changed: bool = False
    auto_rollback: bool = True


@dataclass
class DeployPlan:
    code_path: Path
    requested: str
    from_revision: str
    to_revision: str
    modules: list[str]
    not_installed: list[str]
    reuse: Snapshot | None
    auto_rollback: bool

    def as_dict(self, cfg: Config) -> dict[str, Any]:
        return {
            "database": cfg.database.name,
            "code_path": str(self.code_path),
            "requested": self.requested,
            "from_revision": self.from_revision,
            "to_revision": self.to_revision,
            "modules": self.modules,
            "changed_but_not_installed": self.not_installed,
            "snapshot": {"reuse": self.reuse.id} if self.reuse else {"take": "pre_deploy"},
            "update_command": render_update_command(cfg, self.modules) if self.modules else None,
            "analysis_seconds": cfg.deploy.analysis_seconds,
            "analysis_interval": cfg.deploy.analysis_interval,
            "auto_rollback": self.auto_rollback,
            "services": cfg.services.backend,
            "steps": list(STEPS),
        }


# -- the update command --------------------------------------------------------------------------------
def render_update_command(cfg: Config, modules: list[str]) -> list[str]:
    values = {"database": cfg.database.name, "modules": ",".join(modules)}
    return [argument.format(**values) for argument in cfg.deploy.update_command]


# -- the plan (no change) -------------------------------------------------------------------------
def _reusable_snapshot(cfg: Config, code_revision: str) -> Snapshot | None:
    minutes = cfg.deploy.reuse_snapshot_minutes
    if minutes <= 0:
        return None
    snapshot = SnapshotStore(cfg.storage).newest("pre_deploy", verified=True, database=cfg.database.name)
    if snapshot is None or snapshot.manifest.code_revision != code_revision:
        return None
    taken = datetime.fromisoformat(snapshot.manifest.created_at)
    age_minutes = (datetime.now(timezone.utc) - taken).total_seconds() / 60
    return snapshot if 0 <= age_minutes <= minutes else None


def _check_health_now(cfg: Config) -> None:
    # No room for a warm standby does not stop a deployment: it rolls back by staging, as before.
    failed = [f"{c.name}: {c.detail}" for c in health_report(cfg).failed(ignore=(STANDBY_CHECK,))]
    if failed:
        raise PreconditionError("the deployment is not healthy now, deploy refused: " + "; ".join(failed))


def close_interrupted_deployments(journal: Journal, operation: str | None, storage: Path) -> None:
    """Refuse while another deployment runs. One whose process is gone (killed) is closed as failed,
    with its last step, when *operation* (a real run, not a plan) is given: the checks that follow
    (clean code tree, healthy services) then judge the state it left. A real run holds the operation
    lock, which proves any other deployment's process dead, whatever its recorded pid now is."""
    for pending in journal.unfinished("deploy"):
        if pending.id == operation:
            continue
        pid = pending.data.get("pid")
        if operation_alive(storage, pending):
            raise PreconditionError(f"deployment {pending.id} is running (process {pid}); wait for it to finish")
        if operation is None:
            continue
        events = journal.events(operation_id=pending.id)
        last = f"{events[-1].step} {events[-1].status}" if events else "none"
        journal.finish(
            pending.id,
            FAILED,
            f"interrupted: process {pid} ended before the deployment finished (last step: {last}); "
            f"closed by deployment {operation}",
            {"outcome": OUTCOME_FAILED},
        )


def plan_deploy(cfg: Config, request: DeployRequest, journal: Journal, operation: str | None = None) -> DeployPlan:
    """Every check that can be made before a change; raises when one fails, changes nothing.

    *operation* is the deployment being checked, when it is already in the journal."""
    if not cfg.deploy.update_command:
        raise ConfigError("deploy needs [deploy] update_command (odoo-bin's module update as an argument list)")
    path = cfg.code.path
    if path is None:
        raise ConfigError("deploy needs [code] path: the git work tree of the deployed addons")
    if request.modules and request.changed:
        raise UsageError("give --modules or --changed, not both")
    if not request.modules and not request.changed:
        raise UsageError("say which modules to update: --modules a,b or --changed")
    for module in request.modules:
        if not MODULE_NAME.match(module):
            raise UsageError(f"{module!r} is not a module name")
    check_no_unfinished(journal, cfg.storage.path)
    close_interrupted_deployments(journal, operation, cfg.storage.path)
    from_revision = code_tree.head(path)
    code_tree.check_clean(path, "before deploying")
    to_revision = code_tree.resolve_revision(path, request.revision)
    if to_revision == from_revision:
        raise PreconditionError(f"code folder {path} is already at {request.revision} ({to_revision[:12]})")
    with connect(cfg.database) as conn:
        installed = installed_modules(conn)
    if request.changed:
        candidates = code_tree.changed_modules(path, from_revision, to_revision)
        modules = [m for m in candidates if m in installed]
        not_installed = [m for m in candidates if m not in installed]
    else:
        missing = [m for m in request.modules if m not in installed]
        if missing:
            raise PreconditionError(
                f"module(s) {', '.join(missing)} not installed in {cfg.database.name}: an update would do nothing"
            )
        modules, not_installed = list(dict.fromkeys(request.modules)), []
    backend_for(cfg.services).check()
    _check_health_now(cfg)
    if cfg.smoke.login or cfg.smoke.credentials_file:
        # A smoke set up wrongly would fail the analysis and roll a good deployment back: refuse now.
        check_smoke_config(cfg)
    return DeployPlan(
        code_path=path,
        requested=request.revision,
        from_revision=from_revision,
        to_revision=to_revision,
        modules=modules,
        not_installed=not_installed,
        reuse=_reusable_snapshot(cfg, from_revision),
        auto_rollback=request.auto_rollback,
    )
