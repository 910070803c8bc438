"""Benchmarks of odoo-rollback against the raw commands it wraps, measured side by side in one run.

- snapshot: ``odoo-rollback snapshot`` vs ``pg_dump -Fd -jN -Z1`` then ``tar`` of the filestore
  (target ratio <= 1.10);
- restore: ``odoo-rollback restore --yes`` (its downtime: services stopped to services healthy, and its
  total) vs the runbook's ``dropdb; createdb; pg_restore -jN`` and ``tar`` of the filestore (targets:
  downtime <= 0.2 x, total <= 1.15 x). The restore stops and starts a real HTTP service (service.py)
  and waits for its health check, as a user waits for Odoo.

Usage: python bench/bench.py [--scale 1.0] (about 1 GB at scale 1.0). Prints a table and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from build_db import build
from pg import connection_info

# BENCH_DB: a name of one's own, when several people bench on the same server.
DB = os.environ.get("BENCH_DB", "rbbench")


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.monotonic()
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{args[0]} failed: {result.stderr.strip()[-500:]}")
    return time.monotonic() - started, result.stdout


def database_size(name: str, conninfo: dict[str, str]) -> str:
    conn = psycopg2.connect(dbname="postgres", **conninfo)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_size_pretty(pg_database_size(%s))", (name,))
            return str(cur.fetchone()[0])
    finally:
        conn.close()


SERVICE = Path(__file__).with_name("service.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_config(work: Path) -> str:
    """The stand-in service, stopped and started by the restore, and its health check."""
    port = free_port()
    (work / "service.port").write_text(str(port))
    pidfile = work / "service.pid"
    start = [sys.executable, str(SERVICE), "start", str(port), str(pidfile)]
    stop = [sys.executable, str(SERVICE), "stop", str(pidfile)]
    return (
        f'[services]\nbackend = "command"\nstart_command = {json.dumps(start)}\nstop_command = {json.dumps(stop)}\n'
        f'[health]\nurl = "http://127.0.0.1:{port}/"\ntimeout = 2\n'
    )


def service(work: Path, action: str) -> None:
    pidfile = work / "service.pid"
    if action == "start":
        subprocess.run(
            [sys.executable, str(SERVICE), "start", (work / "service.port").read_text(), str(pidfile)], check=True
        )
    else:
        subprocess.run([sys.executable, str(SERVICE), "stop", str(pidfile)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    env = {**os.environ, "PGHOST": os.environ.get("PGHOST", "127.0.0.1")}
    conninfo = connection_info()
    work = Path(tempfile.mkdtemp(prefix="rbbench-"))
    try:
        filestore = work / "filestore"
        print(f"building the database at scale {args.scale} ...", flush=True)
        build(DB, filestore, args.scale, conninfo)
        size = subprocess.run(
            ["psql", "-XtAc", f"SELECT pg_size_pretty(pg_database_size('{DB}'))", "-d", "postgres"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        config = work / "bench.toml"
        config.write_text(
            f'[database]\nname = "{DB}"\nhost = "{conninfo["host"]}"\nport = {conninfo["port"]}\n'
            f'user = "{conninfo["user"]}"\npassword = "{conninfo["password"]}"\n'
            f'[filestore]\npath = "{filestore}"\n[storage]\npath = "{work / "storage"}"\njobs = {args.jobs}\n'
            '[counts]\ntables = ["account_move", "account_move_line", "res_partner", "einvoice_document"]\n'
            + service_config(work)
        )
        config.chmod(0o600)  # it holds the password: the helper refuses it readable by all
        cli = [sys.executable, "-m", "odoo_rollback.cli", "--config", str(config)]

        raw_dir = work / "raw"
        raw_dir.mkdir()
        raw_dump_s, _ = timed(["pg_dump", "-Fd", f"-j{args.jobs}", "-Z1", "-f", str(raw_dir / "db.dump"), DB], env)
        raw_tar_s, _ = timed(["tar", "-c", "-f", str(raw_dir / "filestore.tar"), "-C", str(filestore), "."])
        raw_snapshot = raw_dump_s + raw_tar_s
        tool_snapshot, out = timed([*cli, "snapshot", "--kind", "pre_deploy", "--json"])
        snapshot_id = json.loads(out)["id"]
        timed([*cli, "verify", snapshot_id])  # the restore needs a good snapshot; not timed

        started = time.monotonic()
        subprocess.run(["dropdb", "--force", f"{DB}_raw"], env=env, capture_output=True, check=False)
        timed(["createdb", f"{DB}_raw"], env)
        timed(["pg_restore", f"-j{args.jobs}", "-d", f"{DB}_raw", str(raw_dir / "db.dump")], env)
        (raw_dir / "filestore").mkdir()
        timed(["tar", "-x", "-f", str(raw_dir / "filestore.tar"), "-C", str(raw_dir / "filestore")])
        raw_restore = time.monotonic() - started
        subprocess.run(["dropdb", "--force", f"{DB}_raw"], env=env, capture_output=True, check=False)

        service(work, "start")
        tool_restore, out = timed([*cli, "restore", snapshot_id, "--yes", "--json"])
        result = json.loads(out)
        downtime = result["downtime_seconds"]

        rows = [
            ("database size", size, "", ""),
            ("snapshot: pg_dump + tar", f"{raw_snapshot:.2f} s", "odoo-rollback snapshot", f"{tool_snapshot:.2f} s"),
            (
                "restore: dropdb; createdb; pg_restore",
                f"{raw_restore:.2f} s",
                "odoo-rollback restore (total)",
                f"{tool_restore:.2f} s",
            ),
            ("", "", "odoo-rollback restore (downtime)", f"{downtime:.2f} s"),
        ]
        for row in rows:
            print(f"{row[0]:<40} {row[1]:>10}   {row[2]:<34} {row[3]:>10}")
        print(f"snapshot ratio            {tool_snapshot / raw_snapshot:.2f}  (target <= 1.10)")
        print(f"restore total ratio       {tool_restore / raw_restore:.2f}  (target <= 1.15)")
        print(f"restore downtime ratio    {downtime / raw_restore:.2f}  (target <= 0.20)")
        for step in result["steps"]:
            print(f"  restore step {step['name']:<12} {step['seconds']:>8.2f} s")
    finally:
        service(work, "stop")
        for name in (DB, f"{DB}_raw"):
            subprocess.run(["dropdb", "--force", "--if-exists", name], env=env, capture_output=True, check=False)
        # The restore keeps the replaced database as rbbench__failed_<time>: drop it too.
        names = subprocess.run(
            ["psql", "-XtAc", "SELECT datname FROM pg_database", "-d", "postgres"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        for name in names:
            if name.startswith(f"{DB}__"):
                subprocess.run(["dropdb", "--force", name], env=env, capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
