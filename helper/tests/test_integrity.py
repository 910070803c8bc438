"""Only verified bytes are ever restored: nothing the manifest does not list may sit in a snapshot.

pg_restore reads a directory-format dump by file names, and for a table's data it prefers a plain
``NNNN.dat`` over the ``NNNN.dat.gz`` that pg_dump wrote and the manifest checksums. A plain file put
beside it (same rows, one name changed) is what these tests plant.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from conftest import HelperEnv, list_databases, pg_connect


def table_data_file(dump: Path, table: str) -> Path:
    """The compressed data file of *table* in a directory-format dump."""
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True).stdout
    line = next(line for line in listing.splitlines() if f" TABLE DATA public {table} " in line)
    return dump / f"{line.split(';')[0]}.dat.gz"


def plant_plain_copy(snapshot_path: Path) -> Path:
    """A plain NNNN.dat beside res_partner's NNNN.dat.gz: the same rows, partner 1 renamed."""
    packed = table_data_file(snapshot_path / "db.dump", "res_partner")
    data = gzip.decompress(packed.read_bytes()).decode()
    assert "\tPartner 1\t" in data
    plain = packed.with_suffix("")
    plain.write_text(data.replace("\tPartner 1\t", "\tTAMPERED\t", 1))
    return plain


def partner_names(dbname: str) -> list[str]:
    conn = pg_connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name FROM res_partner WHERE id = 1")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def test_verify_names_a_plain_dat_beside_the_checksummed_one(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    plain = plant_plain_copy(Path(snap["path"]))

    result = helper_env.run("verify", snap["id"])

    assert result.returncode == 1
    assert f"db.dump/{plain.name}: not in the manifest" in result.stdout
    assert helper_env.run_json("list")[0]["verified_at"] is None


def test_verify_checks_every_entry_of_the_folder(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot")
    path = Path(snap["path"])
    (path / "notes.txt").write_text("left here by someone")
    (path / "db.dump" / "extra").mkdir()
    listed = table_data_file(path / "db.dump", "account_move")
    # The same bytes, but through a link: what the link points at could change after the check.
    moved = path.parent / "elsewhere.dat.gz"
    listed.rename(moved)
    listed.symlink_to(moved)

    result = helper_env.run("verify", snap["id"], "--json")

    assert result.returncode == 1
    assert "notes.txt: not in the manifest" in result.stdout
    assert "db.dump/extra/: a folder the manifest does not list" in result.stdout
    assert f"db.dump/{listed.name}: not a regular file" in result.stdout


def test_drill_and_deep_verify_refuse_a_snapshot_with_an_unlisted_file(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    plant_plain_copy(Path(snap["path"]))

    drill = helper_env.run("drill", snap["id"], "--json")
    deep = helper_env.run("verify", snap["id"], "--deep", "--json")

    assert drill.returncode == 1 and "not in the manifest" in drill.stdout
    assert deep.returncode == 1 and "not in the manifest" in deep.stdout
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    # Nothing of the snapshot's copies is left behind.
    assert not list((helper_env.storage / "snapshots").glob(".partial-*"))
