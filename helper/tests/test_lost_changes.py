"""Zero silent loss, on a real PostgreSQL, in both capture modes: every change made after the snapshot
is either in the restored database or in the report and its export, never in neither."""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.sql
import pytest
from conftest import PG, HelperEnv, OdooLikeDatabase, list_databases, pg_connect, tail_slots
from odoo_rollback.lost_rows import LostRow, RowSpool

MODES = ["exact", "fallback"]


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest, helper_env: HelperEnv) -> str:
    if request.param == "fallback":
        helper_env.write(capture={"mode": "fallback"})
    else:  # the tests' server is shared: a slot waits for every transaction running on it
        helper_env.write(capture={"slot_wait_seconds": 600})
    return str(request.param)


def names(database: str, pattern: str, table: str = "res_partner") -> list[str]:
    conn = pg_connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT name FROM {table} WHERE name LIKE %s ORDER BY name", (pattern,))
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def export_lines(path: str | None) -> list[dict[str, Any]]:
    assert path, "no export"
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def lost_names(result: dict[str, Any], prefix: str, kind: str = "inserted") -> list[str]:
    return sorted(
        line["after"]["name"]
        for line in export_lines(result["lost_rows_file"])
        if line["kind"] == kind and line["table"] == "res_partner" and line["after"]["name"].startswith(prefix)
    )


def test_a_long_transaction_that_commits_during_the_snapshot_is_never_lost(helper_env: HelperEnv, mode: str) -> None:
    # An import that began before the snapshot: Odoo stamps its rows with the transaction's start,
    # earlier than the snapshot, which is why timestamps never saw them.
    writer = pg_connect(helper_env.db.name)
    writer.autocommit = False
    with writer.cursor() as cur:
        cur.execute("INSERT INTO res_partner (name) SELECT 'long ' || i FROM generate_series(1, 5) i")
    helper_env.write()
    snapshot = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "odoo_rollback.cli",
            "--config",
            str(helper_env.config_path),
            "snapshot",
            "--kind",
            "pre_deploy",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_helper_session(helper_env.db.name)
    time.sleep(1.0)
    writer.commit()
    writer.close()
    out, err = snapshot.communicate(timeout=120)
    assert snapshot.returncode == 0, err
    snap = json.loads(out)

    result = helper_env.run_json("restore", snap["id"], "--yes")

    restored = names(helper_env.db.name, "long %")
    lost = lost_names(result, "long ")
    assert sorted(restored + lost) == [f"long {i}" for i in range(1, 6)]
    assert result["lost_rows_mode"] == mode
    if mode == "exact":
        # The slot waited for the transaction: it is in the dump, restored, and not reported lost.
        assert restored == [f"long {i}" for i in range(1, 6)]
    else:
        # The dump did not see it: reported as lost, inserted.
        assert result["lost_changes"]["res_partner"] == {"inserted": 5}


def test_updates_and_deletes_in_an_untracked_table(helper_env: HelperEnv, mode: str) -> None:
    helper_env.db.execute(
        "CREATE TABLE sale_order (id serial PRIMARY KEY, name varchar, amount numeric);"
        "INSERT INTO sale_order (name, amount) SELECT 'SO' || i, i FROM generate_series(1, 10) i"
    )
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("UPDATE sale_order SET amount = amount + 100 WHERE id <= 3")
    helper_env.db.execute("DELETE FROM sale_order WHERE id IN (9, 10)")

    plan = helper_env.run_json("restore", snap["id"])
    result = helper_env.run_json("restore", snap["id"], "--yes")

    lines = [line for line in export_lines(result["lost_rows_file"]) if line["table"] == "sale_order"]
    if mode == "exact":
        assert plan["lost_changes"]["sale_order"] == {"updated": 3, "deleted": 2}
        assert result["lost_changes"]["sale_order"] == {"updated": 3, "deleted": 2}
        assert sorted(line["key"]["id"] for line in lines if line["kind"] == "deleted") == [9, 10]
        assert sorted(line["after"]["amount"] for line in lines if line["kind"] == "updated") == ["101", "102", "103"]
    else:
        # What the fallback cannot see is said, not hidden.
        assert result["lost_changes"]["sale_order"] == {"written": 3}
        assert any("deletions are seen only in the tracked tables" in t for t in result["lost_rows_limits"])
        assert sorted(line["after"]["amount"] for line in lines) == [101, 102, 103]


