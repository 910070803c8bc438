"""Deploying a code revision behind a verified snapshot, judged afterwards, rolled back when it fails.

Steps (each journaled before and after, in one ``deploy`` operation):

1. ``preflight``  the code folder is a clean git work tree that has the revision, the services are
                  healthy, no restore or deployment is unfinished. Any failure: nothing changed.
2. ``snapshot``   a verified ``pre_deploy`` snapshot of the current database and code: a recent one
                  of the same code revision is reused (``[deploy] reuse_snapshot_minutes``), else one
                  is taken and verified.
3. ``stop``       the services are stopped.
4. ``checkout``   git checkout of the revision.
5. ``update``     the configured update command (``odoo-bin -u {modules}``); its output is kept and
                  read for errors.
6. ``start``      the services are started and must answer the health check.
7. ``analysis``   rounds of checks for ``analysis_seconds``, as Argo Rollouts judges a rollout: health,
                  response time, Odoo's service log, smoke checks. A failed update, a start that never
                  answers, a serious error in the log or failed smoke checks fail the deployment;
                  slow answers or plain ERROR lines only make it inconclusive.
8. ``rollback``   a failed deployment is restored from the snapshot of step 2 (the restore path, which
                  also checks out the snapshot's code revision); an inconclusive one pauses: the
                  operator is asked on a terminal, else the command ends with its own exit status.

This module is the run; the plan (the checks before any change, and what would be done) is
:mod:`odoo_rollback.deploy_plan`, the analysis (the rounds of checks and their verdict)
:mod:`odoo_rollback.deploy_analysis`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import code as code_tree
from .config import Config
from .deploy_analysis import (
    DEPLOYED,
    IMMEDIATE,
    INCONCLUSIVE,
    OPERATION_STATE,
    OUTCOME_FAILED,
    PAUSED,
    ROLLED_BACK,
    Check,
    check_round,
    summarise,
    verdict_of,
)
from .deploy_plan import DeployPlan, DeployRequest, plan_deploy, render_update_command
from .errors import OperationFailed, RollbackError
from .health import http_check
from .journal import Journal
from .lock import operation_lock
from .logs import scan_text
from .process import popen, stop
from .restore import StepTiming, restore_snapshot
from .services import backend_for
from .snapshot import take_snapshot
from .standby import spawn_build
from .standby_state import read_state
from .storage import Snapshot, SnapshotStore
from .verify import verify_snapshot


@dataclass(frozen=True)
class Clock:
    """Time as the analysis sees it; tests pass one that does not really sleep."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class DeployResult:
    operation: str
    outcome: str = OUTCOME_FAILED
    reason: str = ""
    from_revision: str | None = None
    to_revision: str | None = None
    modules: list[str] = field(default_factory=list)
    snapshot: str | None = None
    snapshot_reused: bool = False
    steps: list[StepTiming] = field(default_factory=list)
    analysis: list[Check] = field(default_factory=list)
    rollback_operation: str | None = None
    update_log: str | None = None
    total_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "outcome": self.outcome,
            "reason": self.reason,
            "from_revision": self.from_revision,
            "to_revision": self.to_revision,
            "modules": self.modules,
            "snapshot": self.snapshot,
            "snapshot_reused": self.snapshot_reused,
            "steps": [s.as_dict() for s in self.steps],
            "analysis": [c.as_dict() for c in self.analysis],
            "rollback_operation": self.rollback_operation,
            "update_log": self.update_log,
            "total_seconds": round(self.total_seconds, 3),
        }


# -- the run --------------------------------------------------------------------------------------
class DeployFailed(Exception):
    """An immediate trigger: the deployment is judged failed (a rollback follows when enabled)."""


