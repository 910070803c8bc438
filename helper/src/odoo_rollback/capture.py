"""Where the changes made after a snapshot are captured from.

**Exact mode.** The snapshot creates a logical replication slot on a replication connection with
``EXPORT_SNAPSHOT``: PostgreSQL hands back the name of a snapshot that sees exactly the transactions
committed before the slot's first change. ``pg_dump --snapshot`` dumps that snapshot while the
connection stays open and idle, so the dump and the slot's change stream meet with neither a gap nor an
overlap, whatever commits in between (a long cron, an import, the deployment's own update).

**Fallback.** Without logical decoding (``wal_level`` below ``logical``, no free slot, no REPLICATION
privilege, a transaction that would make the slot wait too long, or ``[capture] mode = "fallback"``) the
manifest keeps the dump's ``pg_current_snapshot()``: a row whose ``xmin`` that snapshot does not see was
written after it (see :mod:`odoo_rollback.lost_rows`).

A slot keeps WAL until it is dropped. It belongs to its snapshot and goes with it: pruned, superseded by
a newer snapshot of the same kind, exported after a restore, or past ``max_retained_wal_mb``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extras
from psycopg2 import sql

from .config import Config, DatabaseConfig
from .db import connect, maintenance
from .manifest import Manifest

SLOT_PREFIX = "odoo_rollback_"
PLUGIN = "test_decoding"
EXACT = "exact"
FALLBACK = "fallback"


def slot_name(snapshot_id: str) -> str:
    """A slot name (lower case letters, digits and '_', at most 63) that names its snapshot."""
    return (SLOT_PREFIX + re.sub(r"[^a-z0-9_]", "_", snapshot_id.lower()))[:63]


# The read-ahead's second slots (read_ahead.py): a restore's, for its own run, and a warm standby's,
# kept with the standby.
TAIL_SUFFIX = "__tail"
STANDBY_TAIL_SUFFIX = "__standby"


def tail_slot_name(snapshot_slot: str, suffix: str = TAIL_SUFFIX) -> str:
    """A read-ahead slot of *snapshot_slot* (at most 63 characters, like every slot name)."""
    return snapshot_slot[: 63 - len(suffix)] + suffix


@dataclass(frozen=True)
class SlotStart:
    slot: str
    snapshot_name: str  # for pg_dump --snapshot and SET TRANSACTION SNAPSHOT
    consistent_lsn: str


def _create_slot(cfg: Config, name: str) -> tuple[Any, SlotStart | None, str | None]:
    """Open a replication connection and create the slot; (connection, start, why not)."""
    params = cfg.database.connect_params()
    try:
        conn = psycopg2.connect(connection_factory=psycopg2.extras.LogicalReplicationConnection, **params)
    except psycopg2.Error as exc:
        return None, None, f"no replication connection: {str(exc).strip().splitlines()[0]}"
    outcome: dict[str, Any] = {}

    def create() -> None:
        try:
            with conn.cursor() as cur:
                # Plain SQL would not return the exported snapshot: this is the replication command.
                cur.execute(
                    sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL {} EXPORT_SNAPSHOT").format(
                        sql.Identifier(name), sql.Identifier(PLUGIN)
                    )
                )
                outcome["row"] = cur.fetchone()
        except psycopg2.Error as exc:
            outcome["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__

    # The slot waits for every transaction running now to end; an import of an hour must not hold
    # the snapshot for an hour, so past the configured wait the creation is cancelled.
    worker = threading.Thread(target=create, daemon=True)
    worker.start()
    worker.join(cfg.capture.slot_wait_seconds)
    if worker.is_alive():
        conn.cancel()
        worker.join(30)
        conn.close()
        drop_slot(cfg.database, name)
        return None, None, f"transactions still running after {cfg.capture.slot_wait_seconds:g} s held the slot back"
    if "error" in outcome:
        conn.close()
        return None, None, outcome["error"]
    slot, lsn, snapshot_name, _plugin = outcome["row"]
    return conn, SlotStart(slot, snapshot_name, lsn), None


def logical_decoding_available(cfg: Config) -> str | None:
    """None when a slot can be tried, else why not."""
    if cfg.capture.mode == FALLBACK:
        return 'capture.mode = "fallback"'
    with connect(cfg.database) as conn, conn.cursor() as cur:
        cur.execute("SHOW wal_level")
        level = cur.fetchone()[0]
    if level != "logical":
        return f"wal_level is {level}, not logical"
    return None


@contextmanager
def slot_for_snapshot(cfg: Config, snapshot_id: str) -> Iterator[tuple[SlotStart | None, str | None]]:
    """A new slot and its exported snapshot, valid inside the block; (None, why) when there is none.

    The replication connection is kept open and idle for the whole block: the exported snapshot lives
    as long as it does. On an exception the slot is dropped again (a failed snapshot keeps no WAL).
    """
    why = logical_decoding_available(cfg)
    if why:
        yield None, why
        return
    name = slot_name(snapshot_id)
    conn, start, why = _create_slot(cfg, name)
    if start is None:
        yield None, why
        return
    try:
        yield start, None
    except BaseException:
        conn.close()
        drop_slot(cfg.database, name)
        raise
    conn.close()


# The widest span of transaction ids the snapshot looks through for savepoints of the transactions
# running at it (about a quarter of a second a million): a transaction left open for days on a busy
# server spans more, and the report then says that rows it wrote inside a savepoint may be missed.
SUBXID_SPAN = 5_000_000
RUNNING_SUBXIDS = """
SELECT x FROM generate_series(%(xmin)s::bigint, %(xmax)s::bigint - 1) x
WHERE NOT x = ANY(%(xip)s::bigint[]) AND pg_xact_status(x::text::xid8) = 'in progress'
"""


def read_capture_point(conn: Any) -> dict[str, Any]:
    """What the fallback needs, read inside the snapshot's own transaction.

    ``pg_current_snapshot()`` lists only the top-level transactions running at the snapshot, not their
    subtransactions (a savepoint, as Odoo's import and ``cr.savepoint()`` make): a row written inside one
    has an id below the snapshot's xmax that is not in the list, and would look older than the snapshot.
    A released savepoint's id is "in progress" until its top-level transaction ends, so the ids between
    the snapshot's xmin and xmax that are still in progress are added to its running list
    (``txid_snapshot``; ``subxids`` says which). A top-level transaction that ended between the snapshot
    and that reading took its savepoints' status with it: ``ended_unread`` names it (and
    ``subxids_unchecked`` a span too wide to read), and the report says that rows it wrote inside a
    savepoint may be missed."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_current_snapshot()::text, d.oid FROM pg_database d WHERE d.datname = current_database()")
        txid_snapshot, oid = cur.fetchone()
        xmin, xmax, running = parse_snapshot(txid_snapshot)
        found: list[int] = []
        checked = xmax - xmin <= SUBXID_SPAN
        if running and checked:
            cur.execute(RUNNING_SUBXIDS, {"xmin": xmin, "xmax": xmax, "xip": sorted(running)})
            found = [int(x) for (x,) in cur.fetchall()]
        still: set[int] = set()
        if running:
            cur.execute(
                "SELECT x FROM unnest(%s::bigint[]) x WHERE pg_xact_status(x::text::xid8) = 'in progress'",
                (sorted(running),),
            )
            still = {int(x) for (x,) in cur.fetchall()}
    snapshot, added = with_subtransactions(txid_snapshot, found)
    return {
        "txid_snapshot": snapshot,
        "subxids": added,
        "subxids_unchecked": bool(running) and not checked,
        "ended_unread": sorted(running - still),
        "database_oid": int(oid),
    }


