"""Restores against a real PostgreSQL: the plan, the swap, what is lost, and failures undone."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    HelperEnv,
    database_counts,
    databases_seen_by_the_services,
    list_databases,
    pg_connect,
    read_databases_seen,
    table_maintenance,
    tail_slots,
    tmpfs,
)
from odoo_rollback.config import load_config
from odoo_rollback.dump import AUTOVACUUM_WAIT, make_durable, postmaster_start_time, restore_sessions
from odoo_rollback.errors import OperationFailed
from odoo_rollback.journal import Journal
from odoo_rollback.restore import STEP_NAMES, RestoreRun, database_oid
from odoo_rollback.storage import SnapshotStore
from psycopg2 import sql

SNAPSHOT_COUNTS = {"account_move": 200, "res_partner": 50}
CHANGED_COUNTS = {"account_move": 180, "res_partner": 57}


def test_without_yes_prints_the_plan_and_changes_nothing(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    plan = helper_env.run_json("restore", snapshot_then_changes["id"])

    if plan["lost_rows_mode"] == "exact":
        # The 20 deleted moves are lost too (their deletion): timestamps never saw them.
        assert plan["lost_changes"] == {"account_move": {"deleted": 20}, "res_partner": {"inserted": 7}}
    else:  # the server was too busy for a slot: before the restore the fallback sees the 7 new rows
        assert plan["lost_changes"] == {"res_partner": {"written": 7}}
    assert plan["steps"] == list(STEP_NAMES)
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    human = helper_env.run("rollback", check=True).stdout
    assert "--yes" in human and "7" in human


def test_restore_swaps_in_the_snapshot_and_keeps_the_failed_database(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    seen = databases_seen_by_the_services(helper_env, helper_env.db.name)
    live_oid = database_oid(load_config(helper_env.config_path), helper_env.db.name)

    result = helper_env.run_json("restore", snapshot_then_changes["id"], "--yes")

    assert result["ok"] is True
    assert database_counts(helper_env.db.name) == SNAPSHOT_COUNTS
    # The downtime held no restore: when the services stopped, the database that went live was already
    # there, staged and checked beside the live one; when they started, it was live, the old one aside.
    restored_oid = database_oid(load_config(helper_env.config_path), helper_env.db.name)
    at_stop, at_start = read_databases_seen(seen["stop"]), read_databases_seen(seen["start"])
    staged = [name for name, oid in at_stop.items() if oid == restored_oid]
    assert len(staged) == 1 and "__restore_" in staged[0] and at_stop[helper_env.db.name] == live_oid
    assert at_start == {helper_env.db.name: restored_oid, result["kept_as"]: live_oid}
    # Nothing is destroyed: the replaced database is kept with the deployment's changes.
    assert result["kept_as"].startswith(f"{helper_env.db.name}__failed_")
    assert database_counts(result["kept_as"]) == CHANGED_COUNTS
    assert list_databases(helper_env.db.name) == sorted([helper_env.db.name, result["kept_as"]])
    # What was lost is counted and exported.
    assert result["lost_rows"] == {"account_move": 20, "res_partner": 7}
    assert result["lost_changes"] == {"account_move": {"deleted": 20}, "res_partner": {"inserted": 7}}
    lines = [json.loads(line) for line in Path(result["lost_rows_file"]).read_text().splitlines()]
    inserted = [line["after"]["name"] for line in lines if line["kind"] == "inserted"]
    assert sorted(inserted) == sorted(f"after {i}" for i in range(1, 8))
    assert sorted(line["key"]["id"] for line in lines if line["kind"] == "deleted") == list(range(1, 21))
    # The filestore is the snapshot's again; the deployment's one is kept beside it.
    assert not (helper_env.filestore / "ff").exists()
    kept = [p for p in helper_env.filestore.parent.iterdir() if p.name.startswith("filestore__failed_")]
    assert len(kept) == 1 and (kept[0] / "ff" / "new-attachment").exists()
    # Every step of the table ran, in its order, and the plan announced exactly those.
    assert [s["name"] for s in result["steps"]] == list(STEP_NAMES)
    assert all(s["ok"] for s in result["steps"])
    assert result["rto"]["met"] is True and result["rto"]["escalate"] is False
    # The planner has statistics before the first query; the vacuum, which grows with the database, is
    # autovacuum's once the services run.
    assert table_maintenance(helper_env.db.name, "account_move") == {"analyzed": True, "vacuumed": False}


def test_rollback_takes_the_newest_verified_pre_deploy_snapshot(helper_env: HelperEnv) -> None:
    result = helper_env.run("rollback", "--yes")
    assert result.returncode == 3 and "no verified pre_deploy snapshot" in result.stderr

    verified = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    helper_env.run_json("snapshot", "--kind", "pre_deploy")  # newer, but not verified
    helper_env.db.execute("DELETE FROM res_partner WHERE id > 40 AND id NOT IN (SELECT partner_id FROM account_move)")

    result = helper_env.run_json("rollback", "--yes")

    assert result["snapshot"] == verified["id"]
    assert database_counts(helper_env.db.name) == SNAPSHOT_COUNTS


def test_snapshot_of_another_database_is_refused(helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]) -> None:
    manifest = Path(snapshot_then_changes["path"]) / "manifest.json"
    manifest.write_text(manifest.read_text().replace(f'"database": "{helper_env.db.name}"', '"database": "other"'))

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes")

    assert result.returncode == 2 and "of database 'other'" in result.stderr
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS


def test_corrupted_dump_is_refused_before_anything_changes(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    dump_file = next((Path(snapshot_then_changes["path"]) / "db.dump").glob("*.dat.gz"))
    dump_file.write_bytes(b"garbage")

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes")

    assert result.returncode == 3 and "failed its checks" in result.stderr
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    journal = helper_env.run_json("journal")
    assert journal["operations"][0]["kind"] == "restore" and journal["operations"][0]["state"] == "failed"
    assert any(e["step"] == "preflight" and e["status"] == "failed" for e in journal["events"])


def test_services_that_will_not_stop_leave_the_live_database_alone(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    helper_env.write(services={"backend": "command", "stop_command": ["false"], "start_command": ["true"]})

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes")

    assert result.returncode != 0 and "stop command failed" in result.stderr
    assert "not touched" in result.stderr
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    assert list_databases(helper_env.db.name) == [helper_env.db.name]  # staging dropped
    assert (helper_env.filestore / "ff" / "new-attachment").exists()


def test_services_that_will_not_start_are_swapped_back(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    helper_env.write(
        services={
            "backend": "command",
            "stop_command": ["true"],
            "start_command": ["touch", str(marker), "/nonexistent/x"],
        }
    )

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes")

    assert result.returncode != 0 and "was undone" in result.stderr
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    assert (helper_env.filestore / "ff" / "new-attachment").exists()
    journal = helper_env.run_json("journal")
    assert journal["operations"][0]["state"] == "undone"
    assert any(e["step"] == "undo" and e["status"] == "done" for e in journal["events"])


def test_failed_health_check_is_swapped_back(helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]) -> None:
    helper_env.write(health={"url": "http://127.0.0.1:9/web/login", "attempts": 2, "interval": 0.1, "timeout": 1})
    exact = helper_env.run_json("restore", snapshot_then_changes["id"])["lost_rows_mode"] == "exact"

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes")

    assert result.returncode != 0 and "health check" in result.stderr
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    # The lost changes were being exported while the services started: the undo ended that export and
    # removed it (nothing is lost now), and left the snapshot's slot, so that the next restore still
    # reports, exactly, what it replaces.
    assert not [path for path in helper_env.storage.glob("restores/*/*") if path.is_file()]
    assert not tail_slots()  # the read-ahead's slot went with the undo; the snapshot's stays
    del helper_env.sections["health"]
    again = helper_env.run_json("restore", snapshot_then_changes["id"], "--yes")
    assert again["ok"] and database_counts(helper_env.db.name) == SNAPSHOT_COUNTS
    if exact:
        assert again["lost_rows_mode"] == "exact"
        assert again["lost_changes"] == {"account_move": {"deleted": 20}, "res_partner": {"inserted": 7}}


def test_a_name_that_is_not_a_plain_identifier_is_refused(helper_env: HelperEnv) -> None:
    helper_env.write(database={"name": 'prod"; DROP DATABASE postgres; --'})
    result = helper_env.run("rollback", "--yes")
    assert result.returncode == 2 and "not a plain identifier" in result.stderr


def test_unknown_snapshot_is_refused(helper_env: HelperEnv) -> None:
    result = helper_env.run("restore", "20990101T000000Z-pre_deploy-abcdef", "--yes")
    assert result.returncode == 2 and "no snapshot" in result.stderr
    assert database_counts(helper_env.db.name) == {"account_move": 200, "res_partner": 50}


def test_drill_restores_into_a_scratch_database_and_records_it(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    drill = helper_env.run_json("drill")

    assert drill["ok"] is True and drill["snapshot"] == snapshot_then_changes["id"]
    assert drill["rto_met"] is True and drill["seconds"] > 0
    assert set(drill) >= {"id", "snapshot", "started_at", "seconds", "rto_met", "ok"}
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    operations = helper_env.run_json("journal")["operations"]
    assert operations[0]["kind"] == "drill" and operations[0]["data"]["result"]["ok"] is True


def test_disk_full_mid_restore_leaves_the_live_side_untouched(helper_env: HelperEnv, tmp_path: Path) -> None:
    # A filesystem with room in bytes but few inodes: the preflight's free-space check passes, and
    # unpacking the snapshot's filestore beside the live one runs out of space half-way.
    with tmpfs(tmp_path / "small", "16m", inodes=100) as mount:
        live_filestore = mount / "filestore"
        shutil.copytree(helper_env.filestore, live_filestore)
        helper_env.write(filestore={"path": str(live_filestore)})
        snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
        helper_env.db.execute("INSERT INTO res_partner (name) VALUES ('after')")

        result = helper_env.run("restore", snap["id"], "--yes")

        assert result.returncode == 4 and "No space left on device" in result.stderr
        assert "not touched" in result.stderr
        assert database_counts(helper_env.db.name) == {"account_move": 200, "res_partner": 51}
        assert list_databases(helper_env.db.name) == [helper_env.db.name]
        assert sorted(p.name for p in mount.iterdir()) == ["filestore"]
        events = helper_env.run_json("journal")["events"]
        assert any(e["step"] == "staging" and e["status"] == "failed" for e in events)


def test_the_live_database_is_proven_to_be_the_checked_one_by_its_oid(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    result = helper_env.run_json("restore", snapshot_then_changes["id"], "--yes")

    operation = next(op for op in helper_env.run_json("journal")["operations"] if op["kind"] == "restore")
    cfg = load_config(helper_env.config_path)
    # The oid recorded when the staging database was checked is the live database's now.
    assert result["ok"] is True
    assert operation["data"]["staging_oid"] == database_oid(cfg, helper_env.db.name)
    assert database_oid(cfg, result["kept_as"]) != operation["data"]["staging_oid"]

    # Another database under the live name (here: the oid of the kept one) is refused.
    run = RestoreRun(
        cfg, SnapshotStore(cfg.storage).get(snapshot_then_changes["id"]), Journal(cfg.storage.journal_path)
    )
    run.staging_oid = database_oid(cfg, result["kept_as"])
    with pytest.raises(OperationFailed, match="is not the staging database checked before it"):
        run.verify_live()


def test_a_code_folder_with_an_untracked_file_is_not_clean_for_a_restore_either(
    helper_env: HelperEnv, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    for args in (["init", "--quiet"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"]):
        subprocess.run(["git", "-C", str(code), *args], check=True)
    (code / "addon.py").write_text("x = 1\n")
    subprocess.run(["git", "-C", str(code), "add", "."], check=True)
    subprocess.run(["git", "-C", str(code), "commit", "--quiet", "-m", "one"], check=True)
    helper_env.write(code={"path": str(code)})
    snapshot = helper_env.run_json("snapshot")
    (code / "__pycache__").mkdir()
    (code / "__pycache__" / "addon.cpython-311.pyc").write_bytes(b"cache")  # Python's own: never in the way
    (code / "notes.txt").write_text("the operator's\n")

    refused = helper_env.run("restore", snapshot["id"], "--yes")

    # One idea of "clean", the deployment's: an untracked file is the operator's work, and is kept.
    assert refused.returncode == 3 and "is not clean (notes.txt)" in refused.stderr
    assert (code / "notes.txt").exists()
    (code / "notes.txt").unlink()
    assert helper_env.run_json("restore", snapshot["id"], "--yes")["ok"] is True


def test_a_copy_restored_across_a_server_restart_is_not_trusted(helper_env: HelperEnv) -> None:
    """pg_restore commits asynchronously (thousands of commits, none waiting for a flush); the copy is
    made durable before use, unless the server restarted meanwhile and may have lost its last commits."""
    cfg = load_config(helper_env.config_path)
    started = postmaster_start_time(cfg.database)

    make_durable(cfg.database, helper_env.db.name, started)  # the same server all along: flushed, fine

    earlier = "2000-01-01 00:00:00+00"  # the start time recorded before a restart
    with pytest.raises(OperationFailed, match=r"PostgreSQL restarted while .* was being restored"):
        make_durable(cfg.database, helper_env.db.name, earlier)


SCHEMA_OBJECTS = """
    SELECT (SELECT obj_description('res_partner'::regclass, 'pg_class')),
           (SELECT count(*) FROM partner_names),
           (SELECT tgname FROM pg_trigger WHERE tgname = 'partner_touch'),
           (SELECT indexname FROM pg_indexes WHERE indexname = 'partner_email_idx'),
           (SELECT conname FROM pg_constraint WHERE conname = 'move_amount_positive'),
           has_table_privilege('public', 'res_partner', 'SELECT'),
           (SELECT last_value FROM rbtest_sequence)
