"""What a restore sets back that is in no row: sequences and large objects.

Neither the slot (logical decoding sends no sequence advance and no ``pg_largeobject`` write) nor the
row versions of the user's tables see them, yet the restore puts the snapshot's back. Once the restored
database is there, it is compared with the replaced one (which nobody writes to after the stop), and
the report names every sequence that goes back, with both values, and every large object created or
removed after the snapshot: an Odoo ``ir.sequence`` number (an invoice's, sent to a tax authority)
would otherwise be handed out a second time without anyone being told.
"""

from __future__ import annotations

from typing import Any

from .lost_rows import LostChanges

SEQUENCES = """
SELECT CASE WHEN schemaname = 'public' THEN sequencename::text ELSE schemaname || '.' || sequencename END,
       last_value
FROM pg_sequences
"""
# Large objects listed by number in the report, at most (the count is always given).
LISTED_OBJECTS = 50
SEQUENCE_LIMIT = (
    "{count} sequence(s) are set back by the restore (numbers handed out after the snapshot will be handed "
    "out again): {listed} (lost_sequences)"
)
UNREAD_SEQUENCE_LIMIT = "sequences this role may not read are not compared: {listed}"
OBJECTS_LIMIT = "large objects {what} after the snapshot, which the restore {undo}: {count} ({listed})"


def sequence_values(conn: Any) -> dict[str, int | None]:
    """{sequence: last value} (None when never used, or not readable by this role)."""
    with conn.cursor() as cur:
        cur.execute(SEQUENCES)
        return {name: None if value is None else int(value) for name, value in cur.fetchall()}


def sequences_set_back(replaced: Any, restored: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The sequences whose value the restore lowers (or removes: created after the snapshot), and those
    that could not be compared."""
    before, after = sequence_values(replaced), sequence_values(restored)
    rewound = []
    unread = []
    for name, value in sorted(before.items()):
        if value is None:
            if name in after and not _readable(replaced, name):
                unread.append(name)
            continue
        now = after.get(name)
        if name not in after or now is None or now < value:
            rewound.append({"sequence": name, "replaced": value, "restored": now})
    return rewound, unread


def _readable(conn: Any, name: str) -> bool:
    """pg_sequences shows NULL both for a sequence never used and for one this role may not read."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT has_sequence_privilege(c.oid, 'SELECT') FROM pg_sequences s "
            "JOIN pg_namespace n ON n.nspname = s.schemaname "
            "JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.sequencename "
            "WHERE CASE WHEN s.schemaname = 'public' THEN s.sequencename::text "
            "ELSE s.schemaname || '.' || s.sequencename END = %s",
            (name,),
        )
        row = cur.fetchone()
    return bool(row and row[0])


def large_objects(conn: Any) -> set[int]:
    with conn.cursor() as cur:
        cur.execute("SELECT oid::bigint FROM pg_largeobject_metadata")
        return {int(oid) for (oid,) in cur.fetchall()}


def _listed(oids: set[int]) -> str:
    shown = ", ".join(str(oid) for oid in sorted(oids)[:LISTED_OBJECTS])
    return shown + (", ..." if len(oids) > LISTED_OBJECTS else "")


def compare_restored(changes: LostChanges, replaced: Any, restored: Any) -> None:
    """Into *changes*' report: the sequences and large objects the restore set back (see above)."""
    rewound, unread = sequences_set_back(replaced, restored)
    changes.sequences = rewound
    if rewound:
        listed = ", ".join(f"{s['sequence']} {s['replaced']} -> {s['restored']}" for s in rewound[:LISTED_OBJECTS])
        more = ", ..." if len(rewound) > LISTED_OBJECTS else ""
        changes.limits.append(SEQUENCE_LIMIT.format(count=len(rewound), listed=listed + more))
    if unread:
        changes.limits.append(UNREAD_SEQUENCE_LIMIT.format(listed=", ".join(unread)))
    before, after = large_objects(replaced), large_objects(restored)
    created, removed = before - after, after - before
    if created:
        what = OBJECTS_LIMIT.format(what="created", undo="removes", count=len(created), listed=_listed(created))
        changes.limits.append(what)
    if removed:
        what = OBJECTS_LIMIT.format(what="removed", undo="brings back", count=len(removed), listed=_listed(removed))
        changes.limits.append(what)