class DeployRun:
    """One deployment, with its journal operation and step timings."""

    def __init__(
        self,
        cfg: Config,
        request: DeployRequest,
        journal: Journal,
        clock: Clock | None = None,
        ask: Callable[[str], bool] | None = None,
        show_progress: bool = False,
    ) -> None:
        self.cfg = cfg
        self.request = request
        self.journal = journal
        self.clock = clock or Clock()
        self.ask = ask
        self.show_progress = show_progress
        self.backend = backend_for(cfg.services)
        self.result = DeployResult(operation="")
        self.plan: DeployPlan | None = None
        self.snapshot: Snapshot | None = None
        self.started_at: datetime | None = None  # wall clock: the service log is read from here
        self.stage = "preflight"  # "stop", then "changed" once the services may be down
        self.services_started = False

    @property
    def op(self) -> str:
        return self.result.operation

    @contextmanager
    def step(self, name: str, message: str = "", **data: Any) -> Iterator[dict[str, str]]:
        """Journal *name* as started, then done (with the message the body leaves) or failed."""
        self.journal.event(self.op, name, "start", message, data=data)
        done = {"message": ""}
        started = time.monotonic()
        try:
            yield done
        except BaseException as exc:
            self.result.steps.append(StepTiming(name, time.monotonic() - started, False))
            self.journal.event(self.op, name, "failed", str(exc) or exc.__class__.__name__)
            raise
        self.result.steps.append(StepTiming(name, time.monotonic() - started, True))
        self.journal.event(self.op, name, "done", done["message"])
        self.journal.update(self.op, {"completed": [s.name for s in self.result.steps if s.ok]})

    def record(self, **data: Any) -> None:
        self.journal.update(self.op, data)

    def add_check(self, check: Check) -> None:
        self.result.analysis.append(check)
        self.record(analysis=[c.as_dict() for c in self.result.analysis])

    # -- steps ----------------------------------------------------------------------------------
    def preflight(self) -> None:
        plan = plan_deploy(self.cfg, self.request, self.journal, self.op)
        self.plan = plan
        self.result.from_revision, self.result.to_revision = plan.from_revision, plan.to_revision
        self.result.modules = plan.modules
        self.record(from_revision=plan.from_revision, to_revision=plan.to_revision, modules=plan.modules)

    def take_snapshot(self) -> None:
        assert self.plan is not None
        snapshot = self.plan.reuse
        if snapshot is None:
            label = f"before deploying {self.plan.requested} ({self.plan.to_revision[:12]})"
            taken = take_snapshot(self.cfg, "pre_deploy", label, self.journal, show_progress=self.show_progress)
            verified = verify_snapshot(self.cfg, taken, deep=False, journal=self.journal)
            if not verified.ok:
                raise OperationFailed(f"snapshot {taken.id} failed its verification: {'; '.join(verified.problems)}")
            snapshot = SnapshotStore(self.cfg.storage).get(taken.id)
        self.snapshot = snapshot
        self.result.snapshot, self.result.snapshot_reused = snapshot.id, self.plan.reuse is not None
        self.build_standby(snapshot)
        self.record(snapshot=snapshot.id, snapshot_reused=self.result.snapshot_reused)

    def build_standby(self, snapshot: Snapshot) -> None:
        """The snapshot restored ahead of need, in the background: a rollback becomes a swap."""
        if not self.cfg.standby.enabled or read_state(snapshot.path) is not None:
            return
        try:
            spawn_build(self.cfg, snapshot, self.journal, self.op)
        except RollbackError as exc:  # without one, a rollback restores from the snapshot
            self.journal.event(self.op, "standby", "info", f"no standby: {exc}")

    def stop(self) -> None:
        self.record(services_stopped=True)
        self.backend.stop()

    def checkout(self) -> None:
        assert self.plan is not None
        self.record(code_previous=self.plan.from_revision)
        code_tree.checkout(self.plan.code_path, self.plan.to_revision)

    def update(self) -> None:
        """Run the update command; a failure or an error in its output fails the deployment."""
        assert self.plan is not None
        argv = render_update_command(self.cfg, self.plan.modules)
        log_path = self.cfg.storage.path / "deploys" / self.op / "update.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.result.update_log = str(log_path)
        self.record(update_log=str(log_path))
        try:
            with popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as process:
                try:
                    output, _ = process.communicate(timeout=self.cfg.deploy.update_timeout)
                    status: int | None = process.returncode
                except subprocess.TimeoutExpired:
                    process.kill()
                    partial, _ = process.communicate()
                    output, status = (partial or "") + f"\n(killed after {self.cfg.deploy.update_timeout} s)\n", None
                except BaseException:
                    stop(process)  # interrupted: the update must not go on alone
                    raise
        except OperationFailed as exc:  # not installed: a failed update like any other
            output, status = f"{exc}\n", None
        log_path.write_text(output, encoding="utf-8")
        scan = scan_text(output, "update")
        problems = []
        if status != 0:
            problems.append("did not finish" if status is None else f"exited with status {status}")
        if scan.errors:
            problems.append(f"{len(scan.errors)} error(s) in its output, first: {scan.errors[0].summary()}")
        detail = f"{' '.join(argv[:2])}... -u {','.join(self.plan.modules)}: " + ("; ".join(problems) or "ok")
        self.add_check(Check("update", not problems, detail, IMMEDIATE if problems else None))
        if problems:
            raise DeployFailed(f"the module update failed: {'; '.join(problems)} (output in {log_path})")

    def start(self) -> None:
        try:
            self.backend.start()
        except RollbackError as exc:
            self.add_check(Check("health", False, f"the services did not start: {exc}", IMMEDIATE))
            raise DeployFailed(f"the services did not start: {exc}") from exc
        health = http_check(self.cfg.health)
        if not health.ok:
            detail = f"{health.url} did not answer after the start ({health.attempts} attempts): {health.error}"
            self.add_check(Check("health", False, detail, IMMEDIATE))
            raise DeployFailed(detail)

    # -- analysis -------------------------------------------------------------------------------
    def check_round(self) -> dict[str, Any]:
        """One round of checks; plain data, journaled as it is."""
        counts = self.snapshot.manifest.counts if self.snapshot else None
        return check_round(self.cfg, self.started_at, counts)

    def analyse(self) -> None:
        interval = self.cfg.deploy.analysis_interval
        deadline = self.clock.monotonic() + self.cfg.deploy.analysis_seconds
        rounds: list[dict[str, Any]] = []
        while True:
            current = self.check_round()
            rounds.append(current)
            self.journal.event(self.op, "analysis", "info", f"round {len(rounds)}", data=current)
            if current["log_serious"]:
                break  # a traceback will not go away by waiting: judge now
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                break
            self.clock.sleep(min(interval, remaining))
        for check in summarise(self.cfg, rounds):
            self.add_check(check)

    def execute(self) -> None:
        """The steps in order; DeployFailed when an immediate trigger fires before the analysis."""
        result, journal = self.result, self.journal
        with self.step("preflight", "code folder, revision, modules, services") as done:
            self.preflight()
            assert self.plan is not None
            done["message"] = f"{self.plan.from_revision[:12]} -> {self.plan.to_revision[:12]}"
        plan = self.plan
        with self.step("snapshot", "reusing a recent one" if plan.reuse else "taking and verifying one") as done:
            self.take_snapshot()
            done["message"] = f"snapshot {result.snapshot}" + (" (reused)" if result.snapshot_reused else "")
        self.stage = "stop"
        with self.step("stop", f"stopping the services ({self.backend.name})", backend=self.backend.name):
            self.stop()
        self.stage = "changed"
        self.started_at = datetime.now(timezone.utc)
        with self.step("checkout", f"git checkout {plan.to_revision}", revision=plan.to_revision) as done:
            try:
                self.checkout()
            except RollbackError as exc:
                raise DeployFailed(f"the checkout of {plan.to_revision} failed: {exc}") from exc
            done["message"] = f"the code is at {plan.to_revision[:12]}"
        if plan.modules:
            with self.step("update", f"updating {', '.join(plan.modules)}", modules=plan.modules) as done:
                self.update()
                done["message"] = f"output in {result.update_log}"
        else:
            journal.event(self.op, "update", "info", "no installed module changed: nothing to update")
        with self.step("start", f"starting the services ({self.backend.name})", backend=self.backend.name) as done:
            self.start()
            done["message"] = "the services answer" if self.cfg.health.url else "started (no [health] url)"
        self.services_started = True
        seconds, interval = self.cfg.deploy.analysis_seconds, self.cfg.deploy.analysis_interval
        with self.step("analysis", f"checks every {interval} s for {seconds} s", seconds=seconds) as done:
            self.analyse()
            done["message"] = verdict_of(result.analysis)[1]
        trigger, reason = verdict_of(result.analysis)
        if trigger is None:
            result.outcome, result.reason = DEPLOYED, reason
        else:
            self.decide(trigger, reason)

    # -- after the verdict ----------------------------------------------------------------------
    def tidy_code_tree(self) -> None:
        """Put the work tree back to its checked-out revision before the restore (whose preflight
        demands a clean tree). The preflight found nothing of the operator's there, so what is
        removed here was left by this deployment (or is a cache)."""
        assert self.plan is not None
        if code_tree.stray_paths(self.plan.code_path):
            code_tree.discard_changes(self.plan.code_path)
            self.journal.event(self.op, "rollback", "info", "files left by the deployment removed from the code tree")

    def roll_back(self, reason: str) -> None:
        assert self.snapshot is not None
        before = {o.id for o in self.journal.operations(kind="restore", limit=1000)}
        try:
            with self.step(
                "rollback", f"restoring snapshot {self.snapshot.id}: {reason}", snapshot=self.snapshot.id
            ) as done:
                self.tidy_code_tree()
                try:
                    restore_snapshot(self.cfg, self.snapshot, self.journal, show_progress=self.show_progress)
                finally:
                    restores = [
                        o
                        for o in self.journal.operations(kind="restore", limit=1000)
                        if o.id not in before and o.data.get("snapshot") == self.snapshot.id
                    ]
                    if restores:
                        self.result.rollback_operation = restores[0].id
                        self.record(rollback_operation=restores[0].id)
                done["message"] = f"the snapshot is live again (restore {self.result.rollback_operation})"
        except RollbackError as exc:
            self.result.outcome = OUTCOME_FAILED
            self.result.reason = f"{reason}; the rollback failed too: {exc}"
            raise OperationFailed(self.result.reason) from exc
        self.result.outcome = ROLLED_BACK
        self.result.reason = f"{reason}; rolled back to snapshot {self.snapshot.id}"

    def decide(self, verdict: str, reason: str) -> None:
        """The analysis did not pass: roll back, or leave the decision to the operator."""
        if verdict == IMMEDIATE and self.request.auto_rollback:
            self.roll_back(reason)
            return
        why = reason if verdict == INCONCLUSIVE else f"{reason} (automatic rollback is off)"
        if self.ask is not None:
            self.journal.event(self.op, "decision", "start", f"asking the operator: {why}")
            if self.ask(f"{why}. Roll back to snapshot {self.result.snapshot}?"):
                self.journal.event(self.op, "decision", "done", "the operator chose to roll back")
                self.roll_back(f"{why}; the operator chose to roll back")
                return
            self.journal.event(self.op, "decision", "done", "the operator kept the deployment")
            self.result.outcome = DEPLOYED if verdict == INCONCLUSIVE else OUTCOME_FAILED
            self.result.reason = f"{why}; kept by the operator"
            return
        self.result.outcome = PAUSED
        state = "" if self.services_started else " (the services are stopped)"
        self.result.reason = (
            f"{why}; paused{state}: roll back with 'odoo-rollback restore {self.result.snapshot} --yes', "
            "or keep the deployment"
        )