"""


def test_a_restore_brings_back_every_kind_of_object_the_dump_holds(helper_env: HelperEnv) -> None:
    """pg_restore runs twice, the schema and then the data and what follows it (indexes, triggers,
    constraints): every item of the dump, including those that belong to no section of their own
    (comments, grants), is in one of the two."""
    helper_env.db.execute(
        """
        COMMENT ON TABLE res_partner IS 'Contacts';
        CREATE VIEW partner_names AS SELECT name FROM res_partner;
        CREATE FUNCTION rbtest_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
        CREATE TRIGGER partner_touch BEFORE UPDATE ON res_partner FOR EACH ROW EXECUTE FUNCTION rbtest_touch();
        CREATE INDEX partner_email_idx ON res_partner (email);
        ALTER TABLE account_move ADD CONSTRAINT move_amount_positive CHECK (amount_total >= 0) NOT VALID;
        GRANT SELECT ON res_partner TO PUBLIC;
        CREATE SEQUENCE rbtest_sequence;
        SELECT setval('rbtest_sequence', 41);
        """
    )
    before = helper_env.db.execute(SCHEMA_OBJECTS)
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    helper_env.db.execute(
        "DROP VIEW partner_names; DROP TRIGGER partner_touch ON res_partner; DROP INDEX partner_email_idx;"
        " ALTER TABLE account_move DROP CONSTRAINT move_amount_positive; REVOKE SELECT ON res_partner FROM PUBLIC;"
        " COMMENT ON TABLE res_partner IS NULL; SELECT setval('rbtest_sequence', 99)"
    )

    assert helper_env.run_json("restore", snap["id"], "--yes")["ok"]

    assert helper_env.db.execute(SCHEMA_OBJECTS) == before
    assert before == [("Contacts", 50, "partner_touch", "partner_email_idx", "move_amount_positive", True, 41)]


def session_settings(env: dict[str, str]) -> tuple[str, str]:
    """deadlock_timeout and synchronous_commit as the server gives them to a session opened with *env*."""
    out = subprocess.run(
        ["psql", "-XAtc", "SELECT current_setting('deadlock_timeout'), current_setting('synchronous_commit')"],
        env={**os.environ, **env, "PGDATABASE": "postgres"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    deadlock_timeout, synchronous_commit = out.strip().split("|")
    return deadlock_timeout, synchronous_commit


def test_the_restore_sessions_yield_to_autovacuum_when_the_role_may_ask_for_it(helper_env: HelperEnv) -> None:
    """pg_restore's and vacuumdb's sessions commit asynchronously and cancel an autovacuum in their way
    after 20 ms, not 1 s; a role that may not set deadlock_timeout still restores (asking for it would
    refuse the connection)."""
    database = load_config(helper_env.config_path).database
    role = f"rbtest_plain_{uuid.uuid4().hex[:8]}"
    plain = dataclasses.replace(database, user=role, password="plain")
    conn = pg_connect()
    try:
        assert session_settings(restore_sessions(database)) == (AUTOVACUUM_WAIT, "off")

        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'plain' NOSUPERUSER").format(sql.Identifier(role)))
        assert session_settings(restore_sessions(plain)) == ("1s", "off")

        if conn.server_version >= 150000:  # granted the parameter alone, it may
            with conn.cursor() as cur:
                cur.execute(sql.SQL("GRANT SET ON PARAMETER deadlock_timeout TO {}").format(sql.Identifier(role)))
            assert session_settings(restore_sessions(plain)) == (AUTOVACUUM_WAIT, "off")
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
            if cur.fetchone() and conn.server_version >= 150000:
                cur.execute(sql.SQL("REVOKE SET ON PARAMETER deadlock_timeout FROM {}").format(sql.Identifier(role)))
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.close()


# The cluster the tests run on, as pg_ctlcluster names it ("15/main"): set by .ci/run, whose cluster it
# is. A restart ends every session on the server, so it is never done on a cluster shared with others.
RESTARTABLE_CLUSTER = os.environ.get("ROLLBACK_TEST_RESTARTABLE_CLUSTER", "")


@pytest.mark.skipif(
    not (RESTARTABLE_CLUSTER and shutil.which("pg_ctlcluster")),
    reason="set ROLLBACK_TEST_RESTARTABLE_CLUSTER=VERSION/NAME to let a test restart PostgreSQL",
)
def test_a_real_server_restart_between_the_restore_and_its_flush_refuses_the_copy(helper_env: HelperEnv) -> None:
    cfg = load_config(helper_env.config_path)
    started = postmaster_start_time(cfg.database)
    version, name = RESTARTABLE_CLUSTER.split("/")

    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", "fast"],
        check=True,
        capture_output=True,
    )

    with pytest.raises(OperationFailed, match=r"PostgreSQL restarted while .* was being restored"):
        make_durable(cfg.database, helper_env.db.name, started)
    make_durable(cfg.database, helper_env.db.name, postmaster_start_time(cfg.database))  # after it: fine
