"""A disk that fills up during a snapshot, a restore, a drill or a deployment: one clear line, a non-zero
exit, the journal says failed (or the next run closes what a full journal could not), the live database
and filestore untouched, nothing half-made listed.

The disks are small tmpfs mounts; the checks made before each run pass, and the disk fills up later:
the dump of random bytes is larger than its estimate, the rows a restore exports outgrow the storage,
or the test fills the disk while the run waits for its services to stop.
"""

from __future__ import annotations

import errno
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import HelperEnv, database_counts, list_databases, tmpfs
from test_deploy import (  # the deployment's world: real Odoo, a git repository, a stand-in container
    DeployEnv,
    addon_repo,  # noqa: F401
    assert_at_revision_1,
    deploy_env,  # noqa: F401
    stand_in,  # noqa: F401
    template_db,  # noqa: F401
)
from test_lock import kill_9, operations, slow_stop, start, wait_for_event


def fill(path: Path) -> Path:
    """Fill the file system of *path* to the last byte; the returned file frees it."""
    filler = path / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def add_random_megabytes(helper_env: HelperEnv, megabytes: int) -> None:
    """Incompressible rows: their dump is about their size, four times what the snapshot expects."""
    helper_env.db.execute(
        "CREATE TABLE blob AS SELECT r, decode(string_agg(md5(random()::text || g), ''), 'hex') AS b "
        "FROM generate_series(1, 64) g, generate_series(1, %s) r GROUP BY r",
        (megabytes * 1024,),
    )


