"""Odoo's backup zip both ways, proven with Odoo 16's own database service (restore_db, dump_db), and
neutralized copies of a snapshot, checked on a real Odoo 16 database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    PG,
    TEST_DB_PREFIX,
    HelperEnv,
    database_counts,
    drop_database,
    list_databases,
    pg_connect,
    write_config,
)


def test_export_writes_dump_sql_filestore_and_manifest(helper_env: HelperEnv, tmp_path: Path) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "manual")
    target = tmp_path / "backup.zip"
    helper_env.run("export", snap["id"], "--format", "odoo-zip", str(target), check=True)

    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
        assert names[0] == "dump.sql" and names[-1] == "manifest.json"
        files = sorted(n.removeprefix("filestore/") for n in names if n.startswith("filestore/"))
        expected = sorted(
            str(p.relative_to(helper_env.filestore)) for p in helper_env.filestore.rglob("*") if p.is_file()
        )
        assert files == expected
        sample = expected[0]
        assert zf.read(f"filestore/{sample}") == (helper_env.filestore / sample).read_bytes()
        sql_text = zf.read("dump.sql").decode()
        assert "CREATE TABLE public.account_move" in sql_text and "OWNER TO" not in sql_text
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["db_name"] == helper_env.db.name and manifest["modules"]["base"] == "16.0.1.3"
    assert manifest["major_version"] == "16.0" and manifest["pg_version"].startswith("15")

    again = helper_env.run("export", snap["id"], "--format", "odoo-zip", str(target))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_import_of_an_exported_zip_is_a_verified_snapshot_that_restores(helper_env: HelperEnv, tmp_path: Path) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "manual")
    target = tmp_path / "backup.zip"
    helper_env.run("export", snap["id"], str(target), check=True)
    helper_env.db.execute("DELETE FROM account_move WHERE id <= 50")
    (helper_env.filestore / "00").rename(helper_env.filestore.parent / "gone")

    imported = helper_env.run_json("import", str(target))
    assert imported["kind"] == "imported" and imported["verified_at"]
    assert imported["counts"] == {"account_move": 200, "res_partner": 50, "einvoice_document": None}
    assert imported["modules"] == snap["modules"]
    assert list_databases(helper_env.db.name) == [helper_env.db.name]  # the scratch database is gone

    helper_env.run_json("restore", imported["id"], "--yes")
    assert database_counts(helper_env.db.name) == {"account_move": 200, "res_partner": 50}
    assert (helper_env.filestore / "00").is_dir()


def test_import_of_a_plain_pg_dump_file(helper_env: HelperEnv, tmp_path: Path) -> None:
    plain = tmp_path / "plain.sql"
    env = {**os.environ, "PGPASSWORD": PG["password"]}
    subprocess.run(
        [
            "pg_dump",
            "--no-owner",
            f"--file={plain}",
            "-h",
            PG["host"],
            "-p",
            str(PG["port"]),
            "-U",
            PG["user"],
            helper_env.db.name,
        ],
        env=env,
        check=True,
    )
    imported = helper_env.run_json("import", str(plain), "--label", "from the old server")
    assert imported["label"] == "from the old server" and imported["counts"]["account_move"] == 200
    drill = helper_env.run_json("drill", imported["id"])
    assert drill["ok"] is True


def test_import_refuses_what_is_not_a_backup_and_changes_nothing(helper_env: HelperEnv, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    result = helper_env.run("import", str(notes))
    assert result.returncode == 2 and "neither an Odoo backup zip nor a pg_dump file" in result.stderr
    bad_zip = tmp_path / "photos.zip"
    with zipfile.ZipFile(bad_zip, "w") as zf:
        zf.writestr("a.jpg", b"x")
    result = helper_env.run("import", str(bad_zip))
    assert result.returncode == 2 and "without dump.sql" in result.stderr
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("dump.sql", "CREATE TABLE t (id int);\nSELECT nonsense FROM nowhere;\n")
    result = helper_env.run("import", str(broken))
    assert result.returncode != 0 and "nowhere" in result.stderr
    assert helper_env.run_json("list") == []
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    assert not list((helper_env.storage / "snapshots").iterdir())


# -- with Odoo 16 itself --------------------------------------------------------------------------
ODOO_SCRIPT = """
import json, sys
import odoo
from odoo.service import db
action, rc, data_dir, name, path = sys.argv[1:6]
odoo.tools.config.parse_config(["-c", rc, "--data-dir", data_dir])
if action == "restore":
    db.restore_db(name, path)
