"""Build a database resembling Odoo's largest tables, and a filestore, for the benchmarks.

Scale 1.0 gives about 1 GB: 2.4 M account_move_line, 800 k account_move, 800 k einvoice_document,
150 k res_partner rows, with Odoo's kind of indexes and foreign keys, and 3,000 filestore files; plus, at
every scale, Odoo's long tail of 450 small tables with their indexes and foreign keys (TAIL_TABLES).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import psycopg2
from psycopg2 import sql

SCHEMA = """
CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar UNIQUE, state varchar, latest_version varchar);
INSERT INTO ir_module_module (name, state, latest_version) VALUES
    ('base', 'installed', '16.0.1.3'), ('account', 'installed', '16.0.1.2'), ('mail', 'installed', '16.0.1.10');
CREATE TABLE res_partner (
    id serial PRIMARY KEY, name varchar, email varchar, street varchar, city varchar, vat varchar,
    create_date timestamp, write_date timestamp);
CREATE TABLE account_move (
    id serial PRIMARY KEY, name varchar, ref varchar, partner_id int REFERENCES res_partner(id), state varchar,
    move_type varchar, date date, amount_total numeric, amount_residual numeric, narration text,
    create_date timestamp, write_date timestamp);
CREATE TABLE account_move_line (
    id serial PRIMARY KEY, move_id int REFERENCES account_move(id), partner_id int REFERENCES res_partner(id),
    name varchar, account_id int, debit numeric, credit numeric, balance numeric, quantity numeric,
    price_unit numeric, date date, create_date timestamp, write_date timestamp);
CREATE TABLE einvoice_document (
    id serial PRIMARY KEY, move_id int REFERENCES account_move(id), state varchar, uuid varchar,
    payload text, create_date timestamp, write_date timestamp);
"""

FILL = """
INSERT INTO res_partner (name, email, street, city, vat, create_date, write_date)
    SELECT 'Partner ' || g, 'partner' || g || '@example.com', g || ' Main Street', 'City ' || (g %% 500),
           'ES' || lpad(g::text, 9, '0'), now() - interval '1 day' * (g %% 900), now() - interval '1 hour' * (g %% 900)
    FROM generate_series(1, %(partners)s) g;
INSERT INTO account_move (name, ref, partner_id, state, move_type, date, amount_total, amount_residual, narration,
                          create_date, write_date)
    SELECT 'INV/2026/' || lpad(g::text, 7, '0'), md5(g::text), 1 + g %% %(partners)s, 'posted', 'out_invoice',
           date '2026-01-01' + (g %% 300), (g %% 9973) * 1.17, 0, repeat('note ', g %% 20),
           now() - interval '1 minute' * g, now() - interval '1 minute' * g
    FROM generate_series(1, %(moves)s) g;
INSERT INTO account_move_line (move_id, partner_id, name, account_id, debit, credit, balance, quantity, price_unit,
                               date, create_date, write_date)
    SELECT 1 + g %% %(moves)s, 1 + g %% %(partners)s, 'Line ' || md5(g::text), 1 + g %% 80, (g %% 997) * 1.1, 0,
           (g %% 997) * 1.1, 1 + g %% 5, (g %% 997) * 0.7, date '2026-01-01' + (g %% 300), now(), now()
    FROM generate_series(1, %(lines)s) g;
INSERT INTO einvoice_document (move_id, state, uuid, payload, create_date, write_date)
    SELECT g, 'sent', md5(g::text || 'x'), repeat(md5(g::text), 8), now(), now()
    FROM generate_series(1, %(moves)s) g;
CREATE INDEX ON res_partner (name);
CREATE INDEX ON account_move (partner_id);
CREATE INDEX ON account_move (date, name);
CREATE INDEX ON account_move_line (move_id);
CREATE INDEX ON account_move_line (partner_id);
CREATE INDEX ON account_move_line (account_id, date);
CREATE INDEX ON einvoice_document (move_id);
"""

# Odoo 16 with account, l10n_cr, sale_management, stock and purchase installed (65 modules, no demo data):
# 452 tables, 972 indexes, 1,706 foreign keys. A production database with more apps has more.
TAIL_TABLES = 450

# Odoo's long tail: hundreds of small tables (settings, wizards, many2many relations...), each with its
# indexes and foreign keys. Their data is nothing, but restoring each table, index and constraint is a
# statement and a commit of its own: a fixed cost that a database of five tables would hide.
TAIL = """
CREATE FUNCTION pg_temp.make_tail(tables int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..tables LOOP
        EXECUTE format(
            'CREATE TABLE x_model_%%1$s (id serial PRIMARY KEY, name varchar, active boolean, sequence int, '
            'partner_id int REFERENCES res_partner(id) ON DELETE SET NULL, '
            'create_uid int REFERENCES res_partner(id), write_uid int REFERENCES res_partner(id), '
            'create_date timestamp, write_date timestamp); '
            'CREATE INDEX ON x_model_%%1$s (name); CREATE INDEX ON x_model_%%1$s (partner_id); '
            'INSERT INTO x_model_%%1$s (name, active, sequence, partner_id, create_uid, write_uid, create_date, '
            'write_date) SELECT ''Record '' || g, true, g, g, 1, 1, now(), now() FROM generate_series(1, 20) g',
            i);
    END LOOP;
END $$;
SELECT pg_temp.make_tail(%(tail)s);
"""


def build(dbname: str, filestore: Path, scale: float, conninfo: dict[str, str], tail_tables: int = TAIL_TABLES) -> None:
    admin = psycopg2.connect(dbname="postgres", **conninfo)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    admin.close()
    conn = psycopg2.connect(dbname=dbname, **conninfo)
    with conn, conn.cursor() as cur:
        cur.execute(SCHEMA)
        sizes = {"partners": int(150_000 * scale), "moves": int(800_000 * scale), "lines": int(2_400_000 * scale)}
        cur.execute(FILL, sizes)
        cur.execute(TAIL, {"tail": tail_tables})
    # As autovacuum keeps a production database: statistics and the visibility map up to date.
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("VACUUM (ANALYZE)")
    conn.close()
    files = int(3000 * max(scale, 0.1))
    for i in range(files):
        bucket = filestore / f"{i % 256:02x}"
        bucket.mkdir(parents=True, exist_ok=True)
        # Attachments: mostly already compressed (PDF, images), so random bytes of 4-60 KiB.
        (bucket / f"{i:040x}").write_bytes(os.urandom(4096 + (i * 7919) % 57344))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dbname")
    parser.add_argument("filestore", type=Path)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    build(
        args.dbname,
        args.filestore,
        args.scale,
        {
            "host": os.environ.get("PGHOST", "127.0.0.1"),
            "port": os.environ.get("PGPORT", "5432"),
            "user": os.environ["PGUSER"],
            "password": os.environ["PGPASSWORD"],
        },
    )
