"""What Odoo's **Lost changes** tab shows: per model, counts by kind and the records by their name.

An e-invoice the tax authority already accepted and then rolled back is the worst loss there is (the
authority knows an invoice the company's books no longer hold): invoices with an authority state come
first, accepted ones before all.
"""

from __future__ import annotations

import base64
import heapq
import json
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from psycopg2 import sql

from .lost_rows import BATCH, DELETED, KINDS, SUMMARY_RECORDS, LostChanges, LostRow, user_tables

# Where e-invoicing modules keep the tax authority's answer: a column of account_move, or a table
# beside it with move_id and state (account_edi's account_edi_document, a localisation's document).
AUTHORITY_COLUMN = re.compile(r"(edi|einvoice|e_invoice|hacienda|fe|tax_authority|l10n_[a-z]+_[a-z_]*)_?[a-z_]*state")
AUTHORITY_TABLE = re.compile(r"(edi|einvoice|e_invoice|hacienda)")
ACCEPTED = re.compile(r"accept|aceptad|sent|valid", re.IGNORECASE)
# Export attached to the Odoo record when it is at most this large (else the path on the helper's host).
MAX_ATTACHED_BYTES = 5 * 2**20


def _text(value: Any) -> str:
    if isinstance(value, str) and value.startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return str(value)
    if isinstance(value, dict):
        return str(value.get("en_US", next(iter(value.values()), "")))
    return "" if value is None else str(value)


def model_names(conn: Any) -> dict[str, str]:
    """{table: model} from ir_model where the database has it."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('ir_model') IS NOT NULL")
        if not cur.fetchone()[0]:
            return {}
        cur.execute("SELECT model FROM ir_model")
        return {model.replace(".", "_"): model for (model,) in cur.fetchall()}


def _rows_by_id(conn: Any, table: str, ids: list[int]) -> dict[int, dict[str, Any]]:
    names = user_tables(conn)
    if table not in names or not ids:
        return {}
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT row_to_json(t) FROM {} t WHERE id = ANY(%s)").format(sql.Identifier(*names[table])),
            (ids,),
        )
        return {row["id"]: row for (row,) in cur.fetchall()}


def authority_states(conn: Any, move_ids: list[int]) -> dict[int, str]:
    """{move id: the tax authority's state} from the e-invoice tables beside account_move."""
    states: dict[int, str] = {}
    if not move_ids:
        return states
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.table_name FROM information_schema.columns c "
            "JOIN information_schema.columns s ON s.table_schema = c.table_schema AND s.table_name = c.table_name "
            "AND s.column_name = 'state' WHERE c.table_schema = 'public' AND c.column_name = 'move_id'"
        )
        tables = [t for (t,) in cur.fetchall() if AUTHORITY_TABLE.search(t)]
        for table in sorted(tables):
            cur.execute(
                sql.SQL("SELECT move_id, state FROM {} WHERE move_id = ANY(%s) ORDER BY id").format(
                    sql.Identifier(table)
                ),
                (move_ids,),
            )
            states.update({move: str(state) for move, state in cur.fetchall() if state})
    return states


def _record(row: LostRow, values: dict[str, Any], partners: dict[int, dict[str, Any]]) -> dict[str, Any]:
    key = row.key or {}
    res_id = key.get("id") if isinstance(key.get("id"), int) else None
    name = _text(values.get("display_name") or values.get("name")) or (f"#{res_id}" if res_id else str(key))
    record: dict[str, Any] = {"kind": row.kind, "res_id": res_id, "display_name": name}
    if row.table == "account_move":
        partner = partners.get(values.get("partner_id") or -1, {})
        record["partner"] = _text(partner.get("name")) or None
        record["amount"] = values.get("amount_total")
        record["authority_state"] = next(
            (str(v) for k, v in values.items() if AUTHORITY_COLUMN.fullmatch(k) and v), None
        )
    return record


