"""Features built apart, run together: the warm standby with a helper role that is not a superuser,
with the fallback capture, after a guarded deploy and through the API.

What a user notices of a rollback with a ready standby: the database that went live is the standby
that was proven (its oid), it holds the snapshot's rows, it is open to Odoo's role, and nothing was
restored while the services were stopped (no staging, no refusal in the journal).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import test_deploy
import test_standby
from conftest import (
    PG,
    HelperEnv,
    Served,
    as_superuser,
    autovacuum_working_in,
    database_counts,
    databases_seen_by_the_services,
    list_databases,
    pg_connect,
    read_databases_seen,
)
from odoo_rollback.config import load_config
from odoo_rollback.dump import drop_database
from odoo_rollback.errors import EXIT_REFUSED
from psycopg2 import sql
from test_crash import restore_killed_at
from test_deploy import EXIT_ROLLED_BACK, DeployEnv, assert_at_revision_1
from test_standby import (
    database_oid,
    database_row,
    deployment_writes,
    files_of,
    standby_then_deployment,
    wait_ready,
)

# The fixtures these combinations share with the features' own tests.
odoo_filestore = test_standby.odoo_filestore
addon_repo, template_db, stand_in = test_deploy.addon_repo, test_deploy.template_db, test_deploy.stand_in
deploy_env = test_deploy.deploy_env


def restored_during_the_downtime(env: HelperEnv) -> list[str]:
    """The journal lines of the last restore, between its stop and its start, that restored anything."""
    journal = env.run_json("journal", "--limit", "100000")
    operation = next(o for o in journal["operations"] if o["kind"] == "restore")["id"]
    events = [e for e in journal["events"] if e["operation_id"] == operation]
    names = [(e["step"], e["status"]) for e in events]
    stop, start = names.index(("stop", "start")), names.index(("start", "start"))
    return [
        f"{e['step']}:{e['status']} {e['message']}"
        for e in events[stop:start]
        if (e["step"] in ("staging", "check") and e["status"] != "skipped") or "refused" in e["message"]
    ]


def assert_the_standby_went_live(env: HelperEnv, result: dict[str, Any], standby_oid: int, before: dict[str, int]):
    assert result["ok"], result.get("error")
    assert database_oid(env.db.name) == standby_oid
    assert database_counts(env.db.name) == before
    assert restored_during_the_downtime(env) == []


# -- a helper role that is not a superuser ------------------------------------------------------------
@pytest.fixture
def operator_roles(odoo_filestore: HelperEnv) -> Iterator[tuple[HelperEnv, str]]:
    """As an operator without a superuser to spare sets it up: Odoo's database owned by Odoo's role,
    and the helper's own role, NOSUPERUSER with CREATEDB and REPLICATION, a member of Odoo's role."""
    env = odoo_filestore
    suffix = uuid.uuid4().hex[:8]
    odoo_role, helper_role = f"rbtest_odoo_{suffix}", f"rbtest_helper_{suffix}"
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'odoo'").format(sql.Identifier(odoo_role)))
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'helper' NOSUPERUSER CREATEDB REPLICATION").format(
                    sql.Identifier(helper_role)
                )
            )
            cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(odoo_role), sql.Identifier(helper_role)))
            cur.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(env.db.name), sql.Identifier(odoo_role))
            )
            cur.execute("SHOW data_directory")  # hidden from the helper's role: the operator configures it
            data_directory = cur.fetchone()[0]
        env.db.execute(
            sql.SQL(
                "ALTER TABLE ir_module_module OWNER TO {0}; ALTER TABLE res_partner OWNER TO {0};"
                " ALTER TABLE account_move OWNER TO {0}"
            ).format(sql.Identifier(odoo_role))
        )
        env.write(
            database={"user": helper_role, "password": "helper"},
            standby={"data_directory": data_directory},
            capture={"slot_wait_seconds": 600},  # the tests' server is shared: a slot waits for all of it
        )
        yield env, odoo_role
    finally:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE database LIKE %s AND NOT active",
                (env.db.name + "%",),
            )
        for leftover in list_databases(env.db.name):
            with conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (leftover,))
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(leftover)))
        with conn.cursor() as cur:
            for role in (helper_role, odoo_role):
                cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.close()
        env.write(database={"user": PG["user"], "password": PG["password"]})


def test_a_helper_that_is_not_a_superuser_swaps_the_standby_in(operator_roles: tuple[HelperEnv, str]) -> None:
    env, odoo_role = operator_roles
    before = database_counts(env.db.name)
    live_files = files_of(env.filestore)
    _snap, standby = standby_then_deployment(env)
    standby_oid = database_oid(standby["database"])

    result = env.run_json("rollback", "--yes")

    assert_the_standby_went_live(env, result, standby_oid, before)
    assert files_of(env.filestore) == live_files
    assert database_row(env.db.name)[:2] == (True, odoo_role)
    assert not [n for n in list_databases(env.db.name) if "__standby_" in n]
    # The replaced database was read, its slot too (REPLICATION): the 7 partners are in the export.
    assert "lost_rows_error" not in result and result["lost_rows_mode"] == "exact"
    assert result["lost_changes"] == {"res_partner": {"inserted": 7}}


def test_a_helper_that_is_not_a_superuser_stages_when_the_standby_changed_during_the_stop(
    operator_roles: tuple[HelperEnv, str],
) -> None:
    env, odoo_role = operator_roles
    before = database_counts(env.db.name)
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--standby")
    standby = wait_ready(env, snap["id"])
    standby_oid = database_oid(standby["database"])
    victim = next(p for p in Path(standby["filestore"]).rglob("*") if p.is_file() and p.stat().st_nlink == 1)
    env.write(
        services={
            "backend": "command",
            "stop_command": ["sh", "-c", f"echo tampered >> {victim}"],
            "start_command": ["true"],
        }
    )
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")

    result = env.run("rollback", "--yes", "--json")

    assert result.returncode == 0, result.stderr
    assert database_counts(env.db.name) == before
    assert files_of(env.filestore) == live_files  # the snapshot's bytes, staged after all
    assert database_oid(env.db.name) != standby_oid
    assert database_row(env.db.name)[:2] == (True, odoo_role)


# -- the fallback capture --------------------------------------------------------------------------------
@pytest.mark.parametrize("standby", [True, False], ids=["with_standby", "staged"])
def test_the_fallback_reports_the_same_lost_changes_with_a_standby_as_without(
    odoo_filestore: HelperEnv, standby: bool
) -> None:
    """The fallback tells inserts, updates and deletions apart by the snapshot's keys; a rollback with
    a standby must report what one that stages reports."""
    env = odoo_filestore
    env.write(capture={"mode": "fallback"})
    before = database_counts(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", *(["--standby"] if standby else ["--verify"]))
    standby_oid = database_oid(wait_ready(env, snap["id"])["database"]) if standby else None
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    env.db.execute("UPDATE res_partner SET email = 'changed@example.com' WHERE id <= 2")
    env.db.execute("DELETE FROM account_move WHERE id <= 20")

    result = env.run_json("rollback", "--yes")

    if standby_oid is not None:
        assert_the_standby_went_live(env, result, standby_oid, before)
    assert database_counts(env.db.name) == before
    assert result["lost_rows_mode"] == "fallback" and "lost_rows_error" not in result
    assert result["lost_changes"]["res_partner"] == {"inserted": 7, "updated": 2}
    assert result["lost_changes"]["account_move"] == {"deleted": 20}


# -- a guarded deploy, then a rollback ---------------------------------------------------------------------
def test_a_rollback_after_a_good_deploy_swaps_in_the_standby_the_deploy_built(deploy_env: DeployEnv) -> None:
    env = deploy_env
    env.helper.write(standby={"enabled": True})
    status, doc = env.deploy_json("--to", env.repo.good, "--changed", "--yes")
    assert status == 0 and doc["outcome"] == "deployed", doc
    standby = wait_ready(env.helper, doc["snapshot"], timeout=300)
    standby_oid = database_oid(standby["database"])
    env.query("UPDATE rb_deploy_probe SET code = 'TWO' RETURNING id")

    result = env.helper.run_json("rollback", "--yes", timeout=900)

    assert result["ok"], result.get("error")
    assert database_oid(env.db) == standby_oid
    assert restored_during_the_downtime(env.helper) == []
    assert_at_revision_1(env)
    assert database_row(env.db)[:2] == (True, "rollback_odoo")  # Odoo's role can open its database again
    assert env.stand_in.states() == {"db": "running", "odoo": "running", "nginx": "running"}
    assert result["lost_changes"]["rb_deploy_probe"]


def test_a_broken_deploy_rolls_back_while_its_standby_is_built(deploy_env: DeployEnv) -> None:
    env = deploy_env
    env.helper.write(standby={"enabled": True})

    status, doc = env.deploy_json("--to", env.repo.broken, "--changed", "--yes")

    assert status == EXIT_ROLLED_BACK, doc
    assert_at_revision_1(env)
    assert database_row(env.db)[:2] == (True, "rollback_odoo")
    assert env.stand_in.states() == {"db": "running", "odoo": "running", "nginx": "running"}
    # The rollback took the standby if it was ready, else stopped its build and staged: either way no
    # half-built standby is left behind, and a standby that went live was the proven one.
    assert not [n for n in list_databases(env.db) if "__standby_" in n]
    assert not [p for p in env.helper.filestore.parent.iterdir() if "__standby_" in p.name]


# -- through the API ---------------------------------------------------------------------------------------
def test_a_rollback_through_the_api_swaps_in_the_standby_the_api_asked_for(
    odoo_filestore: HelperEnv, served: Served
) -> None:
    env = odoo_filestore
    before = database_counts(env.db.name)
    live_files = files_of(env.filestore)
    status, reply = served.client.request("POST", "/v1/snapshots", {"kind": "pre_deploy", "standby": True})
    assert status == 202
    snapshot = served.wait_job(reply["job"]["id"])
    assert snapshot["state"] == "done", snapshot
    snap_id = snapshot["result"]["id"]
    standby_oid = database_oid(wait_ready(env, snap_id)["database"])
    deployment_writes(env)

    status, reply = served.client.request(
        "POST",
        "/v1/restores",
        {"snapshot": snap_id, "confirm_database": env.db.name, "rollback": {"reason": "bad deploy"}},
    )
    assert status == 202, reply
    job = served.wait_job(reply["job"]["id"], timeout=300)

    assert job["state"] == "done", job
    assert_the_standby_went_live(env, job["result"], standby_oid, before)
    assert files_of(env.filestore) == live_files
    assert database_row(env.db.name)[:2] == (True, "rollback_helper")
    # What Odoo reads back to re-create its rollback record tells the truth about the swap.
    restore_op = next(o for o in env.run_json("journal")["operations"] if o["kind"] == "restore")
    assert restore_op["data"]["standby_used"] and restore_op["data"]["rollback"] == {"reason": "bad deploy"}


@pytest.mark.parametrize(
    ("kill_at", "swapped"),
    [("stop:done", False), ("standby_recheck:done", False), ("swap_database:done", True), ("verify_live:done", True)],
)
def test_a_helper_that_is_not_a_superuser_resumes_a_rollback_with_a_standby(
    operator_roles: tuple[HelperEnv, str], kill_at: str, swapped: bool
) -> None:
    env, odoo_role = operator_roles
    snapshot_counts = database_counts(env.db.name)
    live_oid = database_oid(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby_oid = database_oid(env.run_json("standby", "build", snap["id"])["database"])
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    changed_counts = database_counts(env.db.name)
    restore_killed_at(env, snap["id"], kill_at)

    outcome = env.run_json("resume")

    assert [o["outcome"] for o in outcome] == ["finished" if swapped else "undone"], outcome
    assert database_oid(env.db.name) == (standby_oid if swapped else live_oid)
    assert database_row(env.db.name)[:2] == (True, odoo_role)
    assert database_counts(env.db.name) == (snapshot_counts if swapped else changed_counts)
    assert not [n for n in list_databases(env.db.name) if "__standby_" in n or "__restore_" in n]


def test_a_helper_that_is_not_a_superuser_undoes_a_standby_swap_whose_health_check_fails(
    operator_roles: tuple[HelperEnv, str],
) -> None:
    env, odoo_role = operator_roles
    live_oid = database_oid(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--standby")
    wait_ready(env, snap["id"])
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    changed_counts, changed_files = database_counts(env.db.name), files_of(env.filestore)
    env.write(health={"url": "http://127.0.0.1:9/web/login", "attempts": 2, "interval": 0.1, "timeout": 1})

    result = env.run("rollback", "--yes", "--json")

    assert result.returncode != 0 and "health check" in result.stderr + result.stdout
    # The deployment's database is live again, as it was, open to Odoo's role; nothing is lost.
    assert database_oid(env.db.name) == live_oid
    assert database_row(env.db.name)[:2] == (True, odoo_role)
    assert database_counts(env.db.name) == changed_counts
    assert files_of(env.filestore) == changed_files
    assert env.run_json("resume") == []


def test_a_helper_that_is_not_a_superuser_drills_and_deep_verifies(operator_roles: tuple[HelperEnv, str]) -> None:
    env, _odoo_role = operator_roles
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")

    drill = env.run("drill", snap["id"], "--json")
    deep = env.run("verify", snap["id"], "--deep", "--json")

    assert drill.returncode == 0, drill.stdout + drill.stderr
    assert deep.returncode == 0, deep.stdout + deep.stderr
    assert list_databases(env.db.name) == [env.db.name]  # their scratch copies are gone


def test_a_helper_that_is_not_a_superuser_restores_without_a_standby(operator_roles: tuple[HelperEnv, str]) -> None:
    env, odoo_role = operator_roles
    env.write(standby={"enabled": False})
    before = database_counts(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    seen = databases_seen_by_the_services(env, env.db.name)

    result = env.run_json("restore", snap["id"], "--yes")

    assert result["ok"] and database_counts(env.db.name) == before
    assert database_row(env.db.name)[:2] == (True, odoo_role)
    staged = [name for name, oid in read_databases_seen(seen["stop"]).items() if oid == database_oid(env.db.name)]
    assert len(staged) == 1 and "__restore_" in staged[0]  # staged while the services ran
    assert result["lost_rows_mode"] == "exact" and result["lost_changes"] == {"res_partner": {"inserted": 7}}


# -- sessions the helper's role may not end -----------------------------------------------------------
def alive(conn: Any) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    except Exception:
        return False


@pytest.mark.parametrize("standby", [True, False], ids=["with_standby", "staged"])
def test_a_helper_that_is_not_a_superuser_rolls_back_while_autovacuum_works_on_the_live_database(
    operator_roles: tuple[HelperEnv, str], standby: bool
) -> None:
    """An autovacuum worker has no role: PostgreSQL 15 lets only a superuser end it, and ends it
    itself for the rename. Ending the live database's sessions at the stop must pass it by."""
    env, odoo_role = operator_roles
    env.write(standby={"enabled": standby})
    before = database_counts(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--standby" if standby else "--verify")
    if standby:
        wait_ready(env, snap["id"])
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")

    with autovacuum_working_in(env.db.name):
        result = env.run_json("rollback", "--yes")

    assert result["ok"], result.get("error")
    assert database_counts(env.db.name) == before
    assert database_row(env.db.name)[:2] == (True, odoo_role)
    assert result["lost_changes"]["res_partner"] == {"inserted": 7}


def test_a_helper_that_is_not_a_superuser_drops_a_database_autovacuum_works_on(
    operator_roles: tuple[HelperEnv, str],
) -> None:
    """The drop that discards staging, a standby, a drill's copy or a kept database, as in a resume
    whose staging autovacuum had reached."""
    env, odoo_role = operator_roles
    scratch = f"{env.db.name}__restore_autovacuum"
    as_superuser(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(scratch), sql.Identifier(odoo_role)))

    with autovacuum_working_in(scratch):
        drop_database(load_config(env.config_path).database, scratch)

    assert scratch not in list_databases(env.db.name)


