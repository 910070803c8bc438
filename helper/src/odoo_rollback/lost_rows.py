"""What a restore loses: every change made in the database being replaced after its snapshot.

Three ways to find them, the best the snapshot allows (``mode`` in every report):

- ``exact``: the snapshot's logical replication slot (capture.py) streams every INSERT, UPDATE, DELETE
  and TRUNCATE committed after the dump's instant, in every table. They are folded per row: a row
  inserted then updated is one inserted row with its last values; inserted then deleted is nothing lost.
- ``fallback``: a row whose ``xmin`` the snapshot's ``pg_current_snapshot()`` does not see was written
  after it, in every table, long transactions included. Whether it was inserted or updated is told by
  the primary keys the snapshot recorded (snapshot_keys.py), and deletions by the keys missing from the
  database being replaced, both compared in the server; only for the tracked tables (``counts.tables``).
  Elsewhere a row is "written".
- ``timestamps``: the database is not the one the snapshot was taken of (it was restored since), so
  neither the slot nor ``xmin`` apply: rows of the tracked tables whose ``create_date``/``write_date``
  are later than the snapshot. This misses what the two others see; the report says so.

DDL is in none of them: the tables and columns the snapshot had (in its manifest) are compared with the
database's, and every difference is reported with the rows.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from .decoding import DecodedChange, parse_change

INSERTED = "inserted"
UPDATED = "updated"
DELETED = "deleted"
WRITTEN = "written"  # inserted or updated: the fallback cannot tell outside the tracked tables
TRUNCATED = "truncated"
KINDS = (INSERTED, UPDATED, DELETED, WRITTEN, TRUNCATED)
EXACT = "exact"
FALLBACK = "fallback"
TIMESTAMPS = "timestamps"

STAMP_COLUMNS = ("create_date", "write_date")

LIMITS = {
    EXACT: [
        "DDL is not in the change stream: new or dropped tables and columns are listed from a comparison "
        "with the snapshot's schema",
        "a TRUNCATE is reported per table, without its rows",
        "the values before an update or a delete are the snapshot's, restored; the export holds the key only",
    ],
    FALLBACK: [
        "deletions are seen only in the tracked tables (counts.tables)",
        "outside the tracked tables an insert and an update are not told apart (kind 'written')",
        "the values before a change are not known",
    ],
    TIMESTAMPS: [
        "this database is not the one the snapshot was taken of: only rows of the tracked tables whose "
        "create_date or write_date is later than the snapshot are seen; deletions, other tables and "
        "transactions that began before the snapshot are not",
    ],
}
# A snapshot taken before snapshots recorded their keys, read without a staged copy of it.
NO_KEYS_LIMIT = (
    "this snapshot does not record its primary keys (taken by an older helper): deletions are not counted "
    "and inserts are not told from updates"
)

# Odoo models a person can re-enter with Odoo's own import (table -> model).
SIMPLE_MODELS = {
    "res_partner": "res.partner",
    "res_partner_category": "res.partner.category",
    "res_partner_bank": "res.partner.bank",
    "product_template": "product.template",
    "product_product": "product.product",
    "product_category": "product.category",
    "crm_lead": "crm.lead",
    "hr_employee": "hr.employee",
}
# Columns Odoo fills itself on import.
AUDIT_COLUMNS = {"id", "create_uid", "create_date", "write_uid", "write_date"}
# Records listed per model in the summary Odoo shows (the export holds them all).
SUMMARY_RECORDS = 200
# Rows fetched from the server at a time, and rows looked up together (names, external ids): a
# deployment that rewrote a whole table changes millions of rows, which are never all in memory.
BATCH = 5000
# How long a reading of a slot waits for another session reading it (see peek_lines).
SLOT_BUSY_SECONDS = 60.0


@dataclass
class LostRow:
    table: str
    kind: str
    key: dict[str, Any] | None
    after: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    changes: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "kind": self.kind,
            "key": self.key,
            "after": self.after,
            "before": self.before,
            "changes": self.changes,
        }


class RowSpool:
    """The lost rows in the order found, on disk (a temporary file, one JSON line each, the export's
    format) with their counts per table and kind in memory: a million changed rows cost a file, not
    memory. Iterating reads them back one at a time."""

    def __init__(self, rows: Iterable[LostRow] = ()) -> None:
        # Open for the spool's life: removed by the system when closed or when the process ends.
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        # Closed explicitly once the spool is gone (or by close()): a file left to the garbage collector
        # is closed with a ResourceWarning, at whatever moment the collector runs.
        self.close = weakref.finalize(self, self._file.close)
        self.counts: dict[str, dict[str, int]] = {}
        self._total = 0
        for row in rows:
            self.add(row)

    def add(self, row: LostRow) -> None:
        self._file.write(json.dumps(row.as_dict(), sort_keys=True, default=str) + "\n")
        per = self.counts.setdefault(row.table, {})
        per[row.kind] = per.get(row.kind, 0) + 1
        self._total += 1

    def __len__(self) -> int:
        return self._total

    def lines(self) -> Iterator[str]:
        """One reading at a time (they share the file's position)."""
        self._file.flush()
        self._file.seek(0)
        try:
            # Not ``yield from``: closing a reading left early would close the file itself with it
            # (``yield from`` hands close() on to the file).
            for line in self._file:  # noqa: UP028
                yield line
        finally:
            self._file.seek(0, 2)  # a later add appends, even after a reading left early

    def __iter__(self) -> Iterator[LostRow]:
        for line in self.lines():
            yield LostRow(**json.loads(line))

    def copy_to(self, target: Path) -> None:
        self._file.flush()
        self._file.seek(0)
        with target.open("w", encoding="utf-8") as out:
            shutil.copyfileobj(self._file, out)
        self._file.seek(0, 2)


@dataclass
class LostChanges:
    mode: str
    rows: RowSpool = field(default_factory=RowSpool)
    schema: list[dict[str, str]] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)
    # Tables reported even when nothing in them is lost: a preview lists the tracked tables with 0, so
    # that "nothing lost in Contact" is told apart from "not looked at".
    listed: list[str] = field(default_factory=list)
    # The sequences the restore sets back, {sequence, replaced, restored} (rewound.py): a number handed
    # out after the snapshot (an invoice's, sent to a tax authority) would be handed out again.
    sequences: list[dict[str, Any]] = field(default_factory=list)

    def by_table(self) -> dict[str, int]:
        """{table: rows lost}: the ``lost_rows`` of every report."""
        counts: dict[str, int] = dict.fromkeys(self.listed, 0)
        for table, per in self.rows.counts.items():
            counts[table] = sum(per.values())
        return dict(sorted(counts.items()))

    def by_kind(self) -> dict[str, dict[str, int]]:
        """{table: {kind: rows}}: the ``lost_changes`` of every report."""
        return {table: dict(per) for table, per in sorted(self.rows.counts.items())}

    def report(self) -> dict[str, Any]:
        lost = self.by_table()
        return {
            "lost_rows": lost,
            "lost_rows_total": sum(lost.values()),
            "lost_rows_mode": self.mode,
            "lost_changes": self.by_kind(),
            "lost_schema": self.schema,
            "lost_rows_limits": self.limits,
            "lost_sequences": self.sequences,
        }


