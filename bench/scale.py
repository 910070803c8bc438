"""How snapshot, restore and a rollback with a warm standby grow with the database, against the raw tools.

For each size of a size list (GB of database, about 1 GB at 1.0, plus a filestore of Odoo-named
attachments), in one run:

- raw snapshot: ``pg_dump -Fd -j2 -Z1`` + ``tar``; ``odoo-rollback snapshot``;
- raw restore: ``dropdb; createdb; pg_restore -j2`` + ``tar -x``; ``odoo-rollback restore --yes`` (total,
  the downtime it reports, and how long a client probing every 0.2 s found the service unavailable),
  alternated ``--repeat`` times (3), medians reported, with the time until the service was back (the
  health check passed; the lost-changes export follows, inside the total);
- ``odoo-rollback standby build`` (low priority, 1 job) while a read load runs on the live database:
  its duration and how much slower the reads were than just before;
- ``odoo-rollback restore --yes`` again, now with the ready standby (the rollback is a swap).

The services are a stub: a Python HTTP server started and stopped by the ``command`` backend, with the
health check on it, so that the start step and the probes measure what a user sees.

Usage: SIZES="0.5 1 2" make bench-scale (python bench/scale.py --sizes 0.5 1 2). Prints a table and the
slopes in seconds per GB (least squares over the sizes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
from build_db import build
from pg import connection_info

DB = "rbscale"


def run(args: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} failed: {(result.stderr or result.stdout).strip()[-800:]}")
    return result.stdout


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    started = time.monotonic()
    out = run(args, env)
    return time.monotonic() - started, out


def rename_as_odoo(filestore: Path) -> None:
    """Odoo names an attachment by the SHA-1 of its content, in a bucket of its first two characters."""
    for path in [p for p in filestore.rglob("*") if p.is_file()]:
        sha1 = hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()
        target = filestore / sha1[:2] / sha1
        target.parent.mkdir(exist_ok=True)
        path.rename(target)


class Prober:
    """GET the service every 0.2 s; the longest run of failed probes is the unavailability a client sees."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.longest = 0.0
        self._down_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=1) as response:  # noqa: S310 - loopback
                    ok = response.status < 400
            except OSError:
                ok = False
            if ok and self._down_since is not None:
                self.longest = max(self.longest, now - self._down_since)
                self._down_since = None
            elif not ok and self._down_since is None:
                self._down_since = now
            self._stop.wait(max(0.0, 0.2 - (time.monotonic() - now)))

    @contextmanager
    def running(self) -> Iterator[Prober]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()
            if self._down_since is not None:
                self.longest = max(self.longest, time.monotonic() - self._down_since)