@pytest.fixture
def reporting_role() -> Iterator[dict[str, str]]:
    """A role of its own for a reporting tool, of which the helper's role is not a member."""
    role = f"rbtest_report_{uuid.uuid4().hex[:8]}"
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'report'").format(sql.Identifier(role)))
        yield {"user": role, "password": "report"}
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.close()


def open_session(dbname: str, login: dict[str, str] | None) -> tuple[Any, int]:
    """A session left open on *dbname* as *login* (default: the tests' superuser), named like psql's."""
    conn = psycopg2.connect(dbname=dbname, **{**PG, **(login or {})}, application_name="psql")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return conn, cur.fetchone()[0]


@pytest.mark.parametrize("whose", ["superuser", "another_role"])
def test_a_session_the_helper_may_not_end_refuses_the_rollback_before_the_stop(
    operator_roles: tuple[HelperEnv, str], reporting_role: dict[str, str], whose: str
) -> None:
    env, _odoo_role = operator_roles
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--standby")
    wait_ready(env, snap["id"])
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    live_oid, changed = database_oid(env.db.name), database_counts(env.db.name)
    login = reporting_role if whose == "another_role" else None
    session, pid = open_session(env.db.name, login)
    try:
        result = env.run("rollback", "--yes", "--json")

        assert result.returncode == EXIT_REFUSED, result.stdout + result.stderr
        assert f"{pid} ({(login or PG)['user']}, psql)" in result.stderr, result.stderr
        # Refused before anything changed: the services were not stopped, the session is alive.
        journal = env.run_json("journal", "--limit", "100000")
        operation = next(o for o in journal["operations"] if o["kind"] == "restore")["id"]
        steps = {e["step"] for e in journal["events"] if e["operation_id"] == operation}
        assert "stop" not in steps and "swap_database" not in steps, steps
        assert alive(session)
        assert database_oid(env.db.name) == live_oid and database_counts(env.db.name) == changed
    finally:
        session.close()

    # Once it is closed, the same rollback goes through.
    assert env.run_json("rollback", "--yes")["ok"]