def parse_snapshot(txid_snapshot: str) -> tuple[int, int, set[int]]:
    """``xmin:xmax:xip,...`` as (xmin, xmax, {running ids})."""
    xmin_text, xmax_text, xip_text = txid_snapshot.split(":")
    return int(xmin_text), int(xmax_text), {int(x) for x in xip_text.split(",") if x}


def with_subtransactions(txid_snapshot: str, subxids: list[int]) -> tuple[str, list[int]]:
    """*txid_snapshot* with the ids *subxids* that lie between its xmin and xmax added to its running
    list (sorted, as pg_snapshot's input wants them); the ids added."""
    xmin, xmax, running = parse_snapshot(txid_snapshot)
    added = sorted({x for x in subxids if xmin <= x < xmax} - running)
    listed = ",".join(str(x) for x in sorted(running | set(added)))
    return f"{xmin}:{xmax}:{listed}", added


def drop_slot(db_cfg: DatabaseConfig, name: str) -> bool:
    """Drop the slot *name* if it exists; True when one was dropped."""
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s AND NOT active",
            (name,),
        )
        return bool(cur.rowcount > 0)


def slot_of(manifest: Manifest) -> str | None:
    return (manifest.capture or {}).get("slot")


def slot_database(db_cfg: DatabaseConfig, name: str) -> str | None:
    """The database the slot *name* decodes (a restore renames it with the database it kept), if any."""
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT database::text FROM pg_replication_slots WHERE slot_name = %s", (name,))
        row = cur.fetchone()
    return str(row[0]) if row and row[0] else None


