"""One operation at a time: a live run is never fought, a dead one leaves nothing behind.

Runs are held still from outside, as an operator's world would: a table lock that pg_dump must wait
for, a services stop command that takes its time. Kills are real ``kill -9`` of the helper, driven by
the test while it watches the journal.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import HelperEnv, Served, create_database, drop_database, list_databases, pg_connect

CRASH_RUNNER = Path(__file__).with_name("crash_runner.py")


def start(helper_env: HelperEnv, *args: str) -> subprocess.Popen[str]:
    helper_env.write()
    return subprocess.Popen(
        [sys.executable, "-m", "odoo_rollback.cli", "--config", str(helper_env.config_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def journal_rows(storage: Path, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    path = storage / "journal.sqlite3"
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        conn.row_factory = sqlite3.Row
        return conn.execute(query, params).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_event(storage: Path, kind: str, step: str, status: str = "start") -> None:
    wait_until(
        f"{kind} {step} {status} in the journal",
        lambda: journal_rows(
            storage,
            "SELECT 1 FROM events e JOIN operations o ON o.id = e.operation_id "
            "WHERE o.kind = ? AND e.step = ? AND e.status = ?",
            (kind, step, status),
        ),
    )


def operations(storage: Path, kind: str) -> list[sqlite3.Row]:
    return journal_rows(storage, "SELECT * FROM operations WHERE kind = ? ORDER BY started_at", (kind,))


def children(pid: int, name: str) -> list[int]:
    """Processes called *name* whose parent is *pid*."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid and comm == name:
            found.append(int(entry.name))
    return found


@contextmanager
def table_locked(dbname: str, table: str) -> Iterator[None]:
    """An open transaction holding *table* exclusively: pg_dump (and any reader) waits for it."""
    conn = pg_connect(dbname)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()


def pg_dump_backends(dbname: str) -> list[int]:
    """The server processes of a pg_dump waiting for a table lock (its first step)."""
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                "AND query LIKE 'LOCK TABLE %%IN ACCESS SHARE MODE'",
                (dbname,),
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def backends_alive(pids: list[int]) -> bool:
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
            return bool(cur.fetchone()[0])
    finally:
        conn.close()