def test_ddl_by_the_bad_deployment_a_new_column_and_a_new_table(helper_env: HelperEnv, mode: str) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("ALTER TABLE res_partner ADD COLUMN vat varchar")
    helper_env.db.execute("UPDATE res_partner SET vat = 'CR-3101' WHERE id = 5")
    helper_env.db.execute("CREATE TABLE x_bad_module (id serial PRIMARY KEY, note text)")
    helper_env.db.execute("INSERT INTO x_bad_module (note) VALUES ('one'), ('two')")

    result = helper_env.run_json("restore", snap["id"], "--yes")

    assert {"table": "x_bad_module", "change": "table added"} in result["lost_schema"]
    assert {"table": "res_partner", "change": "column added", "column": "vat"} in result["lost_schema"]
    assert result["lost_changes"]["x_bad_module"] == {"inserted": 2}
    assert result["lost_changes"]["res_partner"] == {"updated": 1}
    (partner,) = [line for line in export_lines(result["lost_rows_file"]) if line["table"] == "res_partner"]
    assert partner["key"] == {"id": 5} and partner["after"]["vat"] == "CR-3101"
    human = helper_env.run("restore", snap["id"]).stdout
    assert "Found by: " in human


ODOO_ROLE = {
    "user": os.environ.get("ROLLBACK_TEST_ODOO_PGUSER", "rollback_odoo"),
    "password": os.environ.get("ROLLBACK_TEST_ODOO_PGPASSWORD", "rollback_odoo"),
}


class StrayWriter:
    """An integration the service backend does not stop: it connects with Odoo's role (not a
    superuser; or *role*) and inserts a partner again and again (every *pause* seconds), and remembers
    the ones whose commit succeeded."""

    def __init__(self, db: OdooLikeDatabase, role: dict[str, Any] | None = None, pause: float = 0.03) -> None:
        db.execute(
            psycopg2.sql.SQL(
                "GRANT INSERT, SELECT ON res_partner TO {0}; GRANT USAGE ON res_partner_id_seq TO {0}"
            ).format(psycopg2.sql.Identifier(ODOO_ROLE["user"]))
        )
        self.database = db.name
        self.role = role or ODOO_ROLE
        self.pause = pause
        self.committed: list[str] = []
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                conn = psycopg2.connect(
                    dbname=self.database,
                    host=PG["host"],
                    port=PG["port"],
                    user=self.role["user"],
                    password=self.role["password"],
                )
                conn.autocommit = True
                try:
                    with conn.cursor() as cur:
                        cur.execute("INSERT INTO res_partner (name) VALUES (%s)", (f"stray {n:05d}",))
                    self.committed.append(f"stray {n:05d}")
                finally:
                    conn.close()
            except psycopg2.Error:
                self.refused += 1
            time.sleep(self.pause)

    def __enter__(self) -> StrayWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def wait_for_helper_session(database: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = pg_connect()
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = 'odoo-rollback'", (database,)
            )
            found = cur.fetchone() is not None
        conn.close()
        if found:
            return
        time.sleep(0.05)
    raise AssertionError("the helper never connected")


@pytest.fixture
def slow_stop(helper_env: HelperEnv, tmp_path: Path) -> Iterator[None]:
    """A service backend whose stop takes a moment, as a real one does: the stray writer keeps
    writing into the live database until the helper closes it."""
    helper_env.write(
        services={
            "backend": "command",
            "stop_command": [sys.executable, "-c", "import time; time.sleep(0.5)"],
            "start_command": [sys.executable, "-c", "pass"],
        }
    )
    yield


