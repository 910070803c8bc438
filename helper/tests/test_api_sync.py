"""What Odoo's one sync path reads from the helper: the journal (every job in it, each found by its id)
and the configuration Odoo shows read-only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import HelperEnv, Served
from odoo_rollback.api.jobs import Job, JobRunner
from odoo_rollback.journal import FAILED, JOB_ENV_VAR, Journal


def test_a_job_finds_its_operation_however_many_came_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    monkeypatch.setenv(JOB_ENV_VAR, "job-old")
    op = journal.begin("snapshot", "prod")
    monkeypatch.delenv(JOB_ENV_VAR)
    for _ in range(250):
        journal.begin("verify", "prod")

    found = Job(id="job-old", kind="snapshot", argv=[]).as_dict(journal)

    assert found["operation_id"] == op
    assert [step["step"] for step in found["steps"]] == ["snapshot"]


def test_a_job_that_fails_before_journaling_is_journaled(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    runner = JobRunner(tmp_path / "no-such-config.toml", journal)

    job = runner.start("snapshot", ["snapshot", "--kind", "manual"])
    deadline = time.monotonic() + 60
    while job.state not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)

    assert job.state == "failed" and job.error
    operation = journal.operation_of_job(job.id)
    assert operation is not None
    assert (operation.kind, operation.state, operation.data["error"]) == ("snapshot", FAILED, job.error)
    # Its last journal line carries the error, as every failed operation's does.
    assert journal.events(operation_id=operation.id)[-1].message == job.error


def test_config_is_what_odoo_shows(served: Served, helper_env: HelperEnv) -> None:
    status, config = served.client.request("GET", "/v1/config")

    assert status == 200
    assert config["database"] == helper_env.db.name
    assert config["rto"] == {"target_minutes": 15.0, "max_minutes": 30.0}
    assert config["counts"]["tables"] == ["account_move", "res_partner", "einvoice_document"]
    assert config["source"] == str(helper_env.config_path)


def test_journal_pages_resume_after_the_cursor(served: Served, helper_env: HelperEnv) -> None:
    helper_env.run_json("snapshot", "--kind", "manual")
    status, everything = served.client.request("GET", "/v1/journal?since=0")
    assert status == 200
    seqs = [event["seq"] for event in everything["events"]]
    middle = seqs[len(seqs) // 2]

    status, rest = served.client.request("GET", f"/v1/journal?since={middle}")

    assert [event["seq"] for event in rest["events"]] == [seq for seq in seqs if seq > middle]
    assert rest["next"] == seqs[-1]