def release_capture(db_cfg: DatabaseConfig, manifest: Manifest, keep_on: Collection[str] = ()) -> bool:
    """The snapshot is going away (pruned or superseded): its slot goes with it, and its standby's
    read-ahead slot, of no use without it. But not a slot on one of the databases *keep_on* (kept by a
    restore whose export failed, kept.unexported): it is the exact record of the changes only that
    database holds, and goes with that database."""
    name = slot_of(manifest)
    if not name:
        return False
    drop_slot(db_cfg, tail_slot_name(name, STANDBY_TAIL_SUFFIX))
    if keep_on and slot_database(db_cfg, name) in keep_on:
        return False
    return drop_slot(db_cfg, name)


def release_superseded(
    db_cfg: DatabaseConfig, manifests: list[Manifest], newest: Manifest, keep_on: Collection[str] = ()
) -> list[str]:
    """Drop the slots of the older snapshots of *newest*'s database and kind: a rollback takes the
    newest one, and every slot kept holds WAL back. The older snapshots restore in the fallback mode.
    A slot on one of the databases *keep_on* stays (see :func:`release_capture`)."""
    dropped = []
    for manifest in manifests:
        if manifest.id == newest.id or manifest.database != newest.database or manifest.kind != newest.kind:
            continue
        if release_capture(db_cfg, manifest, keep_on):
            dropped.append(slot_of(manifest) or "")
    return dropped


@dataclass(frozen=True)
class SlotState:
    slot: str
    database: str
    retained_bytes: int
    active: bool


def helper_slots(db_cfg: DatabaseConfig) -> list[SlotState]:
    """The helper's slots on the configured database and on the databases a restore kept aside."""
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT slot_name::text, database::text, "
            "COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint, active "
            "FROM pg_replication_slots WHERE slot_type = 'logical' AND starts_with(slot_name::text, %s) "
            "AND (database = %s OR starts_with(database::text, %s)) ORDER BY slot_name",
            (SLOT_PREFIX, db_cfg.name, db_cfg.name + "__"),
        )
        return [SlotState(name, db, int(retained), bool(active)) for name, db, retained, active in cur.fetchall()]


def capture_check(cfg: Config) -> dict[str, Any]:
    """``health``'s view of the slots: the WAL each one keeps; a slot past the ceiling is dropped."""
    slots = helper_slots(cfg.database)
    ceiling = cfg.capture.max_retained_wal_mb * 2**20
    over = [s for s in slots if s.retained_bytes > ceiling]
    for slot in over:
        drop_slot(cfg.database, slot.slot)
    kept = [s for s in slots if s not in over]
    detail = (
        "; ".join(f"{s.slot} keeps {s.retained_bytes // 2**20} MiB of WAL" for s in kept)
        if kept
        else "no replication slot: a restore now would use the fallback capture"
    )
    if over:
        dropped = ", ".join(f"{s.slot} ({s.retained_bytes // 2**20} MiB)" for s in over)
        detail = (
            f"WARNING: dropped {dropped}, past capture.max_retained_wal_mb = {cfg.capture.max_retained_wal_mb}: "
            "a restore to its snapshot uses the fallback capture; " + detail
        )
    # A dropped slot is a warning, not a failure: the deployment's analysis reads this report too, and
    # a snapshot without its slot still restores (in the fallback mode).
    return {"name": "capture", "ok": True, "detail": detail}