def test_a_stray_writer_during_a_restore_loses_nothing(helper_env: HelperEnv, mode: str, slow_stop: None) -> None:
    writer = StrayWriter(helper_env.db)  # its grants are in the snapshot
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    with writer:
        time.sleep(0.3)
        result = helper_env.run_json("restore", snap["id"], "--yes")
        time.sleep(0.3)
    live = names(helper_env.db.name, "stray %")
    lost = lost_names(result, "stray ")
    # Written before the stop: in the replaced database, reported. After the start: in the restored one.
    assert sorted(live + lost) == sorted(writer.committed)
    assert not set(live) & set(lost)
    assert lost and live
    # Nothing reached the replaced database after the stop: what it holds is exactly what was reported.
    assert names(result["kept_as"], "stray %") == lost
    if mode == "exact":
        # The slot was read ahead up to a tail slot's starting point while staging was checked, and
        # only the tail after the stop: the writer's commits fell on both sides, each read once.
        ahead = result["lost_read_ahead"]
        assert ahead["changes_before"] > 0 and ahead["changes_after"] > 0
        assert ahead["changes_before"] + ahead["changes_after"] == result["lost_rows_total"] == len(lost)
        assert not tail_slots()


def test_a_superuser_writing_until_the_swap_loses_nothing(helper_env: HelperEnv) -> None:
    """A superuser (docker's POSTGRES_USER is one) passes the CONNECTION LIMIT 0 a superuser helper
    closes the live database with at the stop, and writes on until the swap's rename ends its
    sessions: those commits are in the replaced database, so they are read from the slot too."""
    helper_env.write(capture={"slot_wait_seconds": 600})
    writer = StrayWriter(helper_env.db, role=PG, pause=0)
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    with writer:
        time.sleep(0.3)
        result = helper_env.run_json("restore", snap["id"], "--yes")
        time.sleep(0.3)
    assert result["lost_rows_mode"] == "exact"
    live = names(helper_env.db.name, "stray %")
    lost = lost_names(result, "stray ")
    kept = names(result["kept_as"], "stray %")
    assert kept == lost, f"{len(set(kept) - set(lost))} rows of the replaced database missing from the export"
    assert sorted(live + lost) == sorted(writer.committed)
    # The slot was read up to the position right after the rename, journaled for a resume.
    operation = next(o for o in helper_env.run_json("journal")["operations"] if o["kind"] == "restore")
    assert operation["data"]["capture_stop"]["swapped_lsn"]


def test_a_transaction_holding_the_read_ahead_back_delays_nothing(helper_env: HelperEnv) -> None:
    helper_env.write(capture={"slot_wait_seconds": 600})
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 5) i")
    if helper_env.run_json("restore", snap["id"])["lost_rows_mode"] != "exact":
        pytest.skip("the server gives no replication slot: nothing to read ahead")
    # A transaction with a transaction id, on another database, open during the whole restore: a new
    # slot waits for it to end, so the tail slot cannot be had before the stop.
    holder = pg_connect()
    try:
        with holder.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT pg_current_xact_id()")
        started = time.monotonic()
        result = helper_env.run_json("restore", snap["id"], "--yes")
        took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert result["ok"] and result["lost_rows_mode"] == "exact"
    assert result["lost_changes"] == {"res_partner": {"inserted": 5}}
    assert "lost_read_ahead" not in result
    assert not tail_slots()
    notes = [e["message"] for e in helper_env.run_json("journal")["events"] if e["step"] == "check"]
    assert any("no read-ahead" in (note or "") for note in notes), notes
    assert took < 60


def test_a_stray_writer_before_an_undo_loses_nothing(helper_env: HelperEnv, mode: str, slow_stop: None) -> None:
    writer = StrayWriter(helper_env.db)
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    # Nothing answers on this port: the health check fails after the start and the restore is undone,
    # while the stray writer has been writing into the restored database.
    helper_env.write(health={"url": "http://127.0.0.1:9/", "attempts": 4, "interval": 0.5, "timeout": 1})
    with writer:
        time.sleep(0.3)
        failed = helper_env.run("restore", snap["id"], "--yes")
        time.sleep(0.3)
    assert failed.returncode == 4 and "undone" in failed.stderr

    kept = [d for d in list_databases(helper_env.db.name) if "__undone_" in d]
    assert len(kept) == 1, list_databases(helper_env.db.name)
    live = names(helper_env.db.name, "stray %")
    in_restored = names(kept[0], "stray %")
    assert in_restored, "the writer never wrote into the restored database: the test proves nothing"
    assert sorted(live + in_restored) == sorted(writer.committed)
    exported = sorted(
        line["after"]["name"]
        for path in helper_env.storage.glob("restores/*/written_after_start/lost_changes.jsonl")
        for line in export_lines(str(path))
    )
    assert exported == in_restored