# -- the database's shape ---------------------------------------------------------------------------
USER_TABLES = """
SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END,
       n.nspname::text, c.relname::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY 1
"""


def user_tables(conn: Any) -> dict[str, tuple[str, str]]:
    """{name as reported: (schema, table)} for every table of the database (not its partitions)."""
    with conn.cursor() as cur:
        cur.execute(USER_TABLES)
        return {name: (schema, table) for name, schema, table in cur.fetchall()}


def table_ident(qualified: tuple[str, str]) -> sql.Identifier:
    return sql.Identifier(*qualified)


def schema_of(conn: Any) -> dict[str, list[str]]:
    """{table: [columns]} of every table, as the manifest keeps it."""
    return {table: list(columns) for table, columns in column_types(conn).items()}


def column_types(conn: Any) -> dict[str, dict[str, str]]:
    """{table: {column: type as format_type writes it, ``numeric(12,2)``}} of every table, in column order."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END, "
            "array_agg(a.attname::text ORDER BY a.attnum), "
            "array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%' "
            "GROUP BY 1 ORDER BY 1"
        )
        return {name: dict(zip(columns, types, strict=True)) for name, columns, types in cur.fetchall()}


def schema_changes(
    before: Mapping[str, list[str]],
    after: Mapping[str, list[str]],
    types_before: Mapping[str, Mapping[str, str]] | None = None,
    types_after: Mapping[str, Mapping[str, str]] | None = None,
) -> list[dict[str, str]]:
    """The tables and columns added or dropped between the snapshot and now, and the columns whose type
    changed (when both sides' types are known): the restore puts the snapshot's type back, and a value
    the new type allowed may not fit it."""
    changes: list[dict[str, str]] = []
    for table in sorted(set(after) - set(before)):
        changes.append({"table": table, "change": "table added"})
    for table in sorted(set(before) - set(after)):
        changes.append({"table": table, "change": "table dropped"})
    for table in sorted(set(before) & set(after)):
        for column in after[table]:
            if column not in before[table]:
                changes.append({"table": table, "change": "column added", "column": column})
        for column in before[table]:
            if column not in after[table]:
                changes.append({"table": table, "change": "column dropped", "column": column})
        was = (types_before or {}).get(table, {})
        now = (types_after or {}).get(table, {})
        for column in before[table]:
            if column in was and column in now and was[column] != now[column]:
                changes.append(
                    {
                        "table": table,
                        "change": "column type changed",
                        "column": column,
                        "from": was[column],
                        "to": now[column],
                    }
                )
    return changes


def primary_keys(conn: Any) -> dict[str, list[str]]:
    """{table: [primary key columns]} of the tables that have one."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END, "
            "array_agg(a.attname::text ORDER BY k.ord) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
            "WHERE i.indisprimary GROUP BY 1"
        )
        return {name: list(columns) for name, columns in cur.fetchall()}


