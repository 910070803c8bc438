"""kill -9 at every step of a restore: the live name always holds a whole database, and resume
finishes or undoes the restore without losing a row."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Collection
from pathlib import Path
from typing import Any

import odoo_rollback
import pytest
from conftest import HelperEnv, database_counts, list_databases, tail_slots
from odoo_rollback.restore import STEP_NAMES, STEPS, SWAP

CRASH_RUNNER = Path(__file__).with_name("crash_runner.py")

SNAPSHOT_COUNTS = {"account_move": 200, "res_partner": 50}
CHANGED_COUNTS = {"account_move": 180, "res_partner": 57}
# Steps a restore without a warm standby skips: the helper's fixture builds none.
SKIPPED_WITHOUT_STANDBY = {"standby_recheck"}


def kill_points(skipped: Collection[str] = SKIPPED_WITHOUT_STANDBY) -> list[tuple[str, bool]]:
    """(journal line after which the helper dies, whether the database swap has committed by then):
    the start and the end of every step of the restore's table, and the swap's database rename; the
    *skipped* steps are journaled once, as skipped (with a standby: staging and check)."""
    after_swap = STEP_NAMES.index(SWAP)
    points = []
    for index, name in enumerate(STEP_NAMES):
        if name in skipped:
            points.append((f"{name}:skipped", index >= after_swap))
            continue
        points.append((f"{name}:start", index > after_swap))
        if name == SWAP:
            points.append(("swap_database:done", True))
        points.append((f"{name}:done", index >= after_swap))
    return points


def restore_killed_at(helper_env: HelperEnv, snapshot_id: str, kill_at: str) -> None:
    """Run a restore that is SIGKILLed right after the journal line *kill_at* (see crash_runner.py)."""
    helper_env.write()
    killed = subprocess.run(
        [
            sys.executable,
            str(CRASH_RUNNER),
            kill_at,
            "--config",
            str(helper_env.config_path),
            "restore",
            snapshot_id,
            "--yes",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr


def test_the_kill_points_cover_the_table() -> None:
    points = dict(kill_points())
    assert len(points) == 2 * len(STEPS) + 1 - len(SKIPPED_WITHOUT_STANDBY)
    assert points["stop:done"] is False and points["swap:start"] is False
    # The lost changes are read from the kept database after the start: after the swap.
    assert points["lost_rows:start"] is True
    assert points["swap_database:done"] is True and points["code:start"] is True


def test_the_helper_carries_no_test_switch() -> None:
    # The privileged program reads no test-only environment variable and never kills itself.
    for path in Path(odoo_rollback.__file__).parent.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "_TEST_" not in text and "os.kill(os.getpid()" not in text, path


@pytest.mark.parametrize(("kill_at", "swapped"), kill_points())
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
    assert not tail_slots()  # a read-ahead's slot, killed with its restore, is dropped by resume


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