def test_a_helper_granted_pg_signal_backend_ends_another_roles_session_and_rolls_back(
    operator_roles: tuple[HelperEnv, str], reporting_role: dict[str, str]
) -> None:
    env, _odoo_role = operator_roles
    helper_role = load_config(env.config_path).database.user
    as_superuser(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(helper_role)))
    before = database_counts(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--standby")
    wait_ready(env, snap["id"])
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    session, _pid = open_session(env.db.name, reporting_role)
    try:
        result = env.run_json("rollback", "--yes")

        assert result["ok"], result.get("error")
        assert database_counts(env.db.name) == before
        assert not alive(session)  # ended at the stop, as an Odoo worker's is
    finally:
        session.close()


# -- a role that lacks a grant --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lacks", "command", "fix"),
    [
        ("createdb", ("rollback", "--yes"), 'ALTER ROLE "{helper}" CREATEDB'),
        ("createdb", ("standby", "build", "{snapshot}"), 'ALTER ROLE "{helper}" CREATEDB'),
        ("membership", ("rollback", "--yes"), 'GRANT "{odoo}" TO "{helper}"'),
        ("membership", ("snapshot", "--kind", "manual"), 'GRANT "{odoo}" TO "{helper}"'),
    ],
    ids=["createdb-rollback", "createdb-standby", "membership-rollback", "membership-snapshot"],
)
def test_a_helper_role_that_lacks_a_grant_is_refused_before_anything_changes_with_the_grant_to_give(
    operator_roles: tuple[HelperEnv, str], lacks: str, command: tuple[str, ...], fix: str
) -> None:
    env, odoo_role = operator_roles
    helper_role = load_config(env.config_path).database.user
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    live_oid, changed, databases = database_oid(env.db.name), database_counts(env.db.name), list_databases(env.db.name)
    snapshots = [s["id"] for s in env.run_json("list")]
    assert role_check(env) == (True, "may read the database and make its copies")  # granted as documented
    revoke = "ALTER ROLE {helper} NOCREATEDB" if lacks == "createdb" else "REVOKE {odoo} FROM {helper}"
    as_superuser(sql.SQL(revoke).format(helper=sql.Identifier(helper_role), odoo=sql.Identifier(odoo_role)))

    result = env.run(*(arg.format(snapshot=snap["id"]) for arg in command), "--json")

    expected = fix.format(helper=helper_role, odoo=odoo_role)
    assert result.returncode == EXIT_REFUSED, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert database_oid(env.db.name) == live_oid and database_counts(env.db.name) == changed
    assert list_databases(env.db.name) == databases
    assert [s["id"] for s in env.run_json("list")] == snapshots
    ok, detail = role_check(env)
    assert not ok and expected in detail


def role_check(env: HelperEnv) -> tuple[bool, str]:
    """``health``'s check of the helper's database role."""
    health = env.run("health", "--json")  # exit 1 when unhealthy
    role = next(c for c in json.loads(health.stdout)["checks"] if c["name"] == "database role")
    return role["ok"], role["detail"]
