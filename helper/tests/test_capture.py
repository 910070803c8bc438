"""Exact change capture on a real PostgreSQL (wal_level = logical): the snapshot's replication slot,
its life (superseded, pruned, dropped past the WAL ceiling), and the decoder of its change stream."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import HelperEnv, pg_connect, tail_slots
from odoo_rollback.config import load_config
from odoo_rollback.decoding import parse_change
from odoo_rollback.lost_rows import decode_slot, peek_lines
from odoo_rollback.read_ahead import SlotReader, chained, tail_intact


def helper_slots(database: str) -> list[str]:
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s ORDER BY 1", (database,))
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def slot_created(name: str) -> bool:
    """The slot's creation has returned (while it runs, the slot is listed already, held by its creator)."""
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM pg_replication_slots"
                " WHERE slot_name = %s AND NOT active AND confirmed_flush_lsn IS NOT NULL",
                (name,),
            )
            return cur.fetchone() is not None
    finally:
        conn.close()


def manifest_of(snapshot: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(snapshot["path"]) / "manifest.json").read_text())


@pytest.fixture(autouse=True)
def patient_slot(helper_env: HelperEnv) -> None:
    """The tests' server is shared: a slot waits for every transaction running on it."""
    helper_env.write(capture={"slot_wait_seconds": 600})


def test_a_snapshot_opens_a_slot_that_its_successor_and_prune_close(helper_env: HelperEnv) -> None:
    first = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    assert first["capture"]["mode"] == "exact"
    assert helper_slots(helper_env.db.name) == [first["capture"]["slot"]]
    assert manifest_of(first)["capture"]["txid_snapshot"]  # the fallback is always recorded too

    daily = helper_env.run_json("snapshot", "--kind", "manual")
    second = helper_env.run_json("snapshot", "--kind", "pre_deploy")

    # A newer snapshot of the same kind supersedes the older one's slot; other kinds keep theirs.
    assert helper_slots(helper_env.db.name) == sorted([daily["capture"]["slot"], second["capture"]["slot"]])
    helper_env.run("prune", "--keep", "1", check=True)
    helper_env.run_json("snapshot", "--kind", "manual")
    removed = helper_env.run_json("prune", "--keep", "1")["removed"]
    assert daily["id"] in removed
    assert daily["capture"]["slot"] not in helper_slots(helper_env.db.name)


def test_fallback_by_configuration_takes_no_slot(helper_env: HelperEnv) -> None:
    helper_env.write(capture={"mode": "fallback"})
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    assert snap["capture"] == {"mode": "fallback", "slot": None, "reason": 'capture.mode = "fallback"'}
    assert helper_slots(helper_env.db.name) == []


def test_health_reports_retained_wal_and_drops_a_slot_past_the_ceiling(helper_env: HelperEnv) -> None:
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    checks = {c["name"]: c for c in helper_env.run_json("health")["checks"]}
    assert checks["capture"]["ok"] is True and snap["capture"]["slot"] in checks["capture"]["detail"]

    helper_env.write(capture={"max_retained_wal_mb": 1})
    helper_env.db.execute("INSERT INTO res_partner (name) SELECT repeat('x', 500) FROM generate_series(1, 8000)")
    result = helper_env.run("health", "--json")

    check = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "capture")
    assert "WARNING: dropped " + snap["capture"]["slot"] in check["detail"]
    assert helper_slots(helper_env.db.name) == []
    # The snapshot is still restorable; what it would lose is then found by the fallback, which says why.
    plan = helper_env.run_json("rollback")
    assert plan["lost_rows_mode"] == "fallback"
    # The snapshot's own keys (recorded with a slot too) tell the inserts from updates.
    assert plan["lost_changes"]["res_partner"] == {"inserted": 8000}
    assert any("is gone" in limit for limit in plan["lost_rows_limits"])