def _key(row: Mapping[str, Any] | None, columns: list[str] | None) -> tuple[Any, ...] | None:
    if row is None or not columns or any(c not in row for c in columns):
        return None
    return tuple(row[c] for c in columns)


# -- exact: the slot ---------------------------------------------------------------------------------
@dataclass
class _RowState:
    table: str
    key: tuple[Any, ...] | None
    key_columns: list[str] | None
    existed: bool  # at the snapshot
    exists: bool = True
    after: dict[str, Any] | None = None
    before: dict[str, Any] | None = None
    changes: int = 0

    def result(self) -> LostRow | None:
        if not self.existed and not self.exists:
            return None  # written and removed again after the snapshot: nothing is lost
        kind = UPDATED if self.existed and self.exists else DELETED if self.existed else INSERTED
        key = dict(zip(self.key_columns or [], self.key or (), strict=False)) or self.before
        return LostRow(self.table, kind, key, self.after if self.exists else None, self.before, self.changes)


class _FoldStates:
    """The state of every changed row, in a private SQLite file (deleted when closed) rather than in a
    dict: folding a whole-table rewrite needs one state a row, and memory would grow with them."""

    def __init__(self, keys: Mapping[str, list[str]]) -> None:
        self.keys = keys
        self.db = sqlite3.connect("")  # "": a temporary on-disk database, removed on close
        self.db.execute(
            "CREATE TABLE s (tbl TEXT, k TEXT, existed INT, exists_ INT, after TEXT, before TEXT, "
            "changes INT, truncated INT DEFAULT 0)"
        )
        self.db.execute("CREATE UNIQUE INDEX s_key ON s (tbl, k)")  # NULL keys are distinct: never folded

    def get(self, table: str, key: tuple[Any, ...] | None, existed: bool) -> tuple[int | None, _RowState]:
        encoded = None if key is None else json.dumps(key, default=str)
        if encoded is not None:
            found = self.db.execute(
                "SELECT rowid, existed, exists_, after, before, changes FROM s WHERE tbl = ? AND k = ?",
                (table, encoded),
            ).fetchone()
            if found is not None:
                rowid, was, now, after, before, changes = found
                state = _RowState(table, key, self.keys.get(table), bool(was), bool(now), _load(after), _load(before))
                state.changes = changes
                return rowid, state
        return None, _RowState(table, key, self.keys.get(table), existed)

    def put(self, rowid: int | None, state: _RowState) -> None:
        values = (state.existed, state.exists, _dump(state.after), _dump(state.before), state.changes)
        if rowid is None:
            encoded = None if state.key is None else json.dumps(state.key, default=str)
            self.db.execute(
                "INSERT INTO s (tbl, k, existed, exists_, after, before, changes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (state.table, encoded, *values),
            )
        else:
            self.db.execute(
                "UPDATE s SET existed = ?, exists_ = ?, after = ?, before = ?, changes = ? WHERE rowid = ?",
                (*values, rowid),
            )

    def truncated(self, table: str) -> None:
        self.db.execute("INSERT INTO s (tbl, truncated) VALUES (?, 1)", (table,))

    def results(self) -> Iterator[LostRow]:
        """In the order first changed (rowid: a state is inserted once, then updated in place)."""
        cursor = self.db.execute(
            "SELECT tbl, k, existed, exists_, after, before, changes, truncated FROM s ORDER BY rowid"
        )
        for table, key, existed, exists, after, before, changes, truncated in cursor:
            if truncated:
                yield LostRow(table, TRUNCATED, None)
                continue
            state = _RowState(
                table, None if key is None else tuple(json.loads(key)), self.keys.get(table), bool(existed)
            )
            state.exists, state.after, state.before, state.changes = bool(exists), _load(after), _load(before), changes
            row = state.result()
            if row is not None:
                yield row