class ReadLoad:
    """Small indexed reads on the live database, as Odoo's list views make; latencies kept by phase."""

    def __init__(self, conninfo: dict[str, Any], moves: int) -> None:
        self.conninfo = conninfo
        self.moves = moves
        self.phase = "before"
        self.latencies: dict[str, list[float]] = {"before": [], "during": []}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = psycopg2.connect(dbname=DB, **self.conninfo)
        conn.autocommit = True
        rng = random.Random(1)  # noqa: S311 - a repeatable read pattern, not a secret
        with conn.cursor() as cur:
            while not self._stop.is_set():
                first = rng.randrange(1, max(2, self.moves - 200))
                started = time.monotonic()
                cur.execute(
                    "SELECT count(*), sum(debit) FROM account_move_line WHERE move_id BETWEEN %s AND %s",
                    (first, first + 200),
                )
                cur.fetchall()
                self.latencies[self.phase].append(time.monotonic() - started)
                self._stop.wait(0.05)
        conn.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def slowdown(self) -> float:
        before, during = self.latencies["before"], self.latencies["during"]
        if not before or not during:
            return float("nan")
        return statistics.median(during) / statistics.median(before)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(work: Path, conninfo: dict[str, Any], filestore: Path, jobs: int) -> tuple[Path, str]:
    port = free_port()
    www = work / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text("stub")
    pidfile = work / "stub.pid"
    # The stub service: started in the background, stopped by its pid (argument lists, no shell line
    # in the helper; sh here is the service manager's part).
    start = (
        f"{sys.executable} -m http.server {port} --bind 127.0.0.1 --directory {www} "
        f">/dev/null 2>&1 & echo $! > {pidfile}"
    )
    # Stopped once it is gone or a zombie (its parent shell is gone; whoever reaps it may take seconds).
    stop = (
        f"p=$(cat {pidfile}); kill $p 2>/dev/null; "
        'while s=$(ps -o stat= -p $p) && [ "${s#Z}" = "$s" ]; do sleep 0.02; done; true'
    )
    config = work / "scale.toml"
    config.write_text(
        f'[database]\nname = "{DB}"\nhost = "{conninfo["host"]}"\nport = {conninfo["port"]}\n'
        f'user = "{conninfo["user"]}"\npassword = "{conninfo["password"]}"\n'
        f'[filestore]\npath = "{filestore}"\n[storage]\npath = "{work / "storage"}"\njobs = {jobs}\n'
        '[counts]\ntables = ["account_move", "account_move_line", "res_partner", "einvoice_document"]\n'
        '[services]\nbackend = "command"\n'
        f"start_command = {json.dumps(['sh', '-c', start])}\nstop_command = {json.dumps(['sh', '-c', stop])}\n"
        f'[health]\nurl = "http://127.0.0.1:{port}/index.html"\ninterval = 0.2\nattempts = 150\ntimeout = 2\n'
        "[standby]\nenabled = true\njobs = 1\n"
    )
    config.chmod(0o600)  # it holds the password: the helper refuses it readable by all
    subprocess.run(["sh", "-c", start], check=True)
    return config, f"http://127.0.0.1:{port}/index.html"


def gb(nbytes: int) -> float:
    return nbytes / 1e9


def measure_snapshots(row: dict[str, Any], cli: list[str], work: Path, filestore: Path, jobs: int, env: Any) -> None:
    raw = work / "raw"
    raw.mkdir()
    dump_s, _ = timed(["pg_dump", "-Fd", f"-j{jobs}", "-Z1", "-f", str(raw / "db.dump"), DB], env)
    tar_s, _ = timed(["tar", "-c", "-f", str(raw / "filestore.tar"), "-C", str(filestore), "."])
    row["raw_snapshot"] = dump_s + tar_s
    row["snapshot"], _ = timed([*cli, "snapshot", "--kind", "pre_deploy", "--json"])


