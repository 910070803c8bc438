"""kill -9 at every step of a restore: the live name always holds a whole database, and resume
finishes or undoes the restore without losing a row."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from conftest import HelperEnv, database_counts, list_databases

SNAPSHOT_COUNTS = {"account_move": 200, "res_partner": 50}
CHANGED_COUNTS = {"account_move": 180, "res_partner": 57}

# (event after which the helper dies, whether the database swap has committed by then)
KILL_POINTS = [
    ("preflight:done", False),
    ("staging:start", False),
    ("staging:done", False),
    ("check:done", False),
    ("stop:done", False),
    ("swap:start", False),
    ("swap_database:done", True),
    ("swap:done", True),
    ("code:done", True),
    ("verify_live:done", True),
    ("start:start", True),
    ("start:done", True),
]


def restore_killed_at(helper_env: HelperEnv, snapshot_id: str, kill_at: str) -> None:
    """Run a restore that SIGKILLs itself right after the journal event *kill_at*."""
    helper_env.write()
    env = {**os.environ, "ODOO_ROLLBACK_TEST_KILL_AT": kill_at}
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "odoo_rollback.cli",
            "--config",
            str(helper_env.config_path),
            "restore",
            snapshot_id,
            "--yes",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr


@pytest.mark.parametrize(("kill_at", "swapped"), KILL_POINTS)
def test_kill_at_every_step_then_resume(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], kill_at: str, swapped: bool
) -> None:
    restore_killed_at(helper_env, snapshot_then_changes["id"], kill_at)

    # Whatever the moment, the production name holds a whole database: the old one or the new one.
    assert database_counts(helper_env.db.name) == (SNAPSHOT_COUNTS if swapped else CHANGED_COUNTS)
    # A new restore refuses to start over an interrupted one.
    refused = helper_env.run("rollback", "--yes")
    assert refused.returncode == 3 and "resume" in refused.stderr

    outcome = helper_env.run_json("resume")

    assert [o["outcome"] for o in outcome] == ["finished" if swapped else "undone"]
    databases = list_databases(helper_env.db.name)
    if swapped:
        assert database_counts(helper_env.db.name) == SNAPSHOT_COUNTS
        # No row is lost: the deployment's database is kept whole beside it.
        assert len(databases) == 2
        assert database_counts(outcome[0]["kept_as"]) == CHANGED_COUNTS
        assert not (helper_env.filestore / "ff").exists()
    else:
        assert database_counts(helper_env.db.name) == CHANGED_COUNTS
        assert databases == [helper_env.db.name]
        assert (helper_env.filestore / "ff" / "new-attachment").exists()
    assert helper_env.run_json("resume") == []
    assert not [p for p in helper_env.filestore.parent.iterdir() if "__restore_" in p.name]


def test_resume_after_the_swap_swaps_back_when_the_health_check_fails(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    helper_env.write(health={"url": "http://127.0.0.1:9/web/login", "attempts": 2, "interval": 0.1, "timeout": 1})
    restore_killed_at(helper_env, snapshot_then_changes["id"], "swap:done")
    assert database_counts(helper_env.db.name) == SNAPSHOT_COUNTS

    outcome = helper_env.run_json("resume")

    assert outcome[0]["outcome"] == "undone" and "health check" in outcome[0]["problems"][0]
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    assert (helper_env.filestore / "ff" / "new-attachment").exists()
    assert helper_env.run_json("journal")["operations"][0]["state"] == "undone"
