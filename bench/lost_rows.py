"""What a deployment that rewrote a whole table costs the lost-changes export: peak memory and time.

A database with one large table (``account_move_line``, *N* rows) is snapshotted, then every row of
it is updated (as a module update recomputing a stored field does) and a tenth of it deleted. Then the
plan (``restore <id>`` without ``--yes``, which reads the live database) and the restore run, each in
its own process under ``/usr/bin/time -v``. Printed per size and mode: the rows lost, the peak RSS of
the plan and of the restore, and the ``lost_rows`` step's time; then the ratio of the peaks between
the two sizes against the ratio of the rows: memory that grows with the changes shows as a peak
ratio close to the rows ratio, memory that does not as a ratio close to 1.

Usage: ``python bench/lost_rows.py --sizes 100000,400000`` with PGHOST/PGUSER/PGPASSWORD set.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pg import connection_info, drop_with_copies, execute

DB = "keys_rblostrows"
SCHEMA = """
CREATE TABLE ir_module_module (id serial PRIMARY KEY, name varchar NOT NULL UNIQUE, state varchar,
    latest_version varchar);
INSERT INTO ir_module_module (name, state, latest_version) VALUES ('base', 'installed', '16.0.1.3');
CREATE TABLE res_partner (id serial PRIMARY KEY, name varchar, create_date timestamp, write_date timestamp);
INSERT INTO res_partner (name) SELECT 'Partner ' || i FROM generate_series(1, 100) i;
CREATE TABLE account_move_line (
    id serial PRIMARY KEY, name varchar, move_id int, partner_id int, account_id int, debit numeric,
    credit numeric, balance numeric, ref varchar, date date,
    create_date timestamp DEFAULT (now() at time zone 'utc'), write_date timestamp DEFAULT (now() at time zone 'utc')
);
INSERT INTO account_move_line (name, move_id, partner_id, account_id, debit, credit, balance, ref, date)
    SELECT 'Line ' || i || ' of invoice INV/2026/' || (i / 3), i / 3, 1 + i %% 100, 400 + i %% 20, i * 1.5, 0,
           i * 1.5, 'REF-' || i, DATE '2026-01-01' + (i %% 300)
    FROM generate_series(1, %(rows)s) i;
"""
REWRITE = "UPDATE account_move_line SET name = name || ' x'"
DELETE = "DELETE FROM account_move_line WHERE id % 10 = 0"


def timed(cli: list[str], *args: str) -> tuple[int, dict[str, Any]]:
    """Peak RSS in kB of one helper process, and its JSON output."""
    result = subprocess.run(["/usr/bin/time", "-v", *cli, *args, "--json"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {result.stderr.strip()[-800:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return peak, json.loads(result.stdout)


def measure(cli: list[str], conninfo: dict[str, str], rows: int) -> dict[str, Any]:
    drop_with_copies(conninfo, DB)
    execute(conninfo, "postgres", f'CREATE DATABASE "{DB}"')
    execute(conninfo, DB, SCHEMA, {"rows": rows})
    execute(conninfo, DB, "VACUUM ANALYZE")
    _, snap = timed(cli, "snapshot", "--kind", "pre_deploy")
    execute(conninfo, DB, REWRITE)
    execute(conninfo, DB, DELETE)
    plan_peak, plan = timed(cli, "restore", snap["id"])
    restore_peak, result = timed(cli, "restore", snap["id"], "--yes")
    steps = {s["name"]: s["seconds"] for s in result["steps"]}
    return {
        "rows": rows,
        "mode": result.get("lost_rows_mode"),
        "lost": result["lost_rows_total"],
        "plan_lost": plan.get("lost_rows_total"),
        "plan_peak_mb": plan_peak / 1024,
        "restore_peak_mb": restore_peak / 1024,
        "lost_rows_s": steps.get("lost_rows", 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100000,400000")
    parser.add_argument("--modes", default="exact,fallback")
    args = parser.parse_args()
    conninfo = connection_info()
    results = []
    work = Path(tempfile.mkdtemp(prefix="rblostrows-"))
    (work / "filestore").mkdir()
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            for mode in args.modes.split(","):
                config = work / f"{mode}.toml"
                config.write_text(
                    f'[database]\nname = "{DB}"\nhost = "{conninfo["host"]}"\nport = {conninfo["port"]}\n'
                    f'user = "{conninfo["user"]}"\npassword = "{conninfo["password"]}"\n'
                    f'[filestore]\npath = "{work / "filestore"}"\n[storage]\npath = "{work / "storage" / mode}"\n'
                    '[counts]\ntables = ["account_move_line", "res_partner"]\n[services]\nbackend = "none"\n'
                    "[standby]\nenabled = false\n"
                    f'[capture]\nmode = "{"auto" if mode == "exact" else "fallback"}"\nslot_wait_seconds = 900\n'
                )
                config.chmod(0o600)  # it holds the password: the helper refuses it readable by all
                cli = [sys.executable, "-m", "odoo_rollback.cli", "--config", str(config)]
                results.append(measure(cli, conninfo, size))
                print(json.dumps(results[-1]), flush=True)
    finally:
        drop_with_copies(conninfo, DB)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'rows':>9} {'mode':<9} {'lost':>8} {'plan peak':>10} {'restore peak':>13} {'lost_rows':>10}")
    for r in results:
        print(
            f"{r['rows']:>9} {r['mode']:<9} {r['lost']:>8} {r['plan_peak_mb']:>8.0f}MB {r['restore_peak_mb']:>11.0f}MB "
            f"{r['lost_rows_s']:>9.2f}s"
        )
    for mode in sorted({r["mode"] for r in results}):
        runs = sorted((r for r in results if r["mode"] == mode), key=lambda r: r["rows"])
        if len(runs) >= 2:
            small, large = runs[0], runs[-1]
            print(
                f"{mode}: rows x{large['lost'] / max(small['lost'], 1):.1f}, plan peak "
                f"x{large['plan_peak_mb'] / small['plan_peak_mb']:.2f}, restore peak "
                f"x{large['restore_peak_mb'] / small['restore_peak_mb']:.2f}"
            )


if __name__ == "__main__":
    main()