def _dump(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _load(value: str | None) -> dict[str, Any] | None:
    return None if value is None else json.loads(value)


def fold_changes(changes: Iterable[DecodedChange], keys: Mapping[str, list[str]]) -> RowSpool:
    """One LostRow per row that differs from the snapshot, in the order first changed."""
    states = _FoldStates(keys)
    try:
        for change in changes:
            if change.action == "TRUNCATE":
                for table in change.tables:
                    states.truncated(table)
                continue
            table = change.tables[0]
            columns = keys.get(table)
            if change.action == "INSERT":
                rowid, entry = states.get(table, _key(change.new, columns), existed=False)
                entry.exists, entry.after = True, dict(change.new or {})
            elif change.action == "UPDATE":
                new_key = _key(change.new, columns)
                old_key = _key(change.old, columns) if change.old else new_key
                if old_key != new_key:  # the key itself changed: the old row went, a new one came
                    gone_id, gone = states.get(table, old_key, existed=True)
                    gone.exists, gone.after, gone.changes = False, None, gone.changes + 1
                    gone.before = gone.before or change.old
                    states.put(gone_id, gone)
                rowid, entry = states.get(table, new_key, existed=True)
                # A large value the update did not touch is not sent: keep what is known of it.
                entry.exists, entry.after = True, {**(entry.after or {}), **(change.new or {})}
            else:  # DELETE
                rowid, entry = states.get(table, _key(change.old, columns) if change.old else None, existed=True)
                entry.exists, entry.after = False, None
                entry.before = entry.before or change.old
            entry.changes += 1
            states.put(rowid, entry)
        return RowSpool(states.results())
    finally:
        states.db.close()


def peek_lines(conn: Any, slot: str, upto_lsn: str | None = None) -> Iterator[str]:
    """The slot's test_decoding lines, without consuming them (peek: a second reading gives the same),
    fetched BATCH at a time through a server-side cursor (a plain one would hold them all in memory), in
    a transaction of *conn* that is rolled back. With *upto_lsn*, the transactions whose commit record
    begins before it.

    A slot is read by one session at a time, for as long as the server decodes it (then the rows are
    in the cursor): a second reading (Odoo's preview beside a standby's read-ahead, say) waits for the
    first, up to :data:`SLOT_BUSY_SECONDS`, rather than fail."""
    autocommit = conn.autocommit
    conn.autocommit = False
    deadline = time.monotonic() + SLOT_BUSY_SECONDS
    try:
        while True:
            cur = conn.cursor(name="rollback_decode_slot")
            cur.itersize = BATCH
            cur.execute(
                "SELECT data FROM pg_logical_slot_peek_changes(%s, %s::pg_lsn, NULL, "
                "'include-xids', '0', 'skip-empty-xacts', '1')",
                (slot, upto_lsn),
            )
            try:
                first = cur.fetchmany(BATCH)  # the slot is taken, and decoded whole, here
            except psycopg2.errors.ObjectInUse:
                conn.rollback()  # the cursor went with the transaction: nothing to close
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            try:
                for (data,) in first:
                    yield data
                for (data,) in cur:
                    yield data
            finally:
                cur.close()
            break
        conn.rollback()
    finally:
        conn.autocommit = autocommit


def decode_slot(conn: Any, slot: str, upto_lsn: str | None = None) -> Iterator[DecodedChange]:
    """The slot's changes (see :func:`peek_lines`)."""
    for data in peek_lines(conn, slot, upto_lsn):
        change = parse_change(data)
        if change is not None:
            yield change


# How the slot's changes are read: decode_slot, or a reading split at a point (read_ahead.py).
SlotDecoder = Callable[[Any, str, str | None], Iterable[DecodedChange]]


def slot_usable(conn: Any, slot: str | None) -> bool:
    """The slot exists and belongs to the database *conn* is connected to."""
    if not slot:
        return False
    with conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()", (slot,)
        )
        return cur.fetchone() is not None


# -- fallback: xmin against the snapshot -------------------------------------------------------------
class KeyFiles(Protocol):
    """The snapshot's primary keys of the tracked tables, as files (snapshot_keys.SnapshotKeys)."""

    keyed: dict[str, list[str]]

    def copy_into(self, cur: Any, table: str, target: sql.Composable) -> str | None: ...


WRITTEN_AFTER = sql.SQL(
    "SELECT row_to_json(t), {existed} FROM (SELECT * FROM {table} WHERE age(xmin) >= 0 AND NOT "
    "pg_visible_in_snapshot((%(me)s::bigint - age(xmin))::text::xid8, %(snapshot)s::pg_snapshot)) t {join}"
)
NOT_KEYED = (
    "the snapshot's keys of {table} are not used ({problem}): its deletions are not counted and its inserts "
    "are not told from updates"
)


def _row(columns: list[str], alias: str) -> sql.Composable:
    return sql.SQL("({})").format(sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns))


