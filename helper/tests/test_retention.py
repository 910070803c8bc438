"""Retention applied: after every snapshot and by ``prune``, from the [retention] configuration only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import HelperEnv, create_database, list_databases, pg_connect


def age_snapshot(helper_env: HelperEnv, snapshot_id: str, days: float) -> None:
    """Make a snapshot look *days* old, as the calendar would (its manifest's creation time)."""
    path = helper_env.storage / "snapshots" / snapshot_id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["created_at"] = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()
    path.write_text(json.dumps(manifest))


def ids(helper_env: HelperEnv) -> set[str]:
    return {s["id"] for s in helper_env.run_json("list")}


def test_every_snapshot_applies_the_configured_retention(helper_env: HelperEnv) -> None:
    helper_env.write(retention={"keep_last": 1})
    verified = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    helper_env.run_json("snapshot", "--kind", "pre_deploy")
    newest_pre = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.run_json("snapshot", "--kind", "manual")
    newest_manual = helper_env.run_json("snapshot", "--kind", "manual")

    # One of each kind, and the newest verified pre_deploy one, which a rollback needs.
    assert ids(helper_env) == {verified["id"], newest_pre["id"], newest_manual["id"]}
    deleted = [e for e in helper_env.run_json("journal")["events"] if e["step"] == "delete" and e["status"] == "start"]
    assert len(deleted) == 2


def test_prune_without_arguments_drops_what_is_older_than_max_days(helper_env: HelperEnv) -> None:
    old = helper_env.run_json("snapshot", "--kind", "manual")
    young = helper_env.run_json("snapshot", "--kind", "manual")
    age_snapshot(helper_env, old["id"], 10)

    # No retention configured: prune keeps everything and says so.
    nothing = helper_env.run("prune", check=True).stdout
    assert "removed 0 snapshot(s) (keep everything)" in nothing

    helper_env.write(retention={"max_days": 7})
    assert helper_env.run_json("prune", "--dry-run")["removed"] == [old["id"]]
    assert ids(helper_env) == {old["id"], young["id"]}
    assert helper_env.run_json("prune")["removed"] == [old["id"]]
    assert ids(helper_env) == {young["id"]}


def test_the_snapshot_of_an_interrupted_restore_is_never_pruned(helper_env: HelperEnv) -> None:
    used = helper_env.run_json("snapshot", "--kind", "manual")
    helper_env.run_json("snapshot", "--kind", "manual")
    # A restore killed in the middle: 'resume' needs its snapshot (running operations hold the lock,
    # so prune waits for them; an interrupted restore holds nothing but its journal line).
    crash_runner = Path(__file__).parent / "crash_runner.py"
    config = str(helper_env.config_path)
    killed = subprocess.run(
        [sys.executable, str(crash_runner), "staging:start", "--config", config, "restore", used["id"], "--yes"],
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -9

    assert helper_env.run_json("prune", "--keep", "1")["removed"] == []
    assert used["id"] in ids(helper_env)
    helper_env.run_json("resume")
    assert helper_env.run_json("prune", "--keep", "1")["removed"] == [used["id"]]


def test_a_bad_retention_is_one_line_and_changes_nothing(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "manual")
    helper_env.write(retention={"keep_last": -1})
    result = helper_env.run("prune")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "retention" in result.stderr
    helper_env.write(retention={"keep_last": 0})
    assert ids(helper_env) == {snap["id"]}


# -- what a restore keeps, and drill leftovers ----------------------------------------------------
def stamp(days_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).strftime("%Y%m%d%H%M%S")


def make_kept(helper_env: HelperEnv, purpose: str, days_ago: float, filestore: bool = True) -> str:
    name = f"{helper_env.db.name}__{purpose}_{stamp(days_ago)}"
    create_database(name)
    if filestore:
        folder = helper_env.filestore.parent / f"{helper_env.filestore.name}__{purpose}_{name.rsplit('_', 1)[1]}"
        folder.mkdir()
        (folder / "attachment").write_bytes(b"x" * 4096)
    return name


def test_kept_lists_with_size_and_its_retention_keeps_the_newest_restores(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, object]
) -> None:
    ancient = make_kept(helper_env, "failed", 9)
    older = make_kept(helper_env, "failed", 3)
    old = make_kept(helper_env, "failed", 2)
    leftover = make_kept(helper_env, "drill", 1, filestore=False)
    restored = helper_env.run_json("restore", str(snapshot_then_changes["id"]), "--yes")
    newest = restored["kept_as"]

    kept = {k["name"]: k for k in helper_env.run_json("kept")}
    assert set(kept) == {ancient, older, old, leftover, newest}
    assert kept[ancient]["database_size"] > 1_000_000 and kept[ancient]["filestore_size"] == 4096
    assert kept[leftover]["filestore"] is None
    assert kept[newest]["protected"] == "kept by the newest restore"
    human = helper_env.run("kept", check=True).stdout
    assert ancient in human and "5 kept" in human

    # Default [retention.kept]: the last 2 and at most 7 days; the newest restore's is the way back.
    health = helper_env.run("health", "--json")
    assert health.returncode == 1
    storage = next(c for c in json.loads(health.stdout)["checks"] if c["name"] == "storage")
    assert storage["ok"] is False and "kept beyond retention" in storage["detail"]

    pruned = helper_env.run_json("prune")
    assert sorted(pruned["dropped"]) == sorted([ancient, older, old])
    assert list_databases(helper_env.db.name) == sorted([helper_env.db.name, leftover, newest])
    left = sorted(p.name for p in helper_env.filestore.parent.iterdir() if "__" in p.name)
    assert left == [Path(next(iter([kept[newest]["filestore"]]))).name]
    storage = next(c for c in helper_env.run_json("health")["checks"] if c["name"] == "storage")
    assert storage["ok"] is True and "2 kept database(s)" in storage["detail"]


def test_a_kept_database_whose_export_failed_is_never_dropped_without_force(helper_env: HelperEnv) -> None:
    """A restore whose lost-changes export failed leaves the changes in the kept database only (and its
    slot, their exact record): no retention drops either, health says what to do, and only the
    operator, by name and with --force, drops it."""
    helper_env.write(capture={"slot_wait_seconds": 600})
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("INSERT INTO res_partner (name) SELECT 'only here ' || i FROM generate_series(1, 3) i")
    blocker = helper_env.storage / "restores"
    blocker.write_text("")  # the export's folder cannot be made: one way for the export to fail
    first = helper_env.run_json("restore", snap["id"], "--yes")
    blocker.unlink()
    assert "still holds them all" in first["lost_rows_error"]
    kept_as = first["kept_as"]
    for _ in range(2):  # two more deploy/rollback cycles: the first kept database is beyond keep_last = 2
        time.sleep(1.1)
        again = helper_env.run_json("snapshot", "--kind", "pre_deploy")  # supersedes the first's slot
        helper_env.run_json("restore", again["id"], "--yes")
    time.sleep(1.1)
    helper_env.run_json("snapshot", "--kind", "manual")  # kept retention, as its last step
    conn = pg_connect(kept_as)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM res_partner WHERE name LIKE 'only here%'")
        assert cur.fetchone()[0] == 3
        cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (kept_as,))
        assert cur.fetchall(), "the slot that records the changes exactly went"
    conn.close()
    events = helper_env.run_json("journal", "--limit", "100000")["events"]
    assert any(e["step"] == "retention" and f"not dropped: {kept_as}" in (e["message"] or "") for e in events)
    assert helper_env.run_json("prune")["kept_not_dropped"][0].startswith(kept_as)
    assert kept_as in list_databases(helper_env.db.name)

    kept = {k["name"]: k for k in helper_env.run_json("kept")}
    assert kept[kept_as]["protected"].startswith("the only copy of changes no export has")
    health = helper_env.run("health", "--json")
    check = next(c for c in json.loads(health.stdout)["checks"] if c["name"] == "kept databases")
    assert health.returncode == 1 and check["ok"] is False
    assert f"odoo-rollback kept --drop {kept_as} --force" in check["detail"]

    refused = helper_env.run("kept", "--drop", kept_as)
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert kept_as in list_databases(helper_env.db.name)
    assert helper_env.run_json("kept", "--drop", kept_as, "--force")["dropped"] == kept_as
    assert kept_as not in list_databases(helper_env.db.name)
    check = next(c for c in helper_env.run_json("health")["checks"] if c["name"] == "kept databases")
    assert check["ok"] is True