def expected_snapshot_size(helper_env: HelperEnv) -> int:
    """What the snapshot's free-space check asks for (see snapshot.check_free_space)."""
    size = int(helper_env.db.execute("SELECT pg_database_size(current_database())")[0][0])
    files = sum(p.stat().st_size for p in helper_env.filestore.rglob("*") if p.is_file())
    return int((size // 4 + files) * 1.2)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_dump_that_fills_the_storage_leaves_nothing_and_says_so(helper_env: HelperEnv, tmp_path: Path) -> None:
    add_random_megabytes(helper_env, 16)
    with tmpfs(tmp_path / "small", expected_snapshot_size(helper_env) + 2**20) as mount:
        helper_env.write(storage={"path": str(mount / "storage")})

        result = helper_env.run("snapshot")

        assert result.returncode == 4
        assert "No space left on device" in one_line(result)
        assert helper_env.run_json("list") == []
        assert not list((mount / "storage" / "snapshots").iterdir())
        assert [op["state"] for op in operations(mount / "storage", "snapshot")] == ["failed"]


def test_lost_changes_that_fill_the_storage_are_reported_and_kept_in_the_replaced_database(
    helper_env: HelperEnv, tmp_path: Path
) -> None:
    services_started = tmp_path / "services-started"
    helper_env.write(
        services={"backend": "command", "stop_command": ["true"], "start_command": ["touch", str(services_started)]}
    )
    with tmpfs(tmp_path / "small", 8 * 2**20) as mount:
        helper_env.write(storage={"path": str(mount / "storage")})
        snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
        # Rows written after the snapshot: their export, after the start, is larger than the disk.
        helper_env.db.execute(
            "INSERT INTO res_partner (name) SELECT repeat('x', 1000) || i FROM generate_series(1, 20000) i"
        )

        result = helper_env.run_json("restore", snap["id"], "--yes")

        # The restore itself succeeded: the lost changes are read after the start, and a full disk
        # there is said, not hidden; nothing is lost, the replaced database holds every row.
        assert result["ok"] is True and services_started.exists()
        assert "No space left on device" in result["lost_rows_error"]
        assert result["kept_as"] in result["lost_rows_error"]
        assert database_counts(helper_env.db.name) == {"account_move": 200, "res_partner": 50}
        assert database_counts(result["kept_as"]) == {"account_move": 200, "res_partner": 20050}
        assert not list((mount / "storage" / "restores").glob("*/lost_changes.jsonl"))
        assert [op["state"] for op in operations(mount / "storage", "restore")] == ["done"]


def test_a_full_journal_stops_the_restore_and_the_next_run_closes_it(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "small", 8 * 2**20) as mount:
        storage = mount / "storage"
        helper_env.write(storage={"path": str(storage)})
        snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
        services_started = slow_stop(helper_env, tmp_path, seconds=3)
        restore = start(helper_env, "restore", snap["id"], "--yes")
        try:
            wait_for_event(storage, "restore", "stop")
            filler = fill(mount)  # while the services stop: the next journal line finds no room
            _, err = restore.communicate(timeout=120)
        finally:
            if restore.poll() is None:
                kill_9(restore)

        assert restore.returncode == 4
        assert len(err.strip().splitlines()) == 1, err
        assert "disk is full" in err and "not touched" in err
        assert database_counts(helper_env.db.name) == {"account_move": 180, "res_partner": 57}
        assert list_databases(helper_env.db.name) == [helper_env.db.name]
        assert services_started.exists()
        # The journal could not record the end: the operation still reads running, its owner is gone.
        assert [op["state"] for op in operations(storage, "restore")] == ["running"]

        filler.unlink()
        refused = helper_env.run("restore", snap["id"], "--yes")
        assert refused.returncode == 3 and "was interrupted; run 'odoo-rollback resume'" in refused.stderr
        outcome = helper_env.run_json("resume")

        assert [o["outcome"] for o in outcome] == ["undone"]
        assert [op["state"] for op in operations(storage, "restore")] == ["failed"]
        assert database_counts(helper_env.db.name) == {"account_move": 180, "res_partner": 57}


@pytest.mark.parametrize("command", [["snapshot"], ["drill"], ["restore"], ["prune", "--keep", "1"]])
def test_a_full_storage_is_one_line_and_changes_nothing(
    helper_env: HelperEnv, tmp_path: Path, command: list[str]
) -> None:
    with tmpfs(tmp_path / "small", 4 * 2**20) as mount:
        helper_env.write(storage={"path": str(mount / "storage")})
        snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
        args = [*command, snap["id"], "--yes"] if command == ["restore"] else command
        args = [*command, snap["id"]] if command == ["drill"] else args
        fill(mount)
        time.sleep(0.1)

        result = helper_env.run(*args)

        assert result.returncode in (1, 3, 4), result.stderr
        line = one_line(result) if result.stderr.strip() else result.stdout
        assert "disk is full" in line or "No space left" in line or "not enough free disk" in line, line
        assert database_counts(helper_env.db.name) == {"account_move": 200, "res_partner": 50}
        assert list_databases(helper_env.db.name) == [helper_env.db.name]
        assert [s["id"] for s in helper_env.run_json("list")] == [snap["id"]]
        assert not list((mount / "storage" / "snapshots").glob(".partial-*"))


def test_a_deploy_filling_the_storage_changes_nothing(deploy_env: DeployEnv, tmp_path: Path) -> None:  # noqa: F811
    env = deploy_env
    add_random_megabytes(env.helper, 16)
    with tmpfs(tmp_path / "small", expected_snapshot_size(env.helper) + 2**20) as mount:
        storage = mount / "storage"
        env.helper.write(storage={"path": str(storage)})

        result = env.run("deploy", "--to", env.repo.good, "--changed", "--yes")

        assert result.returncode == 4
        assert "No space left on device" in one_line(result)
        assert_at_revision_1(env)
        assert env.stand_in.states() == {"db": "running", "odoo": "running", "nginx": "running"}
        assert env.snapshots() == []
        assert not list((storage / "snapshots").iterdir())
        assert [op["state"] for op in operations(storage, "snapshot")] == ["failed"]
        assert [op["state"] for op in operations(storage, "deploy")] == ["failed"]
