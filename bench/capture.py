"""What exact change capture costs: snapshot and restore with the logical replication slot against the
same without it (``[capture] mode = "fallback"``), on the benchmark database, at one or more sizes.

After each snapshot the script changes the database as a bad deployment would (partners updated,
invoices created, e-invoice documents deleted), then restores. It prints, per size and mode: the
snapshot's time, the restore's total and downtime, the time of the ``lost_rows`` step (which runs
after the start, on the kept database, so it is not in the downtime) and what it found; then the
ratios exact / fallback. Downtime must not grow with the size because of the capture.

Usage: bench/run.sh is for the main benchmark; this one: ``python bench/capture.py --scales 0.1,0.2``
with PGHOST/PGUSER/PGPASSWORD set (``make bench-capture`` does it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from build_db import build
from pg import connection_info, drop_with_copies, execute

DB = "rbcapture"
CHANGES = """
UPDATE res_partner SET email = 'changed-' || id || '@example.com', write_date = now() WHERE id % 100 = 0;
INSERT INTO account_move (name, partner_id, state, move_type, date, amount_total, create_date, write_date)
    SELECT 'INV/LATE/' || g, 1 + g, 'posted', 'out_invoice', now(), g, now(), now()
    FROM generate_series(1, 1000) g;
DELETE FROM einvoice_document WHERE id IN (SELECT id FROM einvoice_document ORDER BY id LIMIT 200);
"""


def run_json(cli: list[str], *args: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    result = subprocess.run([*cli, *args, "--json"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return time.monotonic() - started, json.loads(result.stdout)


def drop_kept(conninfo: dict[str, str]) -> None:
    """The restores keep the replaced databases: drop them between runs (their slots go with them)."""
    drop_with_copies(conninfo, DB)


def measure(cli: list[str], conninfo: dict[str, str]) -> dict[str, Any]:
    snapshot_s, snap = run_json(cli, "snapshot", "--kind", "pre_deploy")
    execute(conninfo, DB, CHANGES)
    restore_s, result = run_json(cli, "restore", snap["id"], "--yes")
    steps = {s["name"]: s["seconds"] for s in result["steps"]}
    return {
        "mode": result.get("lost_rows_mode"),
        "snapshot": snapshot_s,
        "restore": restore_s,
        "downtime": result["downtime_seconds"],
        "lost_rows_step": steps.get("lost_rows", 0.0),
        "lost": result["lost_rows_total"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", default="0.1,0.2")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    conninfo = connection_info()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="rbcapture-"))
    try:
        for scale in (float(s) for s in args.scales.split(",")):
            drop_kept(conninfo)
            filestore = work / f"filestore-{scale}"
            build(DB, filestore, scale, conninfo)
            execute(conninfo, DB, "VACUUM ANALYZE")
            (size,) = execute(conninfo, "postgres", f"SELECT pg_size_pretty(pg_database_size('{DB}'))")[0]
            for mode in ("fallback", "exact"):
                config = work / f"{mode}.toml"
                config.write_text(
                    f'[database]\nname = "{DB}"\nhost = "{conninfo["host"]}"\nport = {conninfo["port"]}\n'
                    f'user = "{conninfo["user"]}"\npassword = "{conninfo["password"]}"\n'
                    f'[filestore]\npath = "{filestore}"\n[storage]\npath = "{work / "storage" / mode}"\n'
                    f"jobs = {args.jobs}\n"
                    '[counts]\ntables = ["account_move", "res_partner", "einvoice_document"]\n'
                    # A shared server's long transactions would make the slot wait: be patient here.
                    f'[capture]\nmode = "{"auto" if mode == "exact" else "fallback"}"\nslot_wait_seconds = 900\n'
                )
                config.chmod(0o600)  # it holds the password: the helper refuses it readable by all
                cli = [sys.executable, "-m", "odoo_rollback.cli", "--config", str(config)]
                rows.append({"scale": scale, "size": size, **measure(cli, conninfo)})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        drop_kept(conninfo)
        shutil.rmtree(work, ignore_errors=True)
    header = f"{'size':>8} {'mode':<9} {'snapshot':>9} {'restore':>8} {'downtime':>9} {'lost_rows':>10} {'lost':>6}"
    print(header)
    for r in rows:
        print(
            f"{r['size']:>8} {r['mode']:<9} {r['snapshot']:>8.2f}s {r['restore']:>7.2f}s {r['downtime']:>8.2f}s "
            f"{r['lost_rows_step']:>9.2f}s {r['lost']:>6}"
        )
    for scale in sorted({r["scale"] for r in rows}):
        by_mode = {r["mode"]: r for r in rows if r["scale"] == scale}
        ratios = "  ".join(
            f"{what} {by_mode['exact'][what] / by_mode['fallback'][what]:.2f}"
            for what in ("snapshot", "restore", "downtime")
        )
        print(f"scale {scale}: exact / fallback  {ratios}")


if __name__ == "__main__":
    main()