def _load_keys(
    cur: Any, keys: KeyFiles, names: Mapping[str, tuple[str, str]], pks: Mapping[str, list[str]], limits: list[str]
) -> dict[str, sql.Identifier]:
    """The snapshot's keys of each keyed table, in a TEMP table of the table's own key types (dropped
    with the transaction); {table: temp table}. A file that is not the manifest's is not used: said."""
    loaded: dict[str, sql.Identifier] = {}
    for number, (table, columns) in enumerate(sorted(keys.keyed.items())):
        if table not in names:
            continue  # dropped since: the schema changes say so
        if pks.get(table) != columns:
            limits.append(NOT_KEYED.format(table=table, problem="its primary key changed since the snapshot"))
            continue
        temp = sql.Identifier(f"rollback_snapshot_keys_{number}")
        cur.execute("SAVEPOINT snapshot_keys")
        try:
            # LIMIT 0 of the table itself: the key columns with the types they have now.
            cur.execute(
                sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} LIMIT 0").format(
                    temp, sql.SQL(", ").join(map(sql.Identifier, columns)), table_ident(names[table])
                )
            )
            problem = keys.copy_into(cur, table, temp)
        except psycopg2.Error as exc:  # no TEMP privilege, say
            problem = f"no temporary table for them: {str(exc).strip().splitlines()[0]}"
        if problem:
            cur.execute("ROLLBACK TO SAVEPOINT snapshot_keys")
            limits.append(NOT_KEYED.format(table=table, problem=problem))
            continue
        cur.execute("RELEASE SAVEPOINT snapshot_keys")
        cur.execute(sql.SQL("ANALYZE {}").format(temp))  # a temp table has no statistics otherwise
        loaded[table] = temp
    return loaded


def scan_written(
    conn: Any,
    txid_snapshot: str,
    snapshot_tables: Iterable[str],
    keys: KeyFiles | None,
    only: Iterable[str] | None = None,
) -> tuple[RowSpool, list[str]]:
    """Every row of every table (or of the tables *only*) whose xmin *txid_snapshot* does not see, and
    the deleted keys of the tables in *keys*; with the limits met (a key file not used). Compared in the
    server, in a read-write transaction of *conn* that is rolled back (*conn* must be free to open one)."""
    pks = primary_keys(conn)
    names = user_tables(conn)
    if only is not None:
        chosen = set(only)
        names = {table: qualified for table, qualified in names.items() if table in chosen}
    known_tables = set(snapshot_tables)
    rows = RowSpool()
    limits: list[str] = []
    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            # A full transaction id for each row's 32-bit xmin: this transaction's own id minus the
            # row's age (age() counts from it once it exists), which is what pg_visible_in_snapshot takes.
            # A frozen row older than 2^31 transactions has a negative age and is older than any snapshot.
            cur.execute("SELECT pg_current_xact_id()::text")
            me = int(cur.fetchone()[0])
            # The rows are read through cursors, for which the planner favours the first rows (10 %):
            # a nested loop over the snapshot's keys, quadratic on a whole-table rewrite. All rows are read.
            cur.execute("SET LOCAL cursor_tuple_fraction = 1.0")
            loaded = _load_keys(cur, keys, names, pks, limits) if keys is not None else {}
            for table, qualified in names.items():
                columns = pks.get(table)
                existed: sql.Composable = sql.SQL("NULL::boolean")
                join: sql.Composable = sql.SQL("")
                if table in loaded and columns:
                    # A join (hashed), not an EXISTS per row: a whole-table rewrite has a million rows.
                    # The snapshot's keys are unique: at most one match a row.
                    existed = sql.SQL("{} IS NOT NULL").format(sql.Identifier("k", columns[0]))
                    join = sql.SQL("LEFT JOIN {} k ON {} = {}").format(
                        loaded[table], _row(columns, "k"), _row(columns, "t")
                    )
                # Server-side: a table rewritten by the deployment is read BATCH rows at a time.
                with conn.cursor(name="rollback_written") as written:
                    written.itersize = BATCH
                    written.execute(
                        WRITTEN_AFTER.format(existed=existed, table=table_ident(qualified), join=join),
                        {"me": me, "snapshot": txid_snapshot},
                    )
                    for row, was_there in written:
                        key = _key(row, columns)
                        if table not in known_tables:
                            kind = INSERTED
                        elif was_there is not None:
                            kind = UPDATED if was_there else INSERTED
                        else:
                            kind = WRITTEN
                        rows.add(LostRow(table, kind, dict(zip(columns or [], key or (), strict=False)) or None, row))
            for table, temp in sorted(loaded.items()):
                columns = pks[table]
                listed = sql.SQL(", ").join(sql.Identifier("k", c) for c in columns)
                gone = sql.SQL("SELECT {} FROM {} k WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE {} = {}) ORDER BY {}")
                with conn.cursor(name="rollback_gone") as deleted:
                    deleted.itersize = BATCH
                    deleted.execute(
                        gone.format(
                            listed, temp, table_ident(names[table]), _row(columns, "t"), _row(columns, "k"), listed
                        )
                    )
                    for key in deleted:
                        rows.add(LostRow(table, DELETED, dict(zip(columns, key, strict=True)), None, None))
        conn.rollback()
    finally:
        conn.autocommit = autocommit
    return rows, limits


