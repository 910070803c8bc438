"""The warm standby, on a real PostgreSQL server, real files and the real command line.

What a user notices: a rollback to a snapshot with a ready standby skips staging and gives back
exactly the snapshot; a standby that anything touched after it was built is never used; standbys do
not pile up; one that would not fit is refused before anything is made.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
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
)
from odoo_rollback.journal import Event, Journal
from psycopg2 import sql
from test_crash import CRASH_RUNNER, kill_points, restore_killed_at


def attachment(root: Path, content: bytes) -> Path:
    """A file where Odoo puts it: named by the SHA-1 of its content, in a two-character bucket."""
    sha1 = hashlib.sha1(content).hexdigest()
    path = root / sha1[:2] / sha1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def odoo_filestore(helper_env: HelperEnv) -> HelperEnv:
    """Beside the fixture's odd names, attachments named as Odoo names them; standbys on."""
    helper_env.write(standby={"enabled": True})
    for i in range(20):
        attachment(helper_env.filestore, os.urandom(500 + i * 100))
    return helper_env


def standby_of(env: HelperEnv, snapshot_id: str) -> dict[str, Any] | None:
    rows = env.run_json("list")
    return next(row for row in rows if row["id"] == snapshot_id)["standby"]


def wait_ready(env: HelperEnv, snapshot_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        standby = standby_of(env, snapshot_id)
        if standby and standby["state"] != "building":
            assert standby["state"] == "ready", standby
            return standby
        time.sleep(0.3)
    raise AssertionError(f"the standby of {snapshot_id} was not ready within {timeout} s")


def deployment_writes(env: HelperEnv) -> None:
    """What a deployment writes after its snapshot: 7 partners and an attachment."""
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    attachment(env.filestore, b"written after the snapshot")


def standby_then_deployment(env: HelperEnv) -> tuple[dict[str, Any], dict[str, Any]]:
    """A pre_deploy snapshot whose standby is ready, then a deployment's writes: (snapshot, standby)."""
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--standby")
    standby = wait_ready(env, snap["id"])
    deployment_writes(env)
    return snap, standby


def database_row(name: str) -> tuple[Any, ...] | None:
    """Whether *name* takes connections, and its owner; then its oid."""
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT datallowconn, pg_get_userbyid(datdba), oid FROM pg_database WHERE datname = %s", (name,)
            )
            return cur.fetchone()
    finally:
        conn.close()


