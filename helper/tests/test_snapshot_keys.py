"""The snapshot records its own primary keys, so that the fallback capture (no replication slot) names
the rows deleted after it in every way a restore can go: staged, with a warm standby, resumed after a
crash, and in the plan shown before deciding. Real PostgreSQL, real files, the real command line."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import HelperEnv
from test_crash import restore_killed_at
from test_standby import wait_ready

KEYS_FILE = "keys/account_move.tsv.gz"
# After the snapshot: one invoice deleted, one changed, one new.
EXPECTED = {"deleted": 1, "updated": 1, "inserted": 1}


@pytest.fixture
def fallback(helper_env: HelperEnv) -> HelperEnv:
    helper_env.write(capture={"mode": "fallback"})
    return helper_env


def change_invoices(env: HelperEnv) -> None:
    env.db.execute(
        "DELETE FROM account_move WHERE id = 7;"
        "UPDATE account_move SET state = 'cancel' WHERE id = 8;"
        "INSERT INTO account_move (name, amount_total, state) VALUES ('INV/after', 9, 'draft')"
    )


def export_lines(path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def assert_invoices_reported(report: dict[str, Any]) -> None:
    assert report["lost_rows_mode"] == "fallback"
    assert report["lost_changes"]["account_move"] == EXPECTED
    lines = {line["kind"]: line for line in export_lines(report["lost_rows_file"]) if line["table"] == "account_move"}
    assert lines["deleted"]["key"] == {"id": 7}
    assert lines["updated"]["after"]["id"] == 8 and lines["updated"]["after"]["state"] == "cancel"
    assert lines["inserted"]["after"]["name"] == "INV/after"
    assert not any("deletions are not counted" in limit for limit in report["lost_rows_limits"])


def test_the_snapshot_lists_its_keys_and_a_staged_rollback_names_the_deleted_row(fallback: HelperEnv) -> None:
    snap = fallback.run_json("snapshot", "--kind", "pre_deploy")
    manifest = json.loads((Path(snap["path"]) / "manifest.json").read_text())
    # Every tracked table that exists, with its key columns; checksummed like every other file.
    assert manifest["capture"]["keys"] == {"account_move": ["id"], "res_partner": ["id"]}
    assert {KEYS_FILE, "keys/res_partner.tsv.gz"} <= set(manifest["files"])
    with gzip.open(Path(snap["path"]) / KEYS_FILE, "rt") as keys:
        assert keys.read().split() == [str(i) for i in range(1, 201)]
    change_invoices(fallback)

    result = fallback.run_json("restore", snap["id"], "--yes")

    assert_invoices_reported(result)


def test_the_plan_names_the_deleted_row_before_the_restore(fallback: HelperEnv) -> None:
    snap = fallback.run_json("snapshot", "--kind", "pre_deploy")
    change_invoices(fallback)

    plan = fallback.run_json("restore", snap["id"])

    assert plan["lost_rows_mode"] == "fallback"
    assert plan["lost_changes"]["account_move"] == EXPECTED
    assert not any("deletions are not counted" in limit for limit in plan["lost_rows_limits"])


def test_a_rollback_with_a_ready_standby_names_the_deleted_row(fallback: HelperEnv) -> None:
    fallback.write(standby={"enabled": True})
    snap = fallback.run_json("snapshot", "--kind", "pre_deploy", "--standby")
    wait_ready(fallback, snap["id"])
    change_invoices(fallback)

    result = fallback.run_json("rollback", "--yes")

    assert {s["name"]: s for s in result["steps"]}["staging"].get("skipped")
    assert_invoices_reported(result)


def test_resume_after_a_crash_after_the_swap_names_the_deleted_row(fallback: HelperEnv) -> None:
    snap = fallback.run_json("snapshot", "--kind", "pre_deploy")
    change_invoices(fallback)
    restore_killed_at(fallback, snap["id"], "swap:done")

    outcome = fallback.run_json("resume")

    assert [o["outcome"] for o in outcome] == ["finished"]
    # What Odoo reads: the restore's journal operation.
    operation = next(o for o in fallback.run_json("journal")["operations"] if o["id"] == outcome[0]["id"])
    assert_invoices_reported(operation["data"])
    # Odoo's Lost changes tab, by model: the deleted invoice named from the restored database.
    summary = next(m for m in operation["data"]["lost_summary"] if m["table"] == "account_move")
    assert summary["counts"] == EXPECTED
    assert "INV/7" in json.dumps(summary["records"])


def test_an_altered_keys_file_fails_verify_and_is_not_used(fallback: HelperEnv) -> None:
    snap = fallback.run_json("snapshot", "--kind", "pre_deploy")
    keys = Path(snap["path"]) / KEYS_FILE
    # Invoice 7 dropped from the snapshot's keys: trusted, its deletion would go unreported.
    with gzip.open(keys, "rt") as source:
        kept = [line for line in source.read().splitlines() if line != "7"]
    with gzip.open(keys, "wt") as target:
        target.write("\n".join(kept) + "\n")
    change_invoices(fallback)

    verify = fallback.run("verify", snap["id"])
    plan = fallback.run_json("restore", snap["id"])

    assert verify.returncode != 0 and KEYS_FILE in verify.stdout + verify.stderr
    # Not a wrong answer: the file is refused and the report says what is not counted.
    assert "deleted" not in plan["lost_changes"]["account_move"]
    assert any(KEYS_FILE in limit and "deletions are not counted" in limit for limit in plan["lost_rows_limits"])


def test_a_snapshot_without_keys_still_reports_deletions_when_staged_and_says_what_the_plan_cannot(
    fallback: HelperEnv,
) -> None:
    snap = fallback.run_json("snapshot", "--kind", "pre_deploy")
    # As an older helper wrote it: no keys in the folder nor in the manifest.
    folder = Path(snap["path"])
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["capture"]["keys"]
    manifest["files"] = {name: entry for name, entry in manifest["files"].items() if not name.startswith("keys/")}
    manifest_path.write_text(json.dumps(manifest))
    shutil.rmtree(folder / "keys")
    change_invoices(fallback)

    plan = fallback.run_json("restore", snap["id"])
    result = fallback.run_json("restore", snap["id"], "--yes")

    assert plan["lost_changes"]["account_move"] == {"written": 2}
    assert any("does not record its primary keys" in limit for limit in plan["lost_rows_limits"])
    assert_invoices_reported(result)
    # The staging database's keys were read into a private folder, gone with the restore.
    assert not list(fallback.storage.rglob(".partial-keys-*"))
