"""What proves a warm standby before a rollback swaps it in: its filestore's bytes as they were verified,
whatever name they were written through, and its database with nothing attached to it.

A rollback to a snapshot with a ready standby skips staging: the proof is all that stands between bytes
nobody verified and production. Each refusal here is followed by the snapshot's own bytes, staged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import HelperEnv, database_counts, pg_connect
from psycopg2 import sql
from test_standby import files_of, odoo_filestore  # noqa: F401  (fixture)


def steps_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in result["steps"]}


def journal_says(env: HelperEnv, text: str) -> bool:
    return any(text in e["message"] for e in env.run_json("journal")["events"])


def linked_files(standby: dict[str, Any]) -> list[Path]:
    """The standby's attachments that are hard links to the live ones."""
    return sorted(p for p in Path(standby["filestore"]).rglob("*") if p.is_file() and p.stat().st_nlink == 2)


def write_in_place(path: Path) -> None:
    """Other bytes through the file's own inode, its size and mtime put back as they were."""
    st = path.stat()
    with path.open("r+b") as handle:
        handle.write(b"EVIL" * 16)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_a_standby_file_rewritten_with_its_mtime_put_back_is_refused(odoo_filestore: HelperEnv) -> None:  # noqa: F811
    env = odoo_filestore
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby = env.run_json("standby", "build", snap["id"])
    victim = next(p for p in Path(standby["filestore"]).rglob("*") if p.is_file() and p.stat().st_nlink == 1)
    write_in_place(victim)

    result = env.run_json("rollback", "--yes")

    assert not steps_of(result)["staging"].get("skipped")
    assert files_of(env.filestore) == live_files
    assert journal_says(env, "was written after its bytes were verified")


def test_a_live_attachment_written_in_place_does_not_reach_the_standby(odoo_filestore: HelperEnv) -> None:  # noqa: F811
    """The standby's attachments share the live files' inodes: a write into the live one is a write
    into the standby, and refuses it."""
    env = odoo_filestore
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby = env.run_json("standby", "build", snap["id"])
    linked = linked_files(standby)[0]
    write_in_place(env.filestore / linked.relative_to(standby["filestore"]))

    result = env.run_json("rollback", "--yes")

    assert not steps_of(result)["staging"].get("skipped")
    assert files_of(env.filestore) == live_files
    assert journal_says(env, "no standby used: the standby filestore was changed after it was built")


def test_a_live_attachment_written_during_the_stop_is_refused_at_the_last_check(odoo_filestore: HelperEnv) -> None:  # noqa: F811
    env = odoo_filestore
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby = env.run_json("standby", "build", snap["id"])
    live = env.filestore / linked_files(standby)[0].relative_to(standby["filestore"])
    writer = (
        "import os, sys; p = sys.argv[1]; st = os.stat(p); f = open(p, 'r+b'); f.write(b'EVIL' * 16); f.close();"
        " os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))"
    )
    # Proven before the stop; the live attachment written in place by the time the services are stopped.
    env.write(
        services={
            "backend": "command",
            "stop_command": [sys.executable, "-c", writer, str(live)],
            "start_command": ["true"],
        }
    )

    result = env.run_json("rollback", "--yes")

    assert steps_of(result)["staging"].get("skipped") and steps_of(result)["standby_recheck"]["ok"]
    assert files_of(env.filestore) == live_files  # the snapshot's bytes, staged after all
    assert journal_says(env, "refused at the last check, staging instead: the standby filestore was changed")


BUILD_WITH_A_WRITER = """
import sys
from pathlib import Path
import odoo_rollback.standby as standby
from odoo_rollback.cli import main

victim = Path(sys.argv[1])
original = standby.close_and_check

def close_and_check(*args, **kwargs):
    # After the filestore step compared the live file's bytes and linked it, before the close step:
    # the live attachment written in place.
    with victim.open("r+b") as handle:
        handle.write(b"EVIL" * 16)
    return original(*args, **kwargs)

standby.close_and_check = close_and_check
sys.exit(main(sys.argv[2:]))
"""