def test_the_export_holds_odoo_import_files_and_names_the_accepted_e_invoice_first(
    helper_env: HelperEnv, mode: str
) -> None:
    helper_env.db.execute("CREATE TABLE einvoice_document (id serial PRIMARY KEY, move_id int, state varchar)")
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("INSERT INTO res_partner (name, email) VALUES ('Ana Mora', 'ana@example.com')")
    helper_env.db.execute("UPDATE account_move SET amount_total = 1 WHERE id = 3")
    helper_env.db.execute(
        "INSERT INTO account_move (name, partner_id, amount_total, state) VALUES ('INV/2026/0201', 2, 120.5, 'posted')"
    )
    helper_env.db.execute(
        "INSERT INTO einvoice_document (move_id, state) SELECT id, 'aceptado' FROM account_move "
        "WHERE name = 'INV/2026/0201'"
    )

    result = helper_env.run_json("restore", snap["id"], "--yes")

    # A person re-enters the lost partner with Odoo's own import.
    folder = Path(result["lost_rows_file"]).parent
    with (folder / "res.partner.inserted.csv").open(newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"id": "", "email": "ana@example.com", "name": "Ana Mora"}]
    # Odoo's Lost changes tab reads this from the journal: the invoice the tax authority accepted first.
    operation = next(o for o in helper_env.run_json("journal")["operations"] if o["kind"] == "restore")
    moves = next(m for m in operation["data"]["lost_summary"] if m["model"] == "account.move")
    assert operation["data"]["lost_summary"][0]["model"] == "account.move"
    first = moves["records"][0]
    assert (first["display_name"], first["partner"], first["authority_state"]) == (
        "INV/2026/0201",
        "Partner 2",
        "aceptado",
    )
    assert operation["data"]["lost_export"]["name"] == "lost_changes.zip"


WHOLE_TABLE = 150_000


def test_a_deployment_that_rewrote_a_whole_table_is_exported_in_full(helper_env: HelperEnv, mode: str) -> None:
    # A module update recomputing a stored field on every line, and removing some: the plan and the
    # restore report every one of them, the export holds one line per row, Odoo's summary names a
    # bounded sample of them (the counts are of all).
    helper_env.write(counts={"tables": ["account_move", "res_partner", "account_move_line"]})
    helper_env.db.execute(
        "CREATE TABLE account_move_line (id serial PRIMARY KEY, name varchar, move_id int, debit numeric, "
        "write_date timestamp);"
        "INSERT INTO account_move_line (name, move_id, debit) "
        "SELECT 'Line ' || i, i / 3, i * 1.5 FROM generate_series(1, %(rows)s) i",
        {"rows": WHOLE_TABLE},
    )
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("UPDATE account_move_line SET name = name || ' x', write_date = now()")
    helper_env.db.execute("DELETE FROM account_move_line WHERE id % 10 = 0")
    deleted = WHOLE_TABLE // 10
    updated = WHOLE_TABLE - deleted

    plan = helper_env.run_json("restore", snap["id"])
    assert plan["lost_rows"]["account_move_line"] == WHOLE_TABLE
    result = helper_env.run_json("restore", snap["id"], "--yes")

    assert result["lost_rows"]["account_move_line"] == WHOLE_TABLE
    expected = {"updated": updated, "deleted": deleted}
    assert result["lost_changes"]["account_move_line"] == expected
    counted: dict[str, int] = {}
    ids = set()
    with Path(result["lost_rows_file"]).open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if row["table"] == "account_move_line":
                counted[row["kind"]] = counted.get(row["kind"], 0) + 1
                ids.add(row["key"]["id"])
                if row["kind"] != "deleted":
                    assert row["after"]["name"].endswith(" x")
    assert counted == expected
    assert len(ids) == WHOLE_TABLE  # every row once
    # Odoo's Lost changes tab reads the summary from the journal.
    operation = next(o for o in helper_env.run_json("journal")["operations"] if o["kind"] == "restore")
    summary = {model["table"]: model for model in operation["data"]["lost_summary"]}["account_move_line"]
    assert summary["total"] == WHOLE_TABLE
    assert summary["counts"] == expected
    assert 0 < len(summary["records"]) <= 200