def _rank(record: dict[str, Any]) -> int:
    state = record.get("authority_state")
    return 0 if state and ACCEPTED.search(state) else 1 if state else 2


def _records(
    table: str, rows: list[LostRow], conn: Any, live_conn: Any | None
) -> list[tuple[int, int, dict[str, Any]]]:
    """The records of a batch of one table's rows, with their ranks (names looked up together)."""
    deleted_ids = [int(k["id"]) for r in rows if r.kind == DELETED and (k := r.key) and isinstance(k.get("id"), int)]
    old = _rows_by_id(live_conn, table, deleted_ids) if live_conn is not None else {}
    values = [r.after or old.get(int((r.key or {}).get("id") or 0), {}) for r in rows]
    partners: dict[int, dict[str, Any]] = {}
    if table == "account_move":
        partner_ids = sorted({int(v["partner_id"]) for v in values if isinstance(v.get("partner_id"), int)})
        partners = _rows_by_id(conn, "res_partner", partner_ids)
    records = [_record(r, v, partners) for r, v in zip(rows, values, strict=True)]
    if table == "account_move":
        states = authority_states(conn, [r["res_id"] for r in records if r["res_id"]])
        for record in records:
            record["authority_state"] = record["authority_state"] or states.get(record["res_id"])
    return [(_rank(record), 0, record) for record in records]


def odoo_summary(changes: LostChanges, conn: Any, live_conn: Any | None = None) -> list[dict[str, Any]]:
    """Per model: {model, table, counts by kind, total, records}. *conn* is the database the changes were
    made in; *live_conn* (the restored one) names the deleted records, which only it still holds.

    ``records`` are the first SUMMARY_RECORDS by rank (accepted e-invoices first), then in the order
    found; the counts are of all rows. The spooled rows are read once, BATCH a table at a time, and
    only the best SUMMARY_RECORDS of each table are kept: a whole-table rewrite costs no memory here."""
    models = model_names(conn)
    pending: dict[str, list[LostRow]] = {}
    kept: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
    seen: dict[str, int] = {}

    def flush(table: str) -> None:
        batch = pending.pop(table, [])
        ranked = [
            (rank, seen.get(table, 0) + n, record)
            for n, (rank, _, record) in enumerate(_records(table, batch, conn, live_conn))
        ]
        seen[table] = seen.get(table, 0) + len(batch)
        kept[table] = heapq.nsmallest(SUMMARY_RECORDS, kept.get(table, []) + ranked, key=lambda t: t[:2])

    for row in changes.rows:
        pending.setdefault(row.table, []).append(row)
        if len(pending[row.table]) >= BATCH:
            flush(row.table)
    for table in list(pending):
        flush(table)
    summary: list[dict[str, Any]] = []
    for table, per in changes.rows.counts.items():
        records = [record for _, _, record in sorted(kept.get(table, []), key=lambda t: t[:2])]
        summary.append(
            {
                "model": models.get(table, table.replace("_", ".")),
                "table": table,
                "counts": {kind: per[kind] for kind in KINDS if per.get(kind)},
                "total": sum(per.values()),
                "records": records,
            }
        )
    # The tab opens on the worst: models with an accepted e-invoice first, then by size.
    summary.sort(key=lambda m: (min((_rank(r) for r in m["records"]), default=2), -m["total"], m["model"]))
    return summary


def export_archive(folder: Path) -> dict[str, Any] | None:
    """The export folder as a zip for Odoo to attach, when it is small enough to travel in the journal.
    Zipped into a temporary file, not memory: the export of a whole-table rewrite is large."""
    with tempfile.TemporaryFile() as buffer:
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.iterdir()):
                if path.is_file() and (path.suffix in (".jsonl", ".csv")):
                    archive.write(path, path.name)
        if buffer.tell() > MAX_ATTACHED_BYTES:
            return None
        buffer.seek(0)
        data = buffer.read()
    return {"name": "lost_changes.zip", "data": base64.b64encode(data).decode("ascii")}