def test_a_live_attachment_written_while_the_standby_is_built_is_refused(odoo_filestore: HelperEnv) -> None:  # noqa: F811
    env = odoo_filestore
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    victim = next(p for p in env.filestore.rglob("*") if p.is_file() and len(p.name) == 40)
    command = [sys.executable, "-c", BUILD_WITH_A_WRITER, str(victim), "--config", str(env.config_path)]
    built = subprocess.run(
        [*command, "standby", "build", snap["id"], "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # The identity was taken with the bytes: the write shows, and no standby is made of it.
    assert built.returncode != 0, built.stdout
    assert "the standby filestore changed while it was built" in built.stderr
    assert "was written after its bytes were verified" in built.stderr
    assert not [p for p in env.filestore.parent.iterdir() if "__standby_" in p.name]
    rel = str(victim.relative_to(env.filestore))
    result = env.run_json("rollback", "--yes")
    assert not steps_of(result)["staging"].get("skipped")
    assert files_of(env.filestore)[rel] == live_files[rel]


def plant(kind: str, where: Path, elsewhere: Path) -> None:
    elsewhere.mkdir()
    (elsewhere / "planted").write_text("not from the snapshot")
    if kind == "link to a folder":
        where.symlink_to(elsewhere)
    elif kind == "link to a file":
        where.symlink_to(elsewhere / "planted")
    else:
        os.mkfifo(where)


@pytest.mark.parametrize("kind", ["link to a folder", "link to a file", "fifo"])
def test_anything_but_files_and_folders_in_the_standby_filestore_is_refused(
    odoo_filestore: HelperEnv,  # noqa: F811
    tmp_path: Path,
    kind: str,
) -> None:
    env = odoo_filestore
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby = env.run_json("standby", "build", snap["id"])
    bucket = next(p for p in Path(standby["filestore"]).iterdir() if p.is_dir())
    plant(kind, bucket / "zz", tmp_path / "elsewhere")

    result = env.run_json("rollback", "--yes")

    assert not steps_of(result)["staging"].get("skipped")
    assert not (env.filestore / bucket.name / "zz").exists() and not (env.filestore / bucket.name / "zz").is_symlink()
    assert files_of(env.filestore) == live_files
    assert journal_says(env, f"{bucket.name}/zz is neither a file nor a folder")


@pytest.mark.parametrize(
    ("statement", "shown"),
    [
        ("ALTER DATABASE {} SET default_transaction_read_only = on", "default_transaction_read_only=on"),
        ("ALTER ROLE rollback_odoo IN DATABASE {} SET session_replication_role = replica", "replica"),
        ("COMMENT ON DATABASE {} IS 'planted'", "comment: planted"),
    ],
)
def test_a_setting_attached_to_the_standby_is_refused(odoo_filestore: HelperEnv, statement: str, shown: str) -> None:  # noqa: F811
    """ALTER DATABASE ... SET writes pg_db_role_setting, not the database's pg_database row."""
    env = odoo_filestore
    before = database_counts(env.db.name)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby = env.run_json("standby", "build", snap["id"])
    conn = pg_connect()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL(statement).format(sql.Identifier(standby["database"])))
    conn.close()

    result = env.run_json("rollback", "--yes")

    assert not steps_of(result)["staging"].get("skipped")
    assert database_counts(env.db.name) == before
    live = pg_connect(env.db.name)
    with live.cursor() as cur:
        cur.execute("SHOW default_transaction_read_only")
        assert cur.fetchone()[0] == "off"
        cur.execute(
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
            " WHERE d.datname = %s",
            (env.db.name,),
        )
        assert cur.fetchone()[0] == 0
    live.close()
    assert journal_says(env, "database-level settings: ") and journal_says(env, shown)


def test_links_made_and_removed_beside_the_standby_do_not_refuse_it(odoo_filestore: HelperEnv) -> None:  # noqa: F811
    """Odoo's garbage collection deleting a live attachment, or another hard link to one, changes the
    shared inode's ctime and link count as a write would: the bytes are read again, and they hold."""
    env = odoo_filestore
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    standby = env.run_json("standby", "build", snap["id"])
    deleted, relinked = (env.filestore / p.relative_to(standby["filestore"]) for p in linked_files(standby)[:2])
    deleted.unlink()  # as Odoo's _gc_file_store does
    os.link(relinked, env.filestore.parent / "another-link")  # as another copy of the filestore would

    result = env.run_json("rollback", "--yes")

    assert steps_of(result)["staging"].get("skipped")  # the standby was used
    assert files_of(env.filestore) == live_files
    assert not journal_says(env, "no standby used") and not journal_says(env, "refused at the last check")


def test_a_standby_recorded_without_its_proof_is_refused(odoo_filestore: HelperEnv) -> None:  # noqa: F811
    """A record without the settings and the listing (an earlier version's, or one rewritten) proves nothing."""
    env = odoo_filestore
    live_files = files_of(env.filestore)
    snap = env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    env.run_json("standby", "build", snap["id"])
    record_path = env.storage / "standby" / f"{snap['id']}.json"
    record = json.loads(record_path.read_text())
    del record["database_settings"]
    record_path.write_text(json.dumps(record))

    result = env.run_json("rollback", "--yes")

    assert not steps_of(result)["staging"].get("skipped")
    assert files_of(env.filestore) == live_files
    assert journal_says(env, "no standby used: its standby was built by an earlier version")
    assert not list((env.storage / "standby").glob("*.files.json"))  # dropped with it