def test_decoder_reads_quotes_nulls_untouched_large_values_and_key_changes() -> None:
    insert = parse_change(
        "table public.res_partner: INSERT: id[integer]:7 name[character varying]:'O''Neil, Ana\nline 2' "
        "email[character varying]:null active[boolean]:true amount[numeric]:12.50 \"Odd Col\"[text]:'a b'"
    )
    assert insert is not None and insert.tables == ("res_partner",) and insert.action == "INSERT"
    assert insert.new == {
        "id": 7,
        "name": "O'Neil, Ana\nline 2",
        "email": None,
        "active": True,
        "amount": "12.50",
        "Odd Col": "a b",
    }
    update = parse_change(
        "table public.t: UPDATE: old-key: id[integer]:3 new-tuple: id[integer]:4 doc[text]:unchanged-toast-datum"
    )
    assert update is not None and update.old == {"id": 3} and update.new == {"id": 4}
    delete = parse_change('table sales."Order": DELETE: (no-tuple-data)')
    assert delete is not None and delete.tables == ("sales.Order",) and delete.old is None
    truncate = parse_change("table public.a, public.b: TRUNCATE: (no-flags)")
    assert truncate is not None and truncate.tables == ("a", "b") and truncate.action == "TRUNCATE"
    assert parse_change("BEGIN") is None and parse_change("COMMIT") is None


def test_a_reading_split_at_a_tail_slot_gives_every_change_once_in_order(helper_env: HelperEnv, tmp_path: Path) -> None:
    """The read-ahead's promise, against a writer committing as fast as it can: the snapshot's slot
    read up to the tail slot's starting point, then the tail slot, is the snapshot's slot read whole."""
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy")
    slot = snap["capture"]["slot"]
    cfg = load_config(helper_env.config_path).database
    folder = tmp_path / "read-ahead"
    folder.mkdir()
    stop = threading.Event()

    def write() -> None:
        conn = pg_connect(helper_env.db.name)
        with conn.cursor() as cur:
            n = 0
            while not stop.is_set():
                n += 1
                cur.execute("INSERT INTO res_partner (name) VALUES (%s)", (f"fast {n}",))
                if n % 3 == 0:
                    cur.execute("UPDATE res_partner SET name = name || '!' WHERE name = %s", (f"fast {n - 1}",))
        conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    reader = pg_connect(helper_env.db.name)
    try:
        time.sleep(0.3)
        for _ in range(3):
            tail = SlotReader(cfg, folder, slot)
            tail.begin(helper_env.db.name)
            # Awaited as the restore does after its checks, which give the creation time to finish.
            deadline = time.monotonic() + 30
            while not slot_created(tail.tail_slot) and time.monotonic() < deadline:
                time.sleep(0.01)
            ahead, why = tail.result()
            assert ahead is not None, why
            time.sleep(0.3)  # the writer goes on past the split
            with reader.cursor() as cur:
                cur.execute("SELECT pg_current_wal_lsn()::text")
                upto = cur.fetchone()[0]
            whole = list(decode_slot(reader, slot, upto))
            assert tail_intact(reader, ahead)
            split = list(chained(ahead, decode_slot(reader, ahead.tail_slot, upto)))
            # The same name made again later is another slot: the split would miss what came between.
            with reader.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot(%s)", (ahead.tail_slot,))
                cur.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (ahead.tail_slot,))
            assert not tail_intact(reader, ahead)
            tail.discard()
            assert 0 < ahead.count < len(whole)
            assert split == whole
    finally:
        stop.set()
        writer.join()
        reader.close()
    assert not tail_slots() and not list(folder.iterdir())


def test_a_second_reading_of_a_slot_waits_for_the_first_instead_of_failing(helper_env: HelperEnv) -> None:
    """Odoo's preview may read the snapshot's slot while a standby's read-ahead reads it: the server lets
    one session at a time decode a slot, and the second one waits its turn."""
    name = "odoo_rollback_test_busy"
    conn = pg_connect(helper_env.db.name)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (name,))
            cur.execute("CREATE TABLE busy (id int PRIMARY KEY)")
            cur.execute("INSERT INTO busy SELECT generate_series(1, 400000)")

        def hold() -> None:
            other = pg_connect(helper_env.db.name)
            with other.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_logical_slot_peek_changes(%s, NULL, NULL)", (name,))
            other.close()

        holder = threading.Thread(target=hold)
        holder.start()
        deadline = time.monotonic() + 30
        with conn.cursor() as cur:
            while time.monotonic() < deadline:
                cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (name,))
                if cur.fetchone()[0]:
                    break
        try:
            lines = list(peek_lines(conn, name))
        finally:
            holder.join()
        assert sum(line.startswith("table public.busy: INSERT") for line in lines) == 400000
    finally:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_drop_replication_slot(%s)", (name,))
        conn.close()