def measure_restores(
    row: dict[str, Any], cli: list[str], work: Path, url: str, jobs: int, env: Any, repeat: int
) -> None:
    """Raw and odoo-rollback restores, alternated *repeat* times; the medians are reported (one run
    each on this 2-core machine varies by 20 %, more than the difference being measured).

    Each helper restore restores a snapshot taken (untimed) just before it, after the raw restore, of
    the database it then replaces: the case of a deployment rolled back, whose lost changes come from
    the snapshot's slot, which then decodes the WAL written since the snapshot (the staging's, not the
    raw tools' too). Restoring one snapshot over its own restore instead would read every tracked
    table by timestamps (the database is no longer the snapshot's), which is the rare case."""
    raw = work / "raw"
    runs: dict[str, list[float]] = {
        "raw_restore": [],
        "restore": [],
        "restore_in_service": [],
        "restore_downtime": [],
        "restore_unavailable": [],
    }
    steps: dict[str, list[float]] = {}
    row["restore_runs"] = []
    for attempt in range(repeat):
        settle(env)
        started = time.monotonic()
        subprocess.run(["dropdb", "--force", "--if-exists", f"{DB}_raw"], env=env, capture_output=True, check=False)
        run(["createdb", f"{DB}_raw"], env)
        run(["pg_restore", f"-j{jobs}", "-d", f"{DB}_raw", str(raw / "db.dump")], env)
        (work / "raw_fs").mkdir()
        run(["tar", "-x", "-f", str(raw / "filestore.tar"), "-C", str(work / "raw_fs")])
        runs["raw_restore"].append(time.monotonic() - started)
        subprocess.run(["dropdb", "--force", f"{DB}_raw"], env=env, capture_output=True, check=False)
        shutil.rmtree(work / "raw_fs")
        snapshot_id = json.loads(run([*cli, "snapshot", "--kind", "pre_deploy", "--verify", "--json"]))["id"]
        settle(env)
        with Prober(url).running() as prober:
            seconds, out = timed([*cli, "restore", snapshot_id, "--yes", "--json"])
        result = json.loads(out)
        runs["restore"].append(seconds)
        # Back in service once the health check passed: what follows (the lost-changes export, read
        # from the replaced database) is inside the total but no longer keeps anyone waiting.
        after_start = sum(s["seconds"] for s in result["steps"] if s["name"] == "lost_rows" and not s.get("skipped"))
        runs["restore_in_service"].append(seconds - after_start)
        runs["restore_downtime"].append(result["downtime_seconds"])
        runs["restore_unavailable"].append(prober.longest)
        for step in result["steps"]:
            if not step.get("skipped"):
                steps.setdefault(step["name"], []).append(step["seconds"])
        row["restore_runs"].append(
            f"raw {runs['raw_restore'][-1]:.2f} restore {seconds:.2f}: "
            + ", ".join(f"{s['name']} {s['seconds']:.2f}" for s in result["steps"] if not s.get("skipped"))
        )
        print(f"  run {attempt + 1}: {row['restore_runs'][-1]}", flush=True)
        drop_kept(env)
    row.update({key: statistics.median(values) for key, values in runs.items()})
    row["restore_ratios"] = [ours / raw_s for ours, raw_s in zip(runs["restore"], runs["raw_restore"], strict=True)]
    row["restore_steps"] = {name: statistics.median(values) for name, values in steps.items()}


def settle(env: Any) -> None:
    """A checkpoint before each timed restore, so that neither pays for writing back what the one
    before it left dirty (the server's and the kernel's buffers)."""
    run(["psql", "-XqAtc", "CHECKPOINT", "-d", "postgres"], env)
    os.sync()


def drop_kept(env: Any) -> None:
    """The database each restore replaced and kept: not needed here, and each is the database's size."""
    names = run(["psql", "-XtAc", "SELECT datname FROM pg_database", "-d", "postgres"], env).split()
    for name in names:
        if name.startswith(f"{DB}__failed_"):
            subprocess.run(["dropdb", "--force", name], env=env, capture_output=True, check=False)


def measure_standby(row: dict[str, Any], cli: list[str], url: str, conninfo: Any, moves: int) -> None:
    # A snapshot of the live database (untimed), as a deployment takes one: the rollback replaces the
    # database the snapshot was taken of.
    snapshot_id = json.loads(run([*cli, "snapshot", "--kind", "pre_deploy", "--verify", "--json"]))["id"]
    load = ReadLoad(conninfo, moves)
    load.start()
    time.sleep(5)
    load.phase = "during"
    row["standby_build"], out = timed([*cli, "standby", "build", snapshot_id, "--json"])
    load.stop()
    row["read_slowdown"] = load.slowdown()
    standby = json.loads(out)
    row["standby_linked"], row["standby_copied"] = standby["linked"], standby["copied"]
    with Prober(url).running() as prober:
        row["rollback"], out = timed([*cli, "restore", snapshot_id, "--yes", "--json"])
    result = json.loads(out)
    if not any(s["name"] == "staging" and s.get("skipped") for s in result["steps"]):
        sys.exit("the rollback did not use the standby")
    row["rollback_downtime"], row["rollback_unavailable"] = result["downtime_seconds"], prober.longest
    row["rollback_steps"] = {s["name"]: s["seconds"] for s in result["steps"] if not s.get("skipped")}