def test_a_spool_of_lost_rows_closes_its_file_whenever_it_is_collected() -> None:
    """Held in a reference cycle (as a run's objects are), the spool is freed by the garbage collector
    at a moment nobody chooses: its temporary file must be closed then, not left to warn (the test
    suite turns an unclosed file into a failure of whichever test is running)."""
    spool = RowSpool([LostRow("res_partner", "inserted", {"id": 1}, {"id": 1, "name": "after"})])
    assert [row.key for row in spool] == [{"id": 1}]
    cycle: list[Any] = [spool]
    cycle.append(cycle)
    del spool, cycle
    gc.collect()

    closed = RowSpool()
    closed.close()
    assert not closed.close.alive


def test_the_files_of_attachments_written_after_the_snapshot_are_exported(helper_env: HelperEnv, mode: str) -> None:
    """An attachment's row is exported; its content is a file of the filestore the restore keeps aside,
    which kept retention drops in time: the export holds a verified copy, in the filestore's layout,
    and names the files it could not copy."""
    helper_env.db.execute(
        "CREATE TABLE ir_attachment (id serial PRIMARY KEY, name varchar, res_model varchar, res_id int,"
        " store_fname varchar, checksum varchar, file_size int, mimetype varchar, db_datas bytea)"
    )
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    stored = {}
    for name, content in (("INV_2026_0201.pdf", b"%PDF-1.4 accepted e-invoice"), ("gone.pdf", b"%PDF-1.4 gone")):
        sha = hashlib.sha1(content).hexdigest()
        (helper_env.filestore / sha[:2]).mkdir(exist_ok=True)
        (helper_env.filestore / sha[:2] / sha).write_bytes(content)
        stored[name] = (f"{sha[:2]}/{sha}", content)
    (helper_env.filestore / stored["gone.pdf"][0]).unlink()  # Odoo's garbage collector, a disk error
    outside = helper_env.filestore.parent / "not_the_filestore.txt"
    outside.write_text("a file outside the filestore")
    for name, fname in (*((n, f) for n, (f, _) in stored.items()), ("odd.txt", "../not_the_filestore.txt")):
        helper_env.db.execute(
            "INSERT INTO ir_attachment (name, res_model, store_fname) VALUES (%s, 'account.move', %s)", (name, fname)
        )
    result = helper_env.run_json("restore", snap["id"], "--yes")
    folder = Path(result["lost_rows_file"]).parent
    fname, content = stored["INV_2026_0201.pdf"]
    assert not (helper_env.filestore / fname).exists()  # the restored filestore is the snapshot's
    assert (folder / "filestore" / fname).read_bytes() == content
    assert sorted(str(p.relative_to(folder)) for p in (folder / "filestore").rglob("*") if p.is_file()) == [
        f"filestore/{fname}"
    ]
    assert result["lost_files"]["files"] == 1 and result["lost_files"]["folder"] == str(folder / "filestore")
    limits = "\n".join(result["lost_rows_limits"])
    assert stored["gone.pdf"][0] in limits and "in neither" in limits
    assert "../not_the_filestore.txt" in limits and "not a filestore path" in limits
    # Two more deploy/rollback cycles and a snapshot's kept retention (keep_last = 2): the kept
    # filestore goes, the export's copy stays.
    for _ in range(2):
        time.sleep(1.1)
        again = helper_env.run_json("snapshot", "--kind", "pre_deploy")
        helper_env.run_json("restore", again["id"], "--yes")
    time.sleep(1.1)
    helper_env.run_json("snapshot", "--kind", "manual")
    assert not [p for p in helper_env.filestore.parent.rglob(fname.split("/")[1]) if "__failed_" in str(p)]
    assert (folder / "filestore" / fname).read_bytes() == content
