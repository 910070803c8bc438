"""What a restore sets back that neither the slot nor the row versions show: every one of them is either
exported or named in the report (lost_rows_limits, lost_schema, lost_sequences), never silent."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import HelperEnv, pg_connect
from odoo_rollback.capture import with_subtransactions
from odoo_rollback.lost_rows import (
    SAVEPOINT_LIMIT,
    UNKNOWN_VALUES_LIMIT,
    UPDATED,
    LostChanges,
    LostRow,
    RowSpool,
    complete_rows,
    savepoint_limits,
    write_import_csvs,
)


def export_lines(path: str | None) -> list[dict[str, Any]]:
    assert path, "no export"
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def rows(database: str, query: str) -> list[tuple[Any, ...]]:
    conn = pg_connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall()
    finally:
        conn.close()


def limits(result: dict[str, Any]) -> str:
    return "\n".join(result["lost_rows_limits"])


@pytest.fixture
def exact(helper_env: HelperEnv) -> None:
    helper_env.write(capture={"slot_wait_seconds": 600})


def set_mode(helper_env: HelperEnv, mode: str) -> None:
    helper_env.write(capture={"mode": "fallback"} if mode == "fallback" else {"slot_wait_seconds": 600})


def test_a_large_value_an_update_left_unchanged_is_read_back_not_blanked(helper_env: HelperEnv, exact: None) -> None:
    # The slot does not send a TOASTed value an UPDATE did not touch: the export reads it back from the
    # replaced database, so the import file never writes an empty value over the restored one.
    helper_env.db.execute(
        "ALTER TABLE res_partner ADD COLUMN comment text;"
        "UPDATE res_partner SET comment = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400))"
        " WHERE id IN (1, 2)"
    )
    original = rows(helper_env.db.name, "SELECT comment FROM res_partner WHERE id = 1")[0][0]
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("UPDATE res_partner SET email = 'new@example.com' WHERE id = 1")  # comment untouched
    helper_env.db.execute("UPDATE res_partner SET comment = 'short note' WHERE id = 2")

    result = helper_env.run_json("restore", snap["id"], "--yes")
    assert result["lost_rows_mode"] == "exact"
    assert rows(helper_env.db.name, "SELECT comment FROM res_partner WHERE id = 1")[0][0] == original
    folder = Path(result["lost_rows_file"]).parent
    with (folder / "res.partner.updated.csv").open(newline="") as handle:
        table = {row[".id"]: row for row in csv.DictReader(handle)}
    assert table["1"]["email"] == "new@example.com"
    assert table["1"]["comment"] == original  # the replaced database's value, not an empty cell
    assert table["2"]["comment"] == "short note"
    exported = export_lines(result["lost_rows_file"])
    lines = {line["key"]["id"]: line for line in exported if line["table"] == "res_partner"}
    assert lines[1]["after"]["comment"] == original
    assert not [name for name in folder.iterdir() if name.name.startswith("res.partner.updated.2")]


def test_an_import_file_never_holds_a_cell_for_an_unknown_value(tmp_path: Path) -> None:
    # Two updated partners, one whose comment is not known (absent from 'after'): a file each, the
    # second without the column, rather than an empty cell an import would write.
    spool = RowSpool(
        [
            LostRow("res_partner", UPDATED, {"id": 1}, {"id": 1, "name": "A", "comment": "kept"}),
            LostRow("res_partner", UPDATED, {"id": 2}, {"id": 2, "name": "B"}),
            LostRow("res_partner", UPDATED, {"id": 3}, {"id": 3, "name": "C", "comment": ""}),
        ]
    )
    files = write_import_csvs(None, LostChanges("exact", spool), tmp_path)
    assert [Path(f).name for f in files] == ["res.partner.updated.csv", "res.partner.updated.2.csv"]
    with Path(files[0]).open(newline="") as handle:
        first = list(csv.DictReader(handle))
    with Path(files[1]).open(newline="") as handle:
        second = list(csv.DictReader(handle))
    assert [(r[".id"], r["comment"]) for r in first] == [("1", "kept"), ("3", "")]
    assert second == [{".id": "2", "name": "B"}]


def test_a_column_type_changed_after_the_snapshot_is_in_lost_schema(helper_env: HelperEnv, exact: None) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("ALTER TABLE res_partner ALTER COLUMN email TYPE text")
    helper_env.db.execute("ALTER TABLE account_move ALTER COLUMN amount_total TYPE numeric(12, 0)")
    preview = helper_env.run_json("restore", snap["id"])
    result = helper_env.run_json("restore", snap["id"], "--yes")
    for report in (preview, result):
        changed = {(c["table"], c["column"]): (c["from"], c["to"]) for c in report["lost_schema"]}
        assert changed[("res_partner", "email")] == ("character varying", "text")
        assert changed[("account_move", "amount_total")][1] == "numeric(12,0)"


def test_a_sequence_set_back_by_the_restore_is_reported(helper_env: HelperEnv, exact: None) -> None:
    helper_env.db.execute("CREATE SEQUENCE ir_sequence_001; SELECT nextval('ir_sequence_001')")
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("SELECT nextval('ir_sequence_001') FROM generate_series(1, 41)")
    helper_env.db.execute("CREATE SEQUENCE ir_sequence_002; SELECT nextval('ir_sequence_002')")
    result = helper_env.run_json("restore", snap["id"], "--yes")
    assert rows(result["kept_as"], "SELECT last_value FROM ir_sequence_001")[0][0] == 42
    assert rows(helper_env.db.name, "SELECT last_value FROM ir_sequence_001")[0][0] == 1
    sequences = {s["sequence"]: (s["replaced"], s["restored"]) for s in result["lost_sequences"]}
    assert sequences["ir_sequence_001"] == (42, 1)
    assert sequences["ir_sequence_002"] == (1, None)  # created after the snapshot: gone
    assert "ir_sequence_001 42 -> 1" in limits(result)


def test_unlogged_table_changes_are_exported_in_exact_mode(helper_env: HelperEnv, exact: None) -> None:
    # Logical decoding skips unlogged tables; pg_dump dumps their rows and the restore puts them back.
    helper_env.db.execute(
        "CREATE UNLOGGED TABLE x_queue (id serial PRIMARY KEY, note text);"
        "INSERT INTO x_queue (note) VALUES ('old 1'), ('old 2'), ('old 3')"
    )
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    assert snap["capture"]["mode"] == "exact"
    helper_env.db.execute("INSERT INTO x_queue (note) VALUES ('new after snapshot')")
    helper_env.db.execute("UPDATE x_queue SET note = 'changed' WHERE id = 1")
    helper_env.db.execute("DELETE FROM x_queue WHERE id = 2")

    result = helper_env.run_json("restore", snap["id"], "--yes")
    assert rows(helper_env.db.name, "SELECT note FROM x_queue ORDER BY id") == [("old 1",), ("old 2",), ("old 3",)]
    exported = export_lines(result["lost_rows_file"])
    notes = sorted(line["after"]["note"] for line in exported if line["table"] == "x_queue")
    assert notes == ["changed", "new after snapshot"]
    assert "unlogged tables are not in the change stream (x_queue)" in limits(result)  # its deletions: named


@pytest.mark.parametrize("mode", ["exact", "fallback"])
def test_large_objects_are_named(helper_env: HelperEnv, mode: str) -> None:
    set_mode(helper_env, mode)
    (before,) = helper_env.db.execute("SELECT lo_from_bytea(0, 'snapshot content'::bytea)")[0]
    (gone,) = helper_env.db.execute("SELECT lo_from_bytea(0, 'removed after the snapshot'::bytea)")[0]
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    (new_oid,) = helper_env.db.execute("SELECT lo_from_bytea(0, 'written after the snapshot'::bytea)")[0]
    helper_env.db.execute(f"SELECT lo_put({before}, 0, 'CHANGED!'::bytea), lo_unlink({gone})")

    preview = helper_env.run_json("restore", snap["id"])
    assert "large objects (pg_largeobject) are in no change stream: 2 in this database" in limits(preview)
    result = helper_env.run_json("restore", snap["id"], "--yes")
    assert result["lost_rows_mode"] == mode
    assert not rows(helper_env.db.name, f"SELECT 1 FROM pg_largeobject_metadata WHERE oid = {new_oid}")
    said = limits(result)
    assert "large objects (pg_largeobject) are in no change stream: 2 in this database" in said
    assert f"large objects created after the snapshot, which the restore removes: 1 ({new_oid})" in said
    assert f"large objects removed after the snapshot, which the restore brings back: 1 ({gone})" in said


def test_fallback_names_a_tracked_table_without_a_primary_key(helper_env: HelperEnv) -> None:
    helper_env.write(capture={"mode": "fallback"})
    helper_env.db.execute(
        "CREATE TABLE einvoice_document (id serial, move_id int, state varchar);"
        "INSERT INTO einvoice_document (move_id, state) SELECT i, 'aceptado' FROM generate_series(1, 5) i"
    )
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    helper_env.db.execute("DELETE FROM einvoice_document WHERE move_id IN (1, 2)")
    result = helper_env.run_json("restore", snap["id"], "--yes")
    assert rows(result["kept_as"], "SELECT count(*) FROM einvoice_document")[0][0] == 3
    assert "tracked tables without a primary key at the snapshot (einvoice_document)" in limits(result)


@pytest.mark.parametrize("how", ["configured", "slot_wait"])
def test_rows_written_in_a_savepoint_of_a_transaction_running_at_the_snapshot(helper_env: HelperEnv, how: str) -> None:
    # A transaction running at the snapshot writes inside a savepoint (a subtransaction, as Odoo's import
    # and cr.savepoint() do) and commits after it: pg_current_snapshot() lists only its top-level id.
    if how == "configured":
        helper_env.write(capture={"mode": "fallback"})
    else:  # the default auto mode: the long transaction itself makes the slot wait too long
        helper_env.write(capture={"slot_wait_seconds": 1})
    writer = pg_connect(helper_env.db.name)
    writer.autocommit = False
    with writer.cursor() as cur:
        cur.execute("INSERT INTO res_partner (name) VALUES ('import top')")
        cur.execute("SAVEPOINT import_batch")
        cur.execute("INSERT INTO res_partner (name) SELECT 'import sub ' || i FROM generate_series(1, 5) i")
        cur.execute("UPDATE account_move SET amount_total = 999 WHERE id = 7")
        cur.execute("RELEASE SAVEPOINT import_batch")
    rows("postgres", "SELECT pg_current_xact_id()")  # another commit: the snapshot's xmax passes the savepoint
    try:
        snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    finally:
        writer.commit()
        writer.close()
    assert snap["capture"]["mode"] == "fallback", snap["capture"]

    result = helper_env.run_json("restore", snap["id"], "--yes")
    replaced = [
        r[0] for r in rows(result["kept_as"], "SELECT name FROM res_partner WHERE name LIKE 'import%' ORDER BY 1")
    ]
    restored = [r[0] for r in rows(helper_env.db.name, "SELECT name FROM res_partner WHERE name LIKE 'import%'")]
    exported = export_lines(result["lost_rows_file"])
    lost = sorted(
        line["after"]["name"]
        for line in exported
        if line["table"] == "res_partner" and line["after"]["name"].startswith("import")
    )
    assert not restored
    assert lost == replaced == [*(f"import sub {i}" for i in range(1, 6)), "import top"]
    moves = [line for line in exported if line["table"] == "account_move"]
    assert [(m["kind"], m["after"]["amount_total"]) for m in moves] == [("updated", 999)]


def test_savepoint_ids_join_the_snapshot_s_running_list_in_order() -> None:
    snapshot = "100:120:103,111"
    assert with_subtransactions(snapshot, []) == (snapshot, [])
    # Sorted (pg_snapshot's input wants it), without the ones outside [xmin, xmax) or already listed.
    assert with_subtransactions(snapshot, [115, 99, 104, 111, 120]) == ("100:120:103,104,111,115", [104, 115])


def test_savepoints_not_read_at_the_snapshot_are_named() -> None:
    # A snapshot taken before the helper read them, a span too wide to read, a transaction that ended
    # before they were read: named; none running at the snapshot: nothing to say.
    assert savepoint_limits({"txid_snapshot": "100:120:103,111"}) == [SAVEPOINT_LIMIT.format(ids="103, 111")]
    unchecked = {"txid_snapshot": "100:120:103", "subxids": [], "subxids_unchecked": True, "ended_unread": []}
    assert savepoint_limits(unchecked) == [SAVEPOINT_LIMIT.format(ids="103")]
    ended = {"txid_snapshot": "100:120:103,104", "subxids": [104], "ended_unread": [103]}
    assert savepoint_limits(ended) == [SAVEPOINT_LIMIT.format(ids="103")]
    assert savepoint_limits({"txid_snapshot": "120:120:", "subxids": [], "ended_unread": []}) == []


def test_a_spool_read_again_after_a_reading_left_early() -> None:
    spool = RowSpool([LostRow("res_partner", UPDATED, {"id": i}, {"id": i}) for i in range(3)])
    assert any(row.key == {"id": 0} for row in spool)  # leaves the reading at its first row
    spool.add(LostRow("res_partner", UPDATED, {"id": 3}, {"id": 3}))
    assert [row.key for row in spool] == [{"id": i} for i in range(4)]


def test_a_value_that_cannot_be_read_back_is_left_out_and_named(helper_env: HelperEnv, tmp_path: Path) -> None:
    # Rows missing a column (as the slot gives them): read back by key; a key no row has, and one the
    # key's type refuses, leave the value unknown: out of 'after' and of the import file, and named.
    conn = pg_connect(helper_env.db.name)
    try:
        (email,) = rows(helper_env.db.name, "SELECT email FROM res_partner WHERE id = 1")[0]
        spool = RowSpool(
            [
                LostRow("res_partner", UPDATED, {"id": 1}, {"id": 1, "name": "one"}),
                LostRow("res_partner", UPDATED, {"id": 99999}, {"id": 99999, "name": "gone"}),
                LostRow("res_partner", UPDATED, {"id": "x"}, {"id": "x", "name": "bad key"}),
            ]
        )
        columns = {"res_partner": ["id", "name", "email"]}
        done, said = complete_rows(conn, spool, columns)
        read = [row.after or {} for row in done]
        assert read[0]["email"] == email and read[0]["name"] == "one"  # the slot's value kept, the rest read
        assert read[1:] == [{"id": 99999, "name": "gone"}, {"id": "x", "name": "bad key"}]
        assert said == [UNKNOWN_VALUES_LIMIT.format(count=2, table="res_partner")]
        files = write_import_csvs(conn, LostChanges("exact", done), tmp_path)
        with Path(files[1]).open(newline="") as handle:
            assert list(csv.DictReader(handle)) == [{".id": "99999", "name": "gone"}, {".id": "x", "name": "bad key"}]
    finally:
        conn.close()