else:
    with open(path, "wb") as stream:
        db.dump_db(name, stream, "zip")
"""


@pytest.fixture(scope="module")
def odoo_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real Odoo 16 database (base only) with its filestore, made by odoo-bin."""
    odoo_src, odoo_rc = os.environ.get("ODOO_SRC"), os.environ.get("ODOO_RC")
    if not odoo_src or not odoo_rc:
        pytest.fail("ODOO_SRC and ODOO_RC are needed (source .venv/test.env)")
    data_dir = tmp_path_factory.mktemp("odoo-data")
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:10]}"
    cmd = [sys.executable, f"{odoo_src}/odoo-bin", "-c", odoo_rc, f"--data-dir={data_dir}", "-d", name]
    try:
        subprocess.run(
            [*cmd, "-i", "base", "--stop-after-init", "--without-demo=all", "--log-level=warn"],
            check=True,
            capture_output=True,
            timeout=600,
        )
        yield {"name": name, "data_dir": data_dir, "odoo_src": odoo_src, "odoo_rc": odoo_rc}
    finally:
        for leftover in list_databases(name):
            drop_database(leftover)


def odoo_db_service(database: dict[str, Any], action: str, name: str, path: Path, data_dir: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", ODOO_SCRIPT, action, database["odoo_rc"], str(data_dir), name, str(path)],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": database["odoo_src"]},
    )


def odoo_helper(tmp_path: Path, database: dict[str, Any]) -> list[str]:
    config = write_config(
        tmp_path / "odoo-rollback.toml",
        {
            "database": {"name": database["name"], **PG},
            "filestore": {"path": str(database["data_dir"] / "filestore" / database["name"])},
            "storage": {"path": str(tmp_path / "storage")},
            "counts": {"tables": ["res_partner", "ir_attachment"]},
            "neutralize": {"addons_path": [f"{database['odoo_src']}/odoo/addons", f"{database['odoo_src']}/addons"]},
        },
    )
    return [sys.executable, "-m", "odoo_rollback.cli", "--config", str(config), "--json"]


def rows(name: str, table: str) -> int:
    conn = pg_connect(name)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_odoo_restores_the_exported_zip_with_its_own_restore_db(odoo_database: dict[str, Any], tmp_path: Path) -> None:
    helper = odoo_helper(tmp_path, odoo_database)
    snap = json.loads(subprocess.run([*helper, "snapshot"], check=True, capture_output=True, text=True).stdout)
    target = tmp_path / "odoo.zip"
    subprocess.run([*helper[:-1], "export", snap["id"], "--format", "odoo-zip", str(target)], check=True)

    restored = f"{odoo_database['name']}_odoo"
    data_dir = tmp_path / "restored-data"
    odoo_db_service(odoo_database, "restore", restored, target, data_dir)

    assert rows(restored, "res_partner") == snap["counts"]["res_partner"]
    original = odoo_database["data_dir"] / "filestore" / odoo_database["name"]
    expected = sorted(str(p.relative_to(original)) for p in original.rglob("*") if p.is_file())
    copied = data_dir / "filestore" / restored
    assert expected and sorted(str(p.relative_to(copied)) for p in copied.rglob("*") if p.is_file()) == expected


