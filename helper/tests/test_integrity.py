"""Only verified bytes are ever restored: nothing the manifest does not list may sit in a snapshot.

pg_restore reads a directory-format dump by file names, and for a table's data it prefers a plain
``NNNN.dat`` over the ``NNNN.dat.gz`` that pg_dump wrote and the manifest checksums. A plain file put
beside it (same rows, one name changed) is what these tests plant.
"""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path
from typing import Any

from conftest import HelperEnv, database_counts, list_databases, pg_connect
from test_lock import start, wait_for_event

CHANGED_COUNTS = {"account_move": 180, "res_partner": 57}


def table_data_file(dump: Path, table: str) -> Path:
    """The compressed data file of *table* in a directory-format dump."""
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True).stdout
    line = next(line for line in listing.splitlines() if f" TABLE DATA public {table} " in line)
    return dump / f"{line.split(';')[0]}.dat.gz"


def tampered_partners(snapshot_path: Path) -> tuple[Path, str]:
    """res_partner's data file, and its rows with partner 1 renamed (a change no count notices)."""
    packed = table_data_file(snapshot_path / "db.dump", "res_partner")
    data = gzip.decompress(packed.read_bytes()).decode()
    assert "\tPartner 1\t" in data
    return packed, data.replace("\tPartner 1\t", "\tTAMPERED\t", 1)


def plant_plain_copy(snapshot_path: Path) -> Path:
    """A plain NNNN.dat beside res_partner's NNNN.dat.gz: the same rows, partner 1 renamed."""
    packed, data = tampered_partners(snapshot_path)
    plain = packed.with_suffix("")
    plain.write_text(data)
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


def test_restore_refuses_a_snapshot_with_an_unlisted_file(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    plant_plain_copy(Path(snapshot_then_changes["path"]))

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes")

    assert result.returncode == 3 and "not in the manifest" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    assert list_databases(helper_env.db.name) == [helper_env.db.name]


def test_every_damaged_dump_file_is_named_and_nothing_is_restored(
    helper_env: HelperEnv, snapshot_then_changes: dict[str, Any]
) -> None:
    """The checked copy reads two files at a time: a problem in one thread neither hides another's nor
    lets anything through."""
    snapshot = Path(snapshot_then_changes["path"])
    dump = snapshot / "db.dump"
    partners, moves = table_data_file(dump, "res_partner"), table_data_file(dump, "account_move")
    partners.write_bytes(partners.read_bytes()[:-5])  # truncated
    moves.write_bytes(bytes(b ^ 1 for b in moves.read_bytes()))  # same size, other bytes
    (dump / "toc.dat").unlink()

    result = helper_env.run("restore", snapshot_then_changes["id"], "--yes")

    assert result.returncode == 3 and "failed its checks" in result.stderr
    for name, problem in ((partners.name, "truncated"), (moves.name, "checksum differs"), ("toc.dat", "missing")):
        assert f"db.dump/{name}: " in result.stderr and problem in result.stderr
    assert database_counts(helper_env.db.name) == CHANGED_COUNTS
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    assert not list(helper_env.storage.rglob(".partial-read-*"))  # the checked copy went with the refusal


def snapshot_slow_to_restore(helper_env: HelperEnv) -> dict[str, Any]:
    """A snapshot whose restore, with one job, spends a while on a large table first (pg_restore reads
    the tables' data in name order), and then the deployment's changes."""
    helper_env.db.execute("CREATE TABLE filler AS SELECT g, md5(g::text) AS h FROM generate_series(1, 400000) g")
    helper_env.write(storage={"jobs": 1})
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    helper_env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    (helper_env.filestore / "ff").mkdir()
    (helper_env.filestore / "ff" / "new-attachment").write_bytes(b"written after the snapshot")
    return snap


def test_a_dump_changed_after_the_preflight_is_not_what_is_restored(helper_env: HelperEnv) -> None:
    snap = snapshot_slow_to_restore(helper_env)
    restore = start(helper_env, "restore", snap["id"], "--yes")
    # The preflight has checked every file; pg_restore is on the large table.
    wait_for_event(helper_env.storage, "restore", "staging")
    packed, data = tampered_partners(Path(snap["path"]))
    packed.write_bytes(gzip.compress(data.encode()))
    packed.with_suffix("").write_text(data)

    _, err = restore.communicate(timeout=300)

    assert restore.returncode == 0, err
    # What was restored is what was checked.
    assert partner_names(helper_env.db.name) == ["Partner 1"]


def test_a_filestore_archive_altered_in_place_is_caught_as_tar_reads_it(helper_env: HelperEnv) -> None:
    """The preflight only compares the archive's size: its bytes are hashed as tar reads them, so an
    archive altered at any moment before the extraction (here, deterministically, before the restore
    starts; racing the preflight would test the same hash) never reaches the live filestore."""
    attachment = next(p for p in helper_env.filestore.rglob("*") if p.is_file())
    content = attachment.read_bytes()
    snap = snapshot_slow_to_restore(helper_env)
    archive = Path(snap["path"]) / "filestore.tar"
    offset = archive.read_bytes().index(content)
    with archive.open("r+b") as handle:  # same size, same valid tar: one attachment's bytes differ
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in content[:64]))

    restore = start(helper_env, "restore", snap["id"], "--yes")
    _, err = restore.communicate(timeout=300)

    assert restore.returncode == 4, err
    assert "filestore.tar differs from its checksum" in err and "not touched" in err
    assert (helper_env.filestore / "ff" / "new-attachment").exists()
    assert attachment.read_bytes() == content
    assert not [p for p in helper_env.filestore.parent.iterdir() if "__restore_" in p.name]
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    assert database_counts(helper_env.db.name)["res_partner"] == 57


def test_drill_fails_when_the_filestore_archive_is_damaged(helper_env: HelperEnv) -> None:
    """A drill proves the attachments come back too: a truncated filestore archive fails it."""
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    archive = Path(snap["path"]) / "filestore.tar"
    with archive.open("r+b") as handle:
        handle.truncate(10)  # tar no longer recognises it: "does not look like a tar archive"

    drill = helper_env.run("drill", snap["id"], "--json")

    assert drill.returncode == 1
    problems = json.loads(drill.stdout)["problems"]
    # The damaged file is named, not only tar's complaint about it.
    assert [p for p in problems if "the filestore could not be restored: filestore.tar differs" in p], problems
    assert list_databases(helper_env.db.name) == [helper_env.db.name]
    assert not list((helper_env.storage / "snapshots").glob(".partial-*"))
