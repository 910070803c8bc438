"""Long work as jobs: each runs the helper's own command line in a subprocess.

Running the CLI (rather than a thread in this process) keeps one code path for the shell and for
Odoo, and keeps a restore's crash semantics: the journal is the record, whatever happens to the server.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..journal import FAILED, JOB_ENV_VAR, Journal, utcnow
from ..lock import moment, running_elsewhere
from ..process import last_line
from ..request import RestoreRequest, write_request

# Jobs whose command holds the operation lock (see odoo_rollback.lock); a verify only with --deep.
LOCKED = {"snapshot", "restore", "drill"}


class JobConflict(Exception):
    """Another operation holds the lock: the job is refused as the command line would refuse it."""


@dataclass
class Job:
    id: str
    kind: str
    argv: list[str]
    locks: bool = False  # its command holds the operation lock
    created_at: str = field(default_factory=utcnow)
    state: str = "queued"
    started_at: str | None = None
    finished_at: str | None = None
    result: Any = None
    error: str | None = None
    process: subprocess.Popen[str] | None = field(default=None, repr=False)

    def as_dict(self, journal: Journal) -> dict[str, Any]:
        operation = journal.operation_of_job(self.id)
        steps = (
            [
                {"step": e.step, "status": e.status, "at": e.at, "message": e.message}
                for e in journal.events(operation_id=operation.id)
            ]
            if operation
            else []
        )
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "operation_id": operation.id if operation else None,
            "result": self.result,
            "error": self.error,
            "steps": steps,
        }


class JobRunner:
    def __init__(self, config_path: Path, journal: Journal, requests_dir: Path | None = None) -> None:
        self.config_path = config_path
        self.journal = journal
        self.requests_dir = requests_dir or journal.path.parent / "requests"
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def running(self) -> Job | None:
        with self._lock:
            return next((j for j in self.jobs.values() if j.state in ("queued", "running")), None)

    def start(self, kind: str, args: list[str], request: RestoreRequest | None = None) -> Job:
        """Run the command *args* as a job; *request* is handed to it as ``--request <file>``."""
        with self._lock:
            if kind in LOCKED or "--deep" in args:
                self._refuse_while_locked()
            job_id = f"job-{uuid.uuid4().hex[:12]}"
            if request is not None:
                try:
                    path = write_request(self.requests_dir, job_id, request)
                except OSError as exc:
                    raise StorageError(f"cannot write the request file in {self.requests_dir}: {exc.strerror}") from exc
                args = [*args, "--request", str(path)]
            job = Job(
                id=job_id,
                kind=kind,
                locks=kind in LOCKED or "--deep" in args,
                argv=[sys.executable, "-m", "odoo_rollback.cli", "--config", str(self.config_path), *args, "--json"],
            )
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True, name=job.id).start()
        return job

    def _refuse_while_locked(self) -> None:
        """The refusal the job's own command would give, before it costs a process: "a restore is
        running (pid N, step S, started T)", whether that restore runs as a job or from a shell."""
        storage = self.journal.path.parent
        holder = running_elsewhere(storage, self.journal)
        if holder is None:
            # A job of this server that has not taken the lock yet: its process will, so wait for it.
            pending = next((j for j in self.jobs.values() if j.locks and j.state in ("queued", "running")), None)
            if pending is None:
                return
            pid = pending.process.pid if pending.process else "starting"
            started = moment(pending.started_at or pending.created_at)
            holder = f"a {pending.kind} is running (pid {pid}, step starting, started {started})"
        raise JobConflict(f"{holder}; try again once it has finished")

    def _run(self, job: Job) -> None:
        env = {**os.environ, JOB_ENV_VAR: job.id}
        job.started_at = utcnow()
        job.state = "running"
        try:
            job.process = subprocess.Popen(job.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            stdout, stderr = job.process.communicate()
            code = job.process.returncode
        except OSError as exc:
            stdout, stderr, code = "", str(exc), -1
        try:
            job.result = json.loads(stdout) if stdout.strip() else None
        except ValueError:
            job.result = None
        if code != 0:
            problems = job.result.get("problems") if isinstance(job.result, dict) else None
            job.error = (
                last_line(stderr).removeprefix("odoo-rollback: error: ")
                or "; ".join(problems or [])
                or f"exit status {code}"
            )
            # Before the job says it ended: whoever sees it ended finds it in the journal.
            self._journal_failure(job)
        job.finished_at = utcnow()
        job.state = "done" if code == 0 else "failed"

    def _journal_failure(self, job: Job) -> None:
        """Journal a job that failed before its command journaled anything (bad configuration, a check
        refused it): the journal is Odoo's one source, so every job the API accepted ends up in it."""
        if self.journal.operation_of_job(job.id) is not None:
            return
        try:
            op = self.journal.begin(job.kind, None, {"job_id": job.id})
            self.journal.finish(op, FAILED, job.error or "failed", {"error": job.error})
        except (StorageError, sqlite3.Error):
            # The journal itself is what failed; the job's error still answers GET /v1/jobs.
            return

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)