# -- timestamps: a database that is not the snapshot's own -------------------------------------------
def _stamped_tables(conn: Any, tables: list[str]) -> dict[str, list[str]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, array_agg(column_name::text) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = ANY(%s) AND column_name = ANY(%s) GROUP BY table_name",
            (tables, list(STAMP_COLUMNS)),
        )
        return {name: sorted(columns) for name, columns in cur.fetchall()}


def scan_stamped(conn: Any, tables: Iterable[str], since_iso: str) -> RowSpool:
    rows = RowSpool()
    autocommit = conn.autocommit
    conn.autocommit = False  # a server-side cursor lives in a transaction (read only, rolled back)
    try:
        for table, columns in sorted(_stamped_tables(conn, list(tables)).items()):
            condition = sql.SQL(" OR ").join(
                sql.SQL("{} > %(since)s::timestamptz AT TIME ZONE 'UTC'").format(sql.Identifier(c)) for c in columns
            )
            with conn.cursor(name="rollback_stamped") as cur:
                cur.itersize = BATCH
                cur.execute(
                    sql.SQL("SELECT row_to_json(t) FROM (SELECT * FROM {} WHERE {}) t").format(
                        sql.Identifier(table), condition
                    ),
                    {"since": since_iso},
                )
                for (row,) in cur:
                    rows.add(LostRow(table, WRITTEN, {"id": row["id"]} if "id" in row else None, row))
        conn.rollback()
    finally:
        conn.autocommit = autocommit
    return rows