def database_oid(name: str) -> int | None:
    row = database_row(name)
    return row[2] if row else None


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_snapshot_with_standby_builds_a_closed_copy_in_the_background(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--standby")
    assert snap["verify"]["ok"] and snap["standby_build_pid"]
    standby = wait_ready(env, snap["id"])

    # A copy of the snapshot under the helper's name, closed to connections, owned by the helper's role
    # until it is used (Odoo lists only its own databases).
    assert standby["database"].startswith(f"{env.db.name}__standby_")
    assert database_row(standby["database"])[:2] == (False, "rollback_helper")
    # The attachments are the live ones' inodes: no copy, no space; the others are copies.
    assert standby["linked"] == 20 and standby["copied"] == 30 and standby["files"] == 50
    standby_fs = Path(standby["filestore"])
    assert standby_fs.parent == env.filestore.parent
    assert files_of(standby_fs) == live_files
    linked = [p for p in standby_fs.rglob("*") if p.is_file() and p.stat().st_nlink == 2]
    assert len(linked) == 20
    journal = env.run_json("journal")
    assert any(
        o["kind"] == "standby" and o["state"] == "done" and o["data"]["snapshot"] == snap["id"]
        for o in journal["operations"]
    )


def test_rollback_with_a_ready_standby_is_a_swap(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    before = database_counts(env.db.name)
    live_files = files_of(env.filestore)
    snap, standby = standby_then_deployment(env)
    standby_oid = database_oid(standby["database"])
    seen = databases_seen_by_the_services(env, env.db.name)

    result = env.run_json("rollback", "--yes")

    steps = {s["name"]: s for s in result["steps"]}
    assert steps["staging"].get("skipped") and steps["check"].get("skipped")
    assert database_counts(env.db.name) == before
    assert files_of(env.filestore) == live_files
    # It is the standby itself that went live (a rename keeps the oid): no proof failed on the way,
    # not even the last one with the services stopped, so nothing was restored during the downtime.
    assert database_oid(env.db.name) == standby_oid
    events = env.run_json("journal", "--limit", "100000")["events"]  # all: an absence proves nothing in a page
    assert not any("refused" in e["message"] for e in events)
    # As the services saw it: the standby, and no staging copy, at the stop; the standby live at the start.
    at_stop, at_start = read_databases_seen(seen["stop"]), read_databases_seen(seen["start"])
    assert at_stop[standby["database"]] == standby_oid and not [n for n in at_stop if "__restore_" in n]
    assert at_start[env.db.name] == standby_oid
    # Given to the live database's owner, and opened by the start.
    assert database_row(env.db.name)[:2] == (True, "rollback_helper")
    assert standby["database"] not in list_databases(env.db.name)
    assert standby_of(env, snap["id"]) is None  # used: a later rollback restores from the snapshot
    # Built while nobody waited, it was vacuumed too: its first reads need not set hint bits.
    assert table_maintenance(env.db.name, "account_move") == {"analyzed": True, "vacuumed": True}


def test_a_standby_written_into_is_refused_and_the_restore_stages(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    before = database_counts(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby = env.run_json("standby", "build", snap["id"])
    name = standby["database"]
    # Someone opens it, writes, and closes it again as it was.
    conn = pg_connect()
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
    other = pg_connect(name)
    with other.cursor() as cur:
        cur.execute("INSERT INTO res_partner (name) VALUES ('sneaked in')")
    other.close()
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
    conn.close()

    result = env.run_json("rollback", "--yes")

    steps = {s["name"]: s for s in result["steps"]}
    assert not steps["staging"].get("skipped")
    assert database_counts(env.db.name) == before  # the snapshot's rows, not the sneaked-in one
    events = env.run_json("journal")["events"]
    assert any("changed or opened after it was built" in e["message"] for e in events)
    assert name not in list_databases(env.db.name)


def test_a_standby_whose_filestore_changed_is_refused(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby = env.run_json("standby", "build", snap["id"])
    victim = next(p for p in Path(standby["filestore"]).rglob("*") if p.is_file() and p.stat().st_nlink == 1)
    original = victim.read_bytes()
    victim.write_bytes(b"x" * len(original))  # same size, other bytes

    result = env.run_json("rollback", "--yes")

    assert not {s["name"]: s for s in result["steps"]}["staging"].get("skipped")
    assert (env.filestore / victim.relative_to(standby["filestore"])).read_bytes() == original
    events = env.run_json("journal")["events"]
    assert any("standby filestore was changed" in e["message"] for e in events)


def test_a_newer_standby_supersedes_the_older_and_prune_drops_it(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    first = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    first_standby = env.run_json("standby", "build", first["id"])
    time.sleep(1.1)  # snapshot ids and standby names are by the second
    second = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    second_standby = env.run_json("standby", "build", second["id"])

    assert standby_of(env, first["id"]) is None
    assert first_standby["database"] not in list_databases(env.db.name)
    assert not Path(first_standby["filestore"]).exists()
    assert database_row(second_standby["database"]) is not None
    # Each standby's read-ahead (its second slot and file) goes with it: only the newer one's is left.
    read_aheads = list(env.storage.glob("standby/*.ahead.jsonl"))
    assert len(tail_slots()) == len(read_aheads) <= 1
    assert all(second["id"] in path.name for path in read_aheads)

    time.sleep(1.1)
    env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    env.run_json("prune", "--keep", "1")
    assert second_standby["database"] not in list_databases(env.db.name)
    assert not Path(second_standby["filestore"]).exists()
    assert not tail_slots() and not list(env.storage.glob("standby/*.ahead.jsonl"))


def test_a_standby_that_would_not_fit_is_refused_and_health_says_so(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    env.write(storage={"free_space_margin": 1e9})  # no disk holds a billion databases

    refused = env.run("standby", "build", snap["id"])

    assert refused.returncode == 3, refused.stderr
    assert "too little free disk" in refused.stderr
    assert not [n for n in list_databases(env.db.name) if "__standby_" in n]
    assert standby_of(env, snap["id"]) is None
    health = env.run("health", "--json")
    rows = {c["name"]: c for c in json.loads(health.stdout)["checks"]}
    assert not rows["storage (standby)"]["ok"]


def test_a_standby_changed_during_the_stop_is_refused_at_the_last_check(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    before = database_counts(env.db.name)
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby = env.run_json("standby", "build", snap["id"])
    victim = next(p for p in Path(standby["filestore"]).rglob("*") if p.is_file() and p.stat().st_nlink == 1)
    # Proven before the stop; changed by the time the services are stopped (here: by the stop itself).
    env.write(
        services={
            "backend": "command",
            "stop_command": ["sh", "-c", f"echo tampered >> {victim}"],
            "start_command": ["true"],
        }
    )

    result = env.run_json("rollback", "--yes")

    steps = {s["name"]: s for s in result["steps"]}
    assert steps["staging"].get("skipped") and steps["standby_recheck"]["ok"]
    assert database_counts(env.db.name) == before
    assert files_of(env.filestore) == live_files  # the snapshot's bytes, staged after all
    journal = env.run_json("journal")
    assert any("refused at the last check" in e["message"] for e in journal["events"])
    # It is gone, and the journal says so (Odoo shows a snapshot's standby from the journal alone).
    assert not [n for n in list_databases(env.db.name) if "__standby_" in n] and standby_of(env, snap["id"]) is None
    restore_op = next(o for o in journal["operations"] if o["kind"] == "restore")
    assert restore_op["data"]["standby_taken"] == standby["database"] and restore_op["data"]["standby_used"] is None


def test_a_build_still_running_is_stopped_by_a_restore_which_stages(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    before = database_counts(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    # Frozen as its pg_restore is about to start, whatever the machine's speed.
    command = ["--config", str(env.config_path), "standby", "build", snap["id"]]
    build = subprocess.Popen(
        [sys.executable, str(CRASH_RUNNER), "stop@restore:start", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: build_at_restore(env), "the build did not reach its restore")
    rollback = subprocess.Popen(
        [sys.executable, "-m", "odoo_rollback.cli", "--config", str(env.config_path), "rollback", "--yes", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The restore has sent the build its SIGTERM (pending while it is stopped) and waits for it to go.
    wait_for(lambda: journal_message(env, "was stopped: the restore stages"), "the restore did not stop the build")
    build.send_signal(signal.SIGCONT)
    out, err = rollback.communicate(timeout=300)
    assert rollback.returncode == 0, err
    build.communicate(timeout=60)

    assert build.returncode != 0  # stopped, not finished
    result = json.loads(out)
    assert not {s["name"]: s for s in result["steps"]}["staging"].get("skipped")
    assert database_counts(env.db.name) == before
    assert not [n for n in list_databases(env.db.name) if "__standby_" in n]
    assert standby_of(env, snap["id"]) is None


def wait_for(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def journal_events(env: HelperEnv) -> list[Event]:
    return Journal(env.storage / "journal.sqlite3").events(limit=100_000)


def build_at_restore(env: HelperEnv) -> bool:
    """The standby build has journaled the start of its pg_restore."""
    kinds = {op.id: op.kind for op in Journal(env.storage / "journal.sqlite3").operations(limit=1000)}
    return any(
        kinds.get(e.operation_id) == "standby" and (e.step, e.status) == ("restore", "start")
        for e in journal_events(env)
    )


def standby_between_writes(env: HelperEnv) -> None:
    """A snapshot with a slot, 3 partners written, its standby built, then 4 partners more."""
    env.write(capture={"slot_wait_seconds": 600})
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    if env.run_json("restore", snap["id"])["lost_rows_mode"] != "exact":
        pytest.skip("the server gives no replication slot: nothing to read ahead")
    env.db.execute("INSERT INTO res_partner (name) SELECT 'before the build ' || i FROM generate_series(1, 3) i")
    env.run_json("standby", "build", snap["id"])
    env.db.execute("INSERT INTO res_partner (name) SELECT 'after the build ' || i FROM generate_series(1, 4) i")


def test_a_standby_reads_the_snapshot_slot_ahead_and_its_rollback_reads_only_what_came_after(
    odoo_filestore: HelperEnv,
) -> None:
    env = odoo_filestore
    standby_between_writes(env)
    assert len(tail_slots()) == 1 and len(list(env.storage.glob("standby/*.ahead.jsonl"))) == 1

    result = env.run_json("rollback", "--yes")

    assert {s["name"]: s for s in result["steps"]}["staging"].get("skipped")
    assert result["lost_rows_mode"] == "exact" and result["lost_changes"] == {"res_partner": {"inserted": 7}}
    # Read when the standby was built: the 3 changes before it; after the stop, only the 4 after it.
    assert result["lost_read_ahead"]["changes_before"] == 3 and result["lost_read_ahead"]["changes_after"] == 4
    assert not tail_slots() and not list(env.storage.glob("standby/*.ahead.jsonl"))


def test_a_standby_read_ahead_that_changed_is_not_used(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    standby_between_writes(env)
    (kept,) = env.storage.glob("standby/*.ahead.jsonl")
    kept.write_text(kept.read_text().replace("before the build 2", "before the build X"))

    result = env.run_json("rollback", "--yes")

    # Not the file's word: the snapshot's slot is read whole, and every change is there, as it was.
    assert "lost_read_ahead" not in result
    assert result["lost_changes"] == {"res_partner": {"inserted": 7}}
    lost = sorted(json.loads(line)["after"]["name"] for line in Path(result["lost_rows_file"]).read_text().splitlines())
    assert "before the build 2" in lost and "before the build X" not in lost
    assert not tail_slots() and not list(env.storage.glob("standby/*.ahead.jsonl"))


def journal_message(env: HelperEnv, text: str) -> bool:
    return any(text in e.message for e in journal_events(env))


# With a standby, staging and check are journaled once, as skipped.
@pytest.mark.parametrize(("kill_at", "swapped"), kill_points(skipped={"staging", "check"}))
def test_a_rollback_with_a_standby_killed_then_resumed(odoo_filestore: HelperEnv, kill_at: str, swapped: bool) -> None:
    env = odoo_filestore
    snapshot_counts = database_counts(env.db.name)
    snapshot_files = files_of(env.filestore)
    live_oid = database_oid(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby_oid = database_oid(env.run_json("standby", "build", snap["id"])["database"])
    deployment_writes(env)
    changed_counts, changed_files = database_counts(env.db.name), files_of(env.filestore)
    restore_killed_at(env, snap["id"], kill_at)

    # Whatever the moment, the live name holds a whole database: the old one or the proven standby.
    assert database_oid(env.db.name) == (standby_oid if swapped else live_oid)
    outcome = env.run_json("resume")

    assert [o["outcome"] for o in outcome] == ["finished" if swapped else "undone"]
    # The database Odoo gets back is the proven standby or the old one, open, with its rows and files.
    assert database_oid(env.db.name) == (standby_oid if swapped else live_oid)
    assert database_row(env.db.name)[0] is True
    assert database_counts(env.db.name) == (snapshot_counts if swapped else changed_counts)
    assert files_of(env.filestore) == (snapshot_files if swapped else changed_files)
    # Nothing was staged from the snapshot on the way: the standby was never refused.
    events = env.run_json("journal", "--limit", "100000")["events"]
    assert not any(e["step"] == "staging" and e["status"] == "start" for e in events)
    if kill_at in ("preflight:start", "preflight:done", "standby:start"):
        # Not yet taken: it is still there, untouched, for the next rollback.
        assert standby_of(env, snap["id"])["state"] == "ready"
        assert database_row(standby_of(env, snap["id"])["database"]) == (False, "rollback_helper", standby_oid)
    else:
        # Taken by the run, it went live or was dropped with the run's staging: none is left over,
        # nor its read-ahead (the slot and the file).
        assert not [n for n in list_databases(env.db.name) if "__standby_" in n]
        assert not [p for p in env.filestore.parent.iterdir() if "__standby_" in p.name]
        assert not tail_slots() and not list(env.storage.glob("standby/*.ahead.jsonl"))
    assert env.run_json("resume") == []


def test_a_snapshot_whose_archive_changed_since_it_was_verified_gets_no_standby(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    archive = env.storage / "snapshots" / snap["id"] / "filestore.tar"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte inside an attachment: same size, other bytes
    archive.write_bytes(bytes(data))

    refused = env.run("standby", "build", snap["id"])

    assert refused.returncode == 4
    assert (
        refused.stderr.startswith("odoo-rollback: error: ") and "differs from the snapshot's manifest" in refused.stderr
    )
    assert not [n for n in list_databases(env.db.name) if "__standby_" in n]
    assert not [p for p in env.filestore.parent.iterdir() if "__standby_" in p.name]
    assert standby_of(env, snap["id"])["state"] == "failed"


# -- a build's liveness and what it may drop --------------------------------------------------------
def test_a_dead_builds_pid_given_to_another_program_is_never_signalled(odoo_filestore: HelperEnv) -> None:
    env = odoo_filestore
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    killed = subprocess.run(
        [
            sys.executable,
            str(CRASH_RUNNER),
            "restore:start",
            "--config",
            str(env.config_path),
            "standby",
            "build",
            snap["id"],
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr
    lock = env.storage / "standby.lock"
    record = env.storage / "standby" / f"{snap['id']}.json"
    state = json.loads(record.read_text())
    assert state["state"] == "building" and lock.read_text() == str(state["pid"])
    # The kernel gives the dead build's pid to another program (here: that program's pid in both files).
    stranger = subprocess.Popen(["sleep", "120"])
    try:
        lock.write_text(str(stranger.pid))
        record.write_text(json.dumps({**state, "pid": stranger.pid}))
        assert standby_of(env, snap["id"])["state"] == "interrupted"  # not "building": the lock is free
        env.db.execute("INSERT INTO res_partner (name) VALUES ('after')")
        rollback = env.run("rollback", "--yes", "--json", timeout=300)
        assert rollback.returncode == 0, rollback.stderr
        time.sleep(0.5)
        assert stranger.poll() is None, "the helper signalled a process that is not its build"
    finally:
        stranger.kill()
        stranger.wait()
    assert not journal_message(env, "was stopped: the restore stages")


def test_a_standby_build_during_a_rollback_is_refused_and_drops_nothing(
    odoo_filestore: HelperEnv, tmp_path: Path
) -> None:
    env = odoo_filestore
    snap, standby = standby_then_deployment(env)
    env.write(services={"backend": "command", "stop_command": ["sleep", "10"], "start_command": ["true"]})
    rollback = subprocess.Popen(
        [sys.executable, "-m", "odoo_rollback.cli", "--config", str(env.config_path), "rollback", "--yes", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The rollback has taken the standby (its record is gone) and stops the services.
        wait_for(lambda: journal_message(env, "replaces the staging"), "the rollback did not take the standby")
        build = env.run("standby", "build", snap["id"], timeout=120)
        taken_still_there = standby["database"] in list_databases(env.db.name)
        out, err = rollback.communicate(timeout=300)
    finally:
        if rollback.poll() is None:
            rollback.kill()
            rollback.wait()
    assert taken_still_there, build.stderr
    assert build.returncode == 3 and f"a restore of database {env.db.name} is running" in build.stderr
    assert rollback.returncode == 0, err
    result = json.loads(out)
    assert {s["name"]: s for s in result["steps"]}["staging"].get("skipped")  # the standby was used
    assert not journal_message(env, "refused at the last check")