def deploy(
    cfg: Config,
    request: DeployRequest,
    journal: Journal,
    clock: Clock | None = None,
    ask: Callable[[str], bool] | None = None,
    show_progress: bool = False,
) -> DeployResult:
    """Deploy *request*; the result's outcome is deployed, rolled_back, paused or failed.

    Raises when a precondition fails (nothing changed) and when the deployment or its rollback fails
    in a way that leaves things for the operator (the journal says in what state). Holds the operation
    lock throughout: its snapshot and its rollback run under it.
    """
    with operation_lock(cfg.storage.path, journal, "deploy", database=cfg.database):
        return _deploy(cfg, request, journal, clock, ask, show_progress)


def _deploy(
    cfg: Config,
    request: DeployRequest,
    journal: Journal,
    clock: Clock | None,
    ask: Callable[[str], bool] | None,
    show_progress: bool,
) -> DeployResult:
    run = DeployRun(cfg, request, journal, clock, ask, show_progress)
    result = run.result
    started = time.monotonic()
    result.operation = journal.begin(
        "deploy",
        cfg.database.name,
        {
            "requested": request.revision,
            "snapshot": None,
            "from_revision": None,
            "to_revision": None,
            "modules": [],
            "analysis": [],
            "outcome": None,
            "rollback_operation": None,
            "auto_rollback": request.auto_rollback,
            "pid": os.getpid(),
        },
    )
    try:
        run.execute()
    except DeployFailed as exc:
        try:
            run.decide(IMMEDIATE, str(exc))
        except BaseException as inner:
            _finish(journal, result, started, inner)
            raise
    except BaseException as exc:
        if run.stage == "stop":
            # Nothing was changed but the services may be half stopped: bring them back.
            with suppress(RollbackError):
                run.backend.start()
        _finish(journal, result, started, exc)
        if isinstance(exc, RollbackError) and run.stage == "changed":
            raise OperationFailed(
                f"deploy failed after the code was changed ({exc}); the pre_deploy snapshot is {result.snapshot}: "
                f"'odoo-rollback restore {result.snapshot} --yes' goes back"
            ) from exc
        raise
    _finish(journal, result, started)
    return result


def _finish(journal: Journal, result: DeployResult, started: float, error: BaseException | None = None) -> None:
    result.total_seconds = time.monotonic() - started
    if error is not None:
        result.outcome = OUTCOME_FAILED
        result.reason = result.reason or str(error) or error.__class__.__name__
    data = {
        "outcome": result.outcome,
        "reason": result.reason,
        "analysis": [c.as_dict() for c in result.analysis],
        "rollback_operation": result.rollback_operation,
        "steps": [s.as_dict() for s in result.steps],
        "result": result.as_dict(),
    }
    journal.finish(result.operation, OPERATION_STATE[result.outcome], f"{result.outcome}: {result.reason}", data)


__all__ = [
    "DEPLOYED",
    "PAUSED",
    "ROLLED_BACK",
    "Clock",
    "DeployRequest",
    "DeployResult",
    "deploy",
    "plan_deploy",
]