# -- choosing the mode ------------------------------------------------------------------------------
def database_oid(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        return int(cur.fetchone()[0])


UNLOGGED_TABLES = """
SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'u'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY 1
"""
UNLOGGED_LIMIT = (
    "unlogged tables are not in the change stream ({tables}): the rows written in them after the snapshot "
    "are found by their row versions instead, and their deletions only where the snapshot recorded the keys "
    "(a tracked table)"
)
LARGE_OBJECTS_LIMIT = (
    "large objects (pg_largeobject) are in no change stream: {count} in this database; one created, "
    "written or removed after the snapshot is not in the export"
)
NO_PRIMARY_KEY_LIMIT = (
    "tracked tables without a primary key at the snapshot ({tables}): their deletions are not counted and "
    "their inserts are not told from updates"
)
NO_TYPES_LIMIT = (
    "this snapshot does not record its column types (taken by an older helper): a column whose type "
    "changed since is not listed"
)
SAVEPOINT_LIMIT = (
    "transactions running at the snapshot whose savepoints are not known ({ids}): a row one of them wrote "
    "inside a savepoint and committed after the snapshot looks older than it and is not in the export"
)
UNKNOWN_VALUES_LIMIT = (
    "{count} changed row(s) of {table}: a large value an update left unchanged could not be read back "
    "(the row is gone or has no key): it is left out of 'after' and of the import file, not blanked"
)


def unlogged_tables(conn: Any) -> list[str]:
    """The unlogged tables: written without WAL, so logical decoding never sees their changes."""
    with conn.cursor() as cur:
        cur.execute(UNLOGGED_TABLES)
        return [name for (name,) in cur.fetchall()]


def large_object_count(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_largeobject_metadata")
        return int(cur.fetchone()[0])


def complete_rows(conn: Any, spool: RowSpool, columns: Mapping[str, Iterable[str]]) -> tuple[RowSpool, list[str]]:
    """The rows of *spool* with every column of their table in ``after``: the slot does not send a large
    value (TOAST) an update left unchanged, so a row missing some is read back by its key from *conn*'s
    database (the replaced one, which nobody writes to after the stop: its final state). A value that
    cannot be read back stays out (never an empty one, which an import would write over the restored
    value); the limits say where."""
    wanted = {table: set(cols) for table, cols in columns.items()}

    def incomplete(row: LostRow) -> bool:
        return row.after is not None and bool(wanted.get(row.table, set()) - set(row.after))

    if not any(incomplete(row) for row in spool):
        return spool, []  # the usual case: the spool is not written again
    pks = primary_keys(conn)
    names = user_tables(conn)
    done = RowSpool()
    unknown: dict[str, int] = {}
    for batch in _batches(spool):
        missing: dict[str, list[LostRow]] = {}
        for row in batch:
            if incomplete(row):
                missing.setdefault(row.table, []).append(row)
        for table, rows in missing.items():
            found = _read_back(conn, names.get(table), pks.get(table), [r.key for r in rows])
            for row, current in zip(rows, found, strict=True):
                after = row.after or {}
                if current is not None:
                    after.update({c: v for c, v in current.items() if c not in after})
                if wanted[table] - set(after):
                    unknown[table] = unknown.get(table, 0) + 1
        for row in batch:
            done.add(row)
    spool.close()
    return done, [UNKNOWN_VALUES_LIMIT.format(count=n, table=t) for t, n in sorted(unknown.items())]


def _read_back(
    conn: Any, qualified: tuple[str, str] | None, key_columns: list[str] | None, keys: list[dict[str, Any] | None]
) -> list[dict[str, Any] | None]:
    """The rows of a table by their primary keys ({column: value}), in the order given; None where a
    key is missing or no row has it."""
    found: list[dict[str, Any] | None] = [None] * len(keys)
    usable = [
        (number, key) for number, key in enumerate(keys) if key_columns and key and all(c in key for c in key_columns)
    ]
    if qualified is None or not key_columns or not usable:
        return found
    table = table_ident(qualified)
    # The keys as JSON, each made a row of the table's own type: the key columns compare in their types.
    query = sql.SQL(
        "SELECT e.n, row_to_json(t) FROM json_array_elements(%s::json) WITH ORDINALITY e(v, n) "
        "CROSS JOIN LATERAL json_populate_record(NULL::{table}, e.v) k JOIN {table} t ON {k} = {t}"
    ).format(table=table, k=_row(key_columns, "k"), t=_row(key_columns, "t"))
    with conn.cursor() as cur:
        try:
            cur.execute(query, (json.dumps([key for _, key in usable], default=str),))
        except psycopg2.Error:
            # A key this table's types refuse, say: read one key at a time, so that only that one's
            # values stay unknown (the limits say so).
            if not conn.autocommit:
                conn.rollback()
            if len(usable) > 1:
                for number, key in usable:
                    found[number] = _read_back(conn, qualified, key_columns, [key])[0]
            return found
        for number, row in cur.fetchall():
            found[usable[number - 1][0]] = row
    return found


def _shape_limits(
    conn: Any, capture: Mapping[str, Any], tracked: Iterable[str], keys: KeyFiles | None, current: Mapping[str, Any]
) -> list[str]:
    """What neither the slot nor the row versions see, named whenever the database has it."""
    limits: list[str] = []
    if capture.get("schema") and capture.get("column_types") is None:
        limits.append(NO_TYPES_LIMIT)
    count = large_object_count(conn)
    if count:
        limits.append(LARGE_OBJECTS_LIMIT.format(count=count))
    if keys is not None:
        unkeyed = [t for t in tracked if t in current and t not in keys.keyed]
        if unkeyed:
            limits.append(NO_PRIMARY_KEY_LIMIT.format(tables=", ".join(unkeyed)))
    return limits


def collect(
    conn: Any,
    capture: Mapping[str, Any] | None,
    created_at: str,
    tracked: Iterable[str],
    *,
    upto_lsn: str | None = None,
    keys: KeyFiles | None = None,
    decoder: SlotDecoder = decode_slot,
) -> LostChanges:
    """The changes made after the snapshot in the database *conn* is connected to."""
    capture = capture or {}
    tracked = list(tracked)
    types = column_types(conn)
    current = {table: list(columns) for table, columns in types.items()}
    if capture.get("database_oid") != database_oid(conn):
        return LostChanges(TIMESTAMPS, scan_stamped(conn, tracked, created_at), [], list(LIMITS[TIMESTAMPS]))
    schema = schema_changes(capture.get("schema") or current, current, capture.get("column_types"), types)
    known = capture.get("schema") or current
    shape = _shape_limits(conn, capture, tracked, keys, current)
    if slot_usable(conn, capture.get("slot")):
        rows = fold_changes(decoder(conn, capture["slot"], upto_lsn), primary_keys(conn))
        rows, unknown = complete_rows(conn, rows, current)
        limits = list(LIMITS[EXACT]) + unknown
        unlogged = unlogged_tables(conn)
        if unlogged and capture.get("txid_snapshot"):
            # Logical decoding skips them; their rows' versions tell what was written after the snapshot.
            extra, not_keyed = scan_written(conn, capture["txid_snapshot"], known, keys, only=unlogged)
            for row in extra:
                rows.add(row)
            extra.close()
            limits += [UNLOGGED_LIMIT.format(tables=", ".join(unlogged)), *not_keyed]
        return LostChanges(EXACT, rows, schema, limits + shape)
    limits = list(LIMITS[FALLBACK])
    if capture.get("slot"):
        limits.insert(0, f"the snapshot's replication slot {capture['slot']} is gone (dropped past the WAL ceiling?)")
    if keys is None:
        limits.append(NO_KEYS_LIMIT)
    rows, not_keyed = scan_written(conn, capture["txid_snapshot"], known, keys)
    return LostChanges(FALLBACK, rows, schema, limits + not_keyed + savepoint_limits(capture) + shape)


def savepoint_limits(capture: Mapping[str, Any]) -> list[str]:
    """The transactions running at the snapshot whose savepoints' ids are not known (capture.py's
    read_capture_point): a row one of them wrote inside a savepoint looks older than the snapshot."""
    running = [x for x in str(capture.get("txid_snapshot", "::")).split(":")[2].split(",") if x]
    if "subxids" not in capture or capture.get("subxids_unchecked"):
        unread = running  # a snapshot taken before the helper read them, or a span too wide to read
    else:
        unread = [str(x) for x in capture.get("ended_unread") or []]
    if not unread:
        return []
    return [SAVEPOINT_LIMIT.format(ids=", ".join(unread))]


# -- export -----------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A value as Odoo's import reads it: a translated field (jsonb) by its English text."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return value.get("en_US", next(iter(value.values()), ""))
    return "" if value is None else value


def external_ids(conn: Any, model: str, ids: list[int]) -> dict[int, str]:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('ir_model_data') IS NOT NULL")
        if not cur.fetchone()[0] or not ids:
            return {}
        cur.execute(
            "SELECT res_id, module || '.' || name FROM ir_model_data WHERE model = %s AND res_id = ANY(%s)",
            (model, ids),
        )
        return dict(cur.fetchall())


def _batches(rows: Iterable[LostRow], size: int = BATCH) -> Iterator[list[LostRow]]:
    batch: list[LostRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def write_import_csvs(conn: Any, changes: LostChanges, folder: Path) -> list[str]:
    """For each simple model, the inserted and the updated records as CSV files for Odoo's import:
    columns named by field (``partner_id/.id`` for a link), the external id where there is one.
    An import writes every cell of a line, an empty one as an empty value: a record whose values are not
    all known (a large value the slot did not send and that could not be read back) goes to a file of
    its own columns, ``<model>.<kind>.2.csv`` and on, rather than blank a value it does not know.
    Readings of the spooled rows per file (its columns, then its lines), BATCH lines at a time."""
    written = []
    for table, model in SIMPLE_MODELS.items():
        for kind in (INSERTED, UPDATED):
            if not changes.rows.counts.get(table, {}).get(kind):
                continue

            def matching(table: str = table, kind: str = kind) -> Iterator[LostRow]:
                return (r for r in changes.rows if r.table == table and r.kind == kind and r.after)

            # The sets of fields the rows know, in the order first met: one file each.
            shapes: dict[frozenset[str], None] = {}
            for row in matching():
                shapes.setdefault(_shape(row), None)
            for number, shape in enumerate(shapes, start=1):
                suffix = "" if number == 1 else f".{number}"
                path = folder / f"{model}.{kind}{suffix}.csv"
                _write_import_csv(conn, model, kind, sorted(shape), (r for r in matching() if _shape(r) == shape), path)
                written.append(str(path))
    return written


def _shape(row: LostRow) -> frozenset[str]:
    return frozenset(row.after or {}) - AUDIT_COLUMNS


def _write_import_csv(conn: Any, model: str, kind: str, fields: list[str], rows: Iterable[LostRow], path: Path) -> None:
    # New records by external id (empty: Odoo creates one); changed ones by database id,
    # which the restored database shares with the replaced one for rows the snapshot has.
    ident_header = "id" if kind == INSERTED else ".id"
    headers = [ident_header] + [f"{f}/.id" if f.endswith("_id") else f for f in fields]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        for batch in _batches(rows):
            ids = [int(a["id"]) for r in batch if (a := r.after) and isinstance(a.get("id"), int)]
            xids = external_ids(conn, model, ids) if kind == INSERTED else {}
            for row in batch:
                after = row.after or {}
                ident = xids.get(int(after.get("id") or 0), "") if kind == INSERTED else after.get("id")
                writer.writerow([ident, *(_plain(after.get(f)) for f in fields)])


def export(conn: Any, changes: LostChanges, folder: Path) -> dict[str, Any]:
    """Every lost change as JSON lines, and the import CSVs, in *folder*; what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "lost_changes.jsonl"
    changes.rows.copy_to(target)
    csvs = write_import_csvs(conn, changes, folder)
    return {"lost_rows_file": str(target), "lost_rows_csv": csvs}