def test_a_zip_from_odoo_dump_db_is_imported_and_drilled(odoo_database: dict[str, Any], tmp_path: Path) -> None:
    helper = odoo_helper(tmp_path, odoo_database)
    target = tmp_path / "from-odoo.zip"
    odoo_db_service(odoo_database, "dump", odoo_database["name"], target, odoo_database["data_dir"])

    result = subprocess.run([*helper, "import", str(target)], check=True, capture_output=True, text=True)
    imported = json.loads(result.stdout)
    assert imported["verified_at"] and imported["notes"] == []
    assert imported["counts"]["res_partner"] == rows(odoo_database["name"], "res_partner")
    assert imported["modules"]["base"].startswith("16.0.")
    drill = json.loads(subprocess.run([*helper, "drill", imported["id"]], check=True, capture_output=True).stdout)
    assert drill["ok"] is True


def test_copy_neutralizes_like_odoo_and_drills_neutralize_their_scratch(
    odoo_database: dict[str, Any], tmp_path: Path
) -> None:
    helper = odoo_helper(tmp_path, odoo_database)
    snap = json.loads(subprocess.run([*helper, "snapshot"], check=True, capture_output=True, text=True).stdout)
    name = f"{odoo_database['name']}_staging"
    copied = json.loads(
        subprocess.run(
            [*helper, "copy", snap["id"], "--to", name, "--neutralize"], check=True, capture_output=True
        ).stdout
    )
    assert "base" in copied["neutralize_modules"]
    conn = pg_connect(name)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT value FROM ir_config_parameter WHERE key = 'database.is_neutralized'")
            assert cur.fetchone() == ("true",)
            cur.execute(
                "SELECT count(*) FROM ir_cron c JOIN ir_model_data d ON d.res_id = c.id AND d.model = 'ir.cron' "
                "WHERE c.active AND d.name <> 'autovacuum_job'"
            )
            assert cur.fetchone()[0] == 0  # only the autovacuum runs, as Odoo leaves it
            cur.execute("SELECT count(*) FROM ir_mail_server WHERE active AND smtp_host = 'invalid'")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()
    # The live database is untouched.
    assert rows(odoo_database["name"], "ir_config_parameter WHERE key = 'database.is_neutralized'") == 0
    original = odoo_database["data_dir"] / "filestore" / odoo_database["name"]
    copy_files = sorted(p.name for p in Path(copied["filestore"]).rglob("*") if p.is_file())
    assert copy_files and copy_files == sorted(p.name for p in original.rglob("*") if p.is_file())

    again = subprocess.run([*helper, "copy", snap["id"], "--to", name], check=False, capture_output=True, text=True)
    assert again.returncode == 3 and "already exists" in again.stderr

    drill = subprocess.run([*helper, "drill", snap["id"]], check=True, capture_output=True, text=True)
    operation = json.loads(drill.stdout)["id"]
    events = json.loads(subprocess.run([*helper, "journal"], check=True, capture_output=True).stdout)["events"]
    neutralized = [e for e in events if e["operation_id"] == operation and e["step"] == "neutralize"]
    assert neutralized and "base" in neutralized[0]["data"]["modules"]


def test_copy_beside_the_live_database_and_its_refusals(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "manual")
    helper_env.db.execute("UPDATE res_partner SET name = 'changed after the snapshot'")
    name = f"{helper_env.db.name}__copy"
    copied = helper_env.run_json("copy", snap["id"], "--to", name)
    assert database_counts(name) == {"account_move": 200, "res_partner": 50}
    changed = pg_connect(name)
    try:
        with changed.cursor() as cur:
            cur.execute("SELECT count(*) FROM res_partner WHERE name LIKE 'changed%'")
            assert cur.fetchone()[0] == 0
    finally:
        changed.close()
    assert Path(copied["filestore"]) == helper_env.filestore.parent / name
    assert len([p for p in Path(copied["filestore"]).rglob("*") if p.is_file()]) == 30

    live = helper_env.run("copy", snap["id"], "--to", helper_env.db.name)
    assert live.returncode == 2 and "is the live database" in live.stderr
    neutral = helper_env.run("copy", snap["id"], "--to", f"{helper_env.db.name}__other", "--neutralize")
    assert neutral.returncode == 2 and "[neutralize] addons_path" in neutral.stderr
    bad = helper_env.run("copy", snap["id"], "--to", "no spaces; please")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert list_databases(helper_env.db.name) == sorted([helper_env.db.name, name])