def running(pid: int) -> bool:
    """Whether process *pid* runs (a zombie, dead but not reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def kill_9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)


def test_a_running_snapshot_is_never_fought_and_a_killed_one_leaves_nothing(helper_env: HelperEnv) -> None:
    storage = helper_env.storage
    earlier = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    with table_locked(helper_env.db.name, "res_partner"):
        snapshot = start(helper_env, "snapshot")
        try:
            wait_for_event(storage, "snapshot", "metadata")
            backends = wait_until("pg_dump waiting for the table", lambda: pg_dump_backends(helper_env.db.name))
            pg_dumps = children(snapshot.pid, "pg_dump")
            assert pg_dumps

            # While it lives, every other operation that changes something is refused, saying who runs.
            for args in (["snapshot"], ["drill", earlier["id"]], ["prune", "--keep", "1"], ["resume"]):
                refused = helper_env.run(*args, timeout=30)
                assert refused.returncode == 3, (args, refused.stderr)
                assert f"a snapshot is running (pid {snapshot.pid}, step metadata, started " in refused.stderr
                assert len(refused.stderr.strip().splitlines()) == 1
            assert [op["state"] for op in operations(storage, "snapshot")] == ["done", "running"]

            kill_9(snapshot)
        finally:
            if snapshot.poll() is None:
                kill_9(snapshot)
        # Its pg_dump died with it: no orphan keeps dumping into a folder nobody will commit.
        wait_until("pg_dump to end with the helper", lambda: not any(map(running, pg_dumps)), 10)
        wait_until("pg_dump's session to end", lambda: not backends_alive(backends), 10)

    partials = list((storage / "snapshots").glob(".partial-*"))
    assert partials, "the kill left no partial folder: the test did not kill the snapshot mid-way"

    taken = helper_env.run_json("snapshot")

    assert not list((storage / "snapshots").glob(".partial-*"))
    assert [s["id"] for s in helper_env.run_json("list")] == [taken["id"], earlier["id"]]
    _, killed, new = operations(storage, "snapshot")
    assert killed["state"] == "failed" and new["state"] == "done"
    closing = journal_rows(
        storage, "SELECT message FROM events WHERE operation_id = ? ORDER BY seq DESC LIMIT 1", (killed["id"],)
    )[0]["message"]
    assert f"process {snapshot.pid} ended during step metadata" in closing


def test_prune_removes_what_an_interrupted_removal_left(helper_env: HelperEnv) -> None:
    old = helper_env.run_json("snapshot", "--kind", "manual")
    kept = helper_env.run_json("snapshot", "--kind", "manual")
    # What a prune killed between its rename and the end of its rmtree leaves: a folder no list shows.
    half_removed = helper_env.storage / "snapshots" / f".partial-deleting-{old['id']}"
    os.rename(old["path"], half_removed)
    (half_removed / "db.dump").rename(half_removed / "db.dump.half")

    helper_env.run_json("prune", "--keep", "1")

    assert sorted(p.name for p in (helper_env.storage / "snapshots").iterdir()) == [kept["id"]]
    prune = operations(helper_env.storage, "prune")
    assert [op["state"] for op in prune] == ["done"]


@pytest.mark.parametrize("command", [["verify", "--deep"], ["drill"]])
def test_a_deep_verify_or_drill_killed_mid_restore_leaves_no_scratch_database(
    helper_env: HelperEnv, command: list[str]
) -> None:
    # Enough rows that pg_restore takes a while: the kill lands while the scratch database is filled.
    helper_env.db.execute("CREATE TABLE filler AS SELECT g, md5(g::text) AS h FROM generate_series(1, 400000) g")
    helper_env.db.execute("CREATE INDEX filler_h ON filler (h)")
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    storage = helper_env.storage
    kind = command[0]
    step = "scratch_restore" if kind == "verify" else "restore"
    process = start(helper_env, kind, snap["id"], *command[1:])
    try:
        wait_for_event(storage, kind, step)
        wait_until("the scratch database", lambda: scratch_databases(helper_env.db.name))
        kill_9(process)
    finally:
        if process.poll() is None:
            kill_9(process)
    killed = operations(storage, kind)[-1]
    assert killed["state"] == "running", "the run ended before the kill: nothing was tested"

    helper_env.run_json("resume")

    wait_until("no scratch database", lambda: not scratch_databases(helper_env.db.name), 10)
    assert operations(storage, kind)[-1]["state"] == "failed"
    assert not list((storage / "snapshots").glob(".partial-*"))


def scratch_databases(dbname: str) -> list[str]:
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{dbname}\\_\\_%",))
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


# -- restores: a stop command that takes its time holds a restore in its "stop" step ----------------
def slow_stop(helper_env: HelperEnv, tmp_path: Path, seconds: int = 30) -> Path:
    """Services whose stop takes *seconds*; the returned file appears when they are started."""
    started = tmp_path / "services-started"
    helper_env.write(
        services={
            "backend": "command",
            "stop_command": ["sleep", str(seconds)],
            "start_command": ["touch", str(started)],
        }
    )
    return started


def live_partner_count(helper_env: HelperEnv) -> int:
    return int(helper_env.db.execute("SELECT count(*) FROM res_partner")[0][0])


def test_a_live_restore_is_refused_with_who_runs_and_resume_leaves_it_alone(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], tmp_path: Path
) -> None:
    services_started = slow_stop(helper_env, tmp_path)
    storage = helper_env.storage
    first = start(helper_env, "restore", snapshot_then_changes["id"], "--yes")
    try:
        wait_for_event(storage, "restore", "stop")

        second = helper_env.run("rollback", "--yes", timeout=60)
        resumed = helper_env.run("resume", timeout=60)

        assert second.returncode == 3
        assert f"a restore is running (pid {first.pid}, step stop, started " in second.stderr
        assert "resume" not in second.stderr
        assert resumed.returncode == 3 and f"a restore is running (pid {first.pid}, step stop" in resumed.stderr
        # The live run was not touched: still running, nothing undone under it.
        assert first.poll() is None
        assert [op["state"] for op in operations(storage, "restore")] == ["running"]
        assert not services_started.exists()

        # Once its owner is dead (kill -9), resume acts: the restore is undone.
        kill_9(first)
    finally:
        if first.poll() is None:
            kill_9(first)
    outcome = helper_env.run_json("resume")
    assert [o["outcome"] for o in outcome] == ["undone"]
    assert services_started.exists()
    assert live_partner_count(helper_env) == 57


def test_resume_wait_waits_for_the_live_run_then_acts_on_what_it_left(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], tmp_path: Path
) -> None:
    services_started = slow_stop(helper_env, tmp_path)
    storage = helper_env.storage
    first = start(helper_env, "restore", snapshot_then_changes["id"], "--yes")
    waiting = None
    try:
        wait_for_event(storage, "restore", "stop")
        waiting = start(helper_env, "resume", "--wait", "--json")
        time.sleep(2)  # long enough for a resume that does not wait to have refused or acted
        assert waiting.poll() is None, waiting.communicate()
        assert [op["state"] for op in operations(storage, "restore")] == ["running"]

        kill_9(first)
        out, err = waiting.communicate(timeout=120)
    finally:
        for process in (first, waiting):
            if process is not None and process.poll() is None:
                kill_9(process)

    assert waiting.returncode == 0, err
    assert f"waiting: a restore is running (pid {first.pid}, step stop" in err
    assert [o["outcome"] for o in json.loads(out)] == ["undone"]
    assert services_started.exists() and live_partner_count(helper_env) == 57


def test_the_api_refuses_a_restore_while_one_runs_from_the_shell(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], served: Served, tmp_path: Path
) -> None:
    slow_stop(helper_env, tmp_path)
    first = start(helper_env, "restore", snapshot_then_changes["id"], "--yes")
    try:
        wait_for_event(helper_env.storage, "restore", "stop")
        body = {"snapshot": snapshot_then_changes["id"], "confirm_database": helper_env.db.name}
        status, reply = served.client.request("POST", "/v1/restores", body)
        drill_status, drill = served.client.request("POST", "/v1/drills", {"snapshot": snapshot_then_changes["id"]})
    finally:
        kill_9(first)
    assert status == 409
    assert f"a restore is running (pid {first.pid}, step stop, started " in reply["error"]
    assert "resume" not in reply["error"]
    assert drill_status == 409 and "a restore is running" in drill["error"]


# -- two helpers (two configuration files, two storage folders) on one database ----------------------
def second_helper(helper_env: HelperEnv, tmp_path: Path) -> HelperEnv:
    """Another installation of the helper for the same database: its own configuration and storage."""
    other = tmp_path / "other-helper"
    other.mkdir()
    sections = copy.deepcopy(helper_env.sections)
    sections["storage"]["path"] = str(other / "storage")
    env = HelperEnv(tmp_path=other, db=helper_env.db, filestore=helper_env.filestore, sections=sections)
    env.write()
    return env


def test_two_helpers_on_one_database_never_change_it_at_once(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any], tmp_path: Path
) -> None:
    other = second_helper(helper_env, tmp_path)
    other_snapshot = other.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    services_started = slow_stop(helper_env, tmp_path, seconds=15)
    name = helper_env.db.name
    first = start(helper_env, "restore", snapshot_then_changes["id"], "--yes")
    try:
        wait_for_event(helper_env.storage, "restore", "stop")
        restore = other.run("restore", other_snapshot["id"], "--yes", timeout=120)
        snapshot = other.run("snapshot", "--kind", "manual", timeout=120)
        listed = other.run("list", "--json", timeout=60)  # reading is not changing: allowed as ever
        databases = list_databases(name)
        assert first.poll() is None
        _out, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            kill_9(first)
    for refused in (restore, snapshot):
        assert refused.returncode == 3, refused.stderr
        assert f"is running on database {name} from another helper (pid {first.pid} on " in refused.stderr
    assert listed.returncode == 0, listed.stderr
    # The second helper made nothing: no staging database of its own beside the first's.
    assert len([d for d in databases if "__restore_" in d]) == 1, databases
    assert not operations(other.storage, "restore")
    assert first.returncode == 0, err
    assert services_started.exists()
    # Once the first has finished (or died: the server ends its session), the second may act.
    assert other.run_json("snapshot", "--kind", "manual")["id"]


def test_a_restore_drops_no_database_it_did_not_make(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    """Databases already under the names a restore would pick (another run's, started in the same
    second) are refused before anything is made, and never dropped by its undo."""
    name = helper_env.db.name
    now = datetime.now(timezone.utc)
    theirs = [f"{name}__restore_{(now + timedelta(seconds=s)):%Y%m%d%H%M%S}" for s in range(4, 24)]
    for database in theirs:
        create_database(database)
    try:
        while datetime.now(timezone.utc) < now + timedelta(seconds=4):
            time.sleep(0.1)
        result = helper_env.run("restore", snapshot_then_changes["id"], "--yes", timeout=120)
        assert set(theirs) <= set(list_databases(name)), result.stderr
        assert result.returncode == 3, result.stderr
        assert "already exist" in result.stderr and "not this run's" in result.stderr
        assert live_partner_count(helper_env) == 57  # the live database was not touched
    finally:
        for database in theirs:
            drop_database(database)


def in_container_named(hostname: str, *argv: str) -> list[str]:
    """As a re-created container runs the helper: the same storage volume, another hostname."""
    return ["unshare", "--uts", "sh", "-c", f'hostname {hostname}; "$@"', "sh", *argv]


def test_a_restore_killed_in_an_old_container_is_resumed_in_the_new_one(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    config = str(helper_env.config_path)
    killed = subprocess.run(
        in_container_named(
            "helper-old",
            sys.executable,
            str(CRASH_RUNNER),
            "stop:done",
            "--config",
            config,
            "restore",
            snapshot_then_changes["id"],
            "--yes",
        ),
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    assert killed.returncode in (-9, 137), killed.stderr
    cli = (sys.executable, "-m", "odoo_rollback.cli", "--config", config)
    rollback = subprocess.run(
        in_container_named("helper-new", *cli, "rollback", "--yes"),
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    # Not "a restore is running" forever: the lock this run holds proves the old container's run dead.
    assert rollback.returncode == 3 and "run 'odoo-rollback resume'" in rollback.stderr, rollback.stderr
    resumed = subprocess.run(
        in_container_named("helper-new", *cli, "resume", "--json"),
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert [o["outcome"] for o in json.loads(resumed.stdout)] == ["undone"]
    assert live_partner_count(helper_env) == 57
