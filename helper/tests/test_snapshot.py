"""Snapshots from the command line, against a real PostgreSQL and real pg_dump/tar."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import tarfile
from pathlib import Path

from conftest import HelperEnv


def test_snapshot_records_counts_modules_and_checksums(helper_env: HelperEnv) -> None:
    doc = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--label", "before v2")

    assert doc["kind"] == "pre_deploy"
    assert doc["label"] == "before v2"
    assert doc["counts"] == {"account_move": 200, "res_partner": 50, "einvoice_document": None}
    snapshot_dir = Path(doc["path"])
    assert snapshot_dir.parent == helper_env.storage / "snapshots"
    manifest = json.loads((snapshot_dir / "manifest.json").read_text())
    assert manifest["modules"] == {"account": "16.0.1.2", "base": "16.0.1.3", "mail": "16.0.1.10"}
    assert manifest["database"] == helper_env.db.name
    assert manifest["server_version"].startswith("15")
    # Every file of the snapshot is described, and the filestore archive holds the filestore.
    described = set(manifest["files"])
    on_disk = {str(p.relative_to(snapshot_dir)) for p in snapshot_dir.rglob("*") if p.is_file()} - {"manifest.json"}
    assert described == on_disk
    with tarfile.open(snapshot_dir / "filestore.tar") as archive:
        names = {Path(n).name for n in archive.getnames()}
    assert {p.name for p in helper_env.filestore.rglob("*") if p.is_file()} <= names


def test_list_shows_newest_first_and_only_complete_snapshots(helper_env: HelperEnv) -> None:
    first = helper_env.run_json("snapshot", "--kind", "manual")
    second = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    # A crash leaves a partial folder behind: list must not offer it.
    (helper_env.storage / "snapshots" / ".partial-20990101T000000Z-manual-abcdef").mkdir()

    listed = helper_env.run_json("list")

    assert [s["id"] for s in listed] == [second["id"], first["id"]]
    human = helper_env.run("list", check=True).stdout
    assert second["id"] in human and "pre_deploy" in human


def test_code_revision_is_git_head_of_the_code_folder(helper_env: HelperEnv, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    git = ["git", "-C", str(code), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (code / "addon.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    helper_env.write(code={"path": str(code)})

    doc = helper_env.run_json("snapshot")

    assert doc["code_revision"] == head


def test_counts_are_exact_and_absent_tables_are_reported(helper_env: HelperEnv) -> None:
    helper_env.db.execute("INSERT INTO res_partner (name) VALUES ('one more')")

    counts = helper_env.run_json("counts")

    assert counts == {"account_move": 200, "res_partner": 51, "einvoice_document": None}
    assert "absent" in helper_env.run("counts", check=True).stdout


def test_snapshot_with_verify_marks_it_verified(helper_env: HelperEnv) -> None:
    doc = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")

    assert doc["verify"]["ok"] is True
    assert doc["verified_at"]
    assert helper_env.run_json("list")[0]["verified_at"] == doc["verified_at"]


def test_snapshot_and_verify_are_in_the_journal(helper_env: HelperEnv) -> None:
    doc = helper_env.run_json("snapshot", "--verify")
    conn = sqlite3.connect(helper_env.storage / "journal.sqlite3")
    rows = conn.execute("SELECT kind, state, data FROM operations ORDER BY started_at").fetchall()
    conn.close()
    assert [(kind, state) for kind, state, _ in rows] == [("snapshot", "done"), ("verify", "done")]
    assert json.loads(rows[0][2])["summary"]["id"] == doc["id"]