def measure(size: float, jobs: int, repeat: int, env: dict[str, str], conninfo: dict[str, Any]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rbscale-"))
    filestore = work / "data" / "filestore" / DB
    row: dict[str, Any] = {"scale": size}
    try:
        print(f"[{size}] building the database ...", flush=True)
        build(DB, filestore, size, conninfo)
        rename_as_odoo(filestore)
        conn = psycopg2.connect(dbname=DB, **conninfo)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_database_size(%s), (SELECT max(id) FROM account_move)", (DB,))
            db_bytes, moves = cur.fetchone()
        conn.close()
        fs_bytes = sum(p.stat().st_size for p in filestore.rglob("*") if p.is_file())
        row.update(db_gb=gb(db_bytes), fs_mb=fs_bytes / 1e6)
        config, url = write_config(work, conninfo, filestore, jobs)
        cli = [sys.executable, "-m", "odoo_rollback.cli", "--config", str(config)]
        print(f"[{size}] snapshots ...", flush=True)
        measure_snapshots(row, cli, work, filestore, jobs, env)
        print(f"[{size}] restores ...", flush=True)
        measure_restores(row, cli, work, url, jobs, env, repeat)
        print(f"[{size}] standby, with a read load, then the rollback with it ...", flush=True)
        measure_standby(row, cli, url, conninfo, moves)
        return row
    finally:
        subprocess.run(["sh", "-c", f"kill $(cat {work / 'stub.pid'}) 2>/dev/null; true"], check=False)
        names = run(["psql", "-XtAc", "SELECT datname FROM pg_database", "-d", "postgres"], env).split()
        for name in names:
            if name == DB or name.startswith(f"{DB}__") or name == f"{DB}_raw":
                subprocess.run(["dropdb", "--force", name], env=env, capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


COLUMNS = [
    ("raw_snapshot", "raw snap"),
    ("snapshot", "snapshot"),
    ("raw_restore", "raw rest"),
    ("restore", "restore"),
    ("restore_downtime", "down"),
    ("restore_unavailable", "unavail"),
    ("standby_build", "standby"),
    ("rollback", "rollback"),
    ("rollback_downtime", "down"),
    ("rollback_unavailable", "unavail"),
]


def report(rows: list[dict[str, Any]]) -> str:
    head = "| database | filestore | " + " | ".join(title for _, title in COLUMNS) + " | reads during standby |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for r in rows:
        cells = " | ".join(f"{r[key]:.1f} s" for key, _ in COLUMNS)
        lines.append(f"| {r['db_gb']:.2f} GB | {r['fs_mb']:.0f} MB | {cells} | x{r['read_slowdown']:.2f} |")
    xs = [r["db_gb"] for r in rows]
    slopes = " | ".join(f"{slope(xs, [r[key] for r in rows]):.1f}" for key, _ in COLUMNS)
    lines.append(f"| slope, s/GB | | {slopes} | |")
    lines.append("")
    for r in rows:
        lines.append(
            f"{r['db_gb']:.2f} GB: restore {r['restore'] / r['raw_restore']:.2f} x raw (median of each; run by "
            f"run {', '.join(f'{x:.2f}' for x in r['restore_ratios'])}), back in service after "
            f"{r['restore_in_service'] / r['raw_restore']:.2f} x raw, snapshot "
            f"{r['snapshot'] / r['raw_snapshot']:.2f} x raw; the standby linked {r['standby_linked']} "
            f"attachment(s) and copied {r['standby_copied']}; rollback steps: "
            + ", ".join(f"{name} {seconds:.2f}" for name, seconds in r["rollback_steps"].items())
            + "; restore steps (median): "
            + ", ".join(f"{name} {seconds:.2f}" for name, seconds in r["restore_steps"].items())
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="raw and helper restores alternated this many times")
    args = parser.parse_args()
    env = {**os.environ, "PGHOST": os.environ.get("PGHOST", "127.0.0.1")}
    conninfo: dict[str, Any] = {**connection_info()}
    rows = []
    for size in args.sizes:
        rows.append(measure(size, args.jobs, args.repeat, env, conninfo))
        print(report(rows[-1:]).splitlines()[2], flush=True)  # each size's row as soon as it is measured
    print()
    print(
        f"sizes {' '.join(str(s) for s in args.sizes)}, {args.jobs} jobs, {os.cpu_count()} CPUs, "
        f"restores x{args.repeat}, load average {os.getloadavg()[0]:.1f}"
    )
    print(report(rows))


if __name__ == "__main__":
    main()
