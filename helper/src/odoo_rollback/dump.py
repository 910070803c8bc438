"""pg_dump and pg_restore.

Directory format with parallel jobs and light compression (-Z1): measured on this kind of machine
(FACTS.md) it dumps a 1.8 GB database 3x faster than the custom format at 10% more size, and it is the
only format pg_restore can restore with parallel jobs *and* read without a seek-capable file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from psycopg2 import sql

from .config import DatabaseConfig
from .db import database_exists, end_sessions, maintenance
from .errors import OperationFailed, PreconditionError
from .process import run, run_streaming
from .progress import count_tables
from .role import creating_problems, require

DUMP_COMPRESSION = "1"


def dump_database(
    db_cfg: DatabaseConfig, dbname: str, target_path: Path, jobs: int, snapshot: str | None = None
) -> None:
    """Dump *dbname* into the directory *target_path* (which must not exist).

    *snapshot* is an exported snapshot (pg_export_snapshot()): the dump then sees exactly what the
    exporting transaction sees, so counts read there describe the dump.
    """
    run(
        [
            "pg_dump",
            *([f"--snapshot={snapshot}"] if snapshot else []),
            "--format=directory",
            f"--jobs={jobs}",
            f"--compress={DUMP_COMPRESSION}",
            "--no-password",
            f"--file={target_path}",
            f"--dbname={dbname}",
        ],
        env=db_cfg.libpq_env(),
        what="pg_dump",
    )


def list_dump(dump_path: Path) -> str:
    """The table of contents of a dump; raises OperationFailed if pg_restore cannot read it."""
    return run(["pg_restore", "--list", str(dump_path)], what="pg_restore --list").stdout


def database_owner(db_cfg: DatabaseConfig, dbname: str) -> str | None:
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (dbname,))
        row = cur.fetchone()
    return row[0] if row else None


def create_database(db_cfg: DatabaseConfig, name: str, owner: str | None) -> None:
    with maintenance(db_cfg) as conn:
        if database_exists(conn, name):
            raise PreconditionError(f"database {name} already exists; refusing to overwrite it")
        require(f"create database {name}", creating_problems(db_cfg, owner))
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name))
        if owner:
            statement = statement + sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        with conn.cursor() as cur:
            cur.execute(statement)


def drop_database(db_cfg: DatabaseConfig, name: str) -> None:
    """Drop *name*, ending its sessions first. Only ever called on databases this helper made."""
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        end_sessions(conn, name)
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def restore_scratch(
    db_cfg: DatabaseConfig, dump_path: Path, target_dbname: str, jobs: int, show_progress: bool
) -> None:
    """Restore into a scratch database (a drill's, a deep verify's) owned as the live database is, as
    staging is: the dump gives its tables to that role, which a helper that is not a superuser can do
    only in a database that role owns. Analyzed, not vacuumed, as staging is: a drill times what a
    rollback does, and a scratch copy is dropped after its checks."""
    owner = database_owner(db_cfg, db_cfg.name)
    restore_dump(db_cfg, dump_path, target_dbname, jobs, owner=owner, show_progress=show_progress, vacuum=False)


# How long a restore's sessions wait on a lock before PostgreSQL runs its deadlock check, the check
# that also cancels an autovacuum in the way. Autovacuum visits a new database within
# autovacuum_naptime and starts on the tables pg_restore has just loaded; the index build, foreign key
# or ANALYZE that then needs the table waited the default 1 s each time. Measured at 0.5 GB, five
# alternated restores each: 7.96-10.76 s with the default, 7.98-8.48 s with 20 ms (the server's log
# showed seven autovacuums cancelled).
AUTOVACUUM_WAIT = "20ms"


def with_options(env: dict[str, str], *options: str) -> dict[str, str]:
    """*env* with ``-c`` *options* added to PGOPTIONS, for every session of a program run with it."""
    added = " ".join(f"-c {option}" for option in options)
    return {**env, "PGOPTIONS": f"{env.get('PGOPTIONS', '')} {added}".strip()}


def may_set(db_cfg: DatabaseConfig, parameter: str) -> bool:
    """Whether the helper's role may set *parameter* (``superuser`` context) in its own sessions:
    a superuser, or since PostgreSQL 15 a role granted SET on it. Otherwise asking for it in
    PGOPTIONS would refuse the connection."""
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        if conn.server_version >= 150000:
            cur.execute("SELECT has_parameter_privilege(%s, 'SET')", (parameter,))
        else:
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        return bool(cur.fetchone()[0])


def restore_sessions(db_cfg: DatabaseConfig) -> dict[str, str]:
    """The environment of pg_restore's and vacuumdb's sessions on a copy being restored.

    They commit asynchronously: pg_restore commits once per table, index and constraint, vacuumdb once
    per table, an Odoo database has thousands of them, and each synchronous commit waits for a WAL
    flush (an 800-table schema restored in 13.5 s with, 7.9 s without; the analyze of the 0.5 GB bench
    database 0.38 s against 0.43 s). Losing the last commits in a server crash cannot hurt: the
    database being restored is not live, and :func:`make_durable`, after both, proves that the server
    did not restart before flushing it all. Where the role may ask for it, they also yield quickly to an
    autovacuum (:data:`AUTOVACUUM_WAIT`).
    """
    yielding = (f"deadlock_timeout={AUTOVACUUM_WAIT}",) if may_set(db_cfg, "deadlock_timeout") else ()
    return with_options(db_cfg.libpq_env(), "synchronous_commit=off", *yielding)


def server_state(db_cfg: DatabaseConfig) -> tuple[str, str]:
    """The server's start time (see :func:`make_durable`) and its ``wal_level``."""
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_postmaster_start_time()::text, current_setting('wal_level')")
        started, wal_level = cur.fetchone()
        return str(started), str(wal_level)


def postmaster_start_time(db_cfg: DatabaseConfig) -> str:
    return server_state(db_cfg)[0]


def restore_runs(wal_level: str, jobs: int) -> list[list[str]]:
    """pg_restore's runs, each a list of its own arguments; every item of a dump is in one section.

    In one run with jobs, pg_restore truncates each table it created right before loading it, in the
    load's transaction, so that ``wal_level = minimal`` can skip the load's WAL. At any other level that
    is a TRUNCATE (new files for the table, its TOAST table and index) per table for nothing: the
    schema is restored first in a run of its own, and the second run loads tables it did not create.
    The bench database (454 tables, 0.5 GB) restored in 7.45 s instead of 7.70 s (four alternated runs
    each, medians).
    """
    if wal_level == "minimal":
        return [[f"--jobs={jobs}"]]
    # The schema is one statement after another whatever the jobs: no workers for it.
    return [["--section=pre-data"], [f"--jobs={jobs}", "--section=data", "--section=post-data"]]


def make_durable(db_cfg: DatabaseConfig, dbname: str, server_started: str) -> None:
    """Flush to disk everything restored into *dbname* with asynchronous commits, or refuse it.

    A synchronous commit flushes the WAL up to its own record, so everything committed before it, by
    any session, is durable once it returns. A server that restarted since the restore began may have
    lost the last asynchronous commits (a table or an index short): the copy is then not trusted.
    """
    with maintenance(db_cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_postmaster_start_time()::text")
        if str(cur.fetchone()[0]) != server_started:
            raise OperationFailed(
                f"PostgreSQL restarted while {dbname} was being restored: its last commits may be lost, "
                "so it is not used"
            )
        cur.execute("SET synchronous_commit = on")
        cur.execute("SELECT pg_current_xact_id()")  # a transaction id, so that its commit is flushed


def vacuum_analyze(env: dict[str, str], dbname: str, jobs: int, vacuum: bool = True) -> None:
    """Statistics for every table of *dbname*, *jobs* tables at a time; with *vacuum*, VACUUM (ANALYZE).

    The statistics are what the planner needs before the first query (pg_restore leaves none). The
    vacuum also sets the visibility map and hint bits, so that a copy nobody waits for (a standby, a
    ``copy``) is as fast to read as the database it came from. On a rollback's path the vacuum is
    left to autovacuum, which since PostgreSQL 13 vacuums a table after bulk inserts on its own, as it
    does after any restore: measured at 0.5 GB (bench/), ``--analyze`` took 1.0 s where
    ``--analyze-only`` took 0.5 s, and the vacuum grows with the database where the statistics, a
    sample of each table, do not.
    """
    run(
        [
            "vacuumdb",
            "--analyze" if vacuum else "--analyze-only",
            f"--jobs={jobs}",
            "--quiet",
            "--no-password",
            f"--dbname={dbname}",
        ],
        env=env,
        what="vacuumdb --analyze" if vacuum else "vacuumdb --analyze-only",
    )


def restore_dump(
    db_cfg: DatabaseConfig,
    dump_path: Path,
    target_dbname: str,
    jobs: int,
    owner: str | None = None,
    show_progress: bool = False,
    vacuum: bool = True,
    loaded: Callable[[], None] | None = None,
) -> None:
    """Create *target_dbname* and restore the dump into it with parallel jobs, then analyze it (and
    with *vacuum*, vacuum it: see :func:`vacuum_analyze`). *loaded* is called once pg_restore is done,
    before the analyze.

    Refuses an existing target. On failure the half-made database is dropped and OperationFailed says
    pg_restore's last error.
    """
    server_started, wal_level = server_state(db_cfg)
    env = restore_sessions(db_cfg)
    create_database(db_cfg, target_dbname, owner)
    try:
        common = ["--exit-on-error", "--no-password", f"--dbname={target_dbname}", str(dump_path)]
        runs = [["pg_restore", *own, *common] for own in restore_runs(wal_level, jobs)]
        if show_progress:
            tables = sum(" TABLE DATA " in line for line in list_dump(dump_path).splitlines())
            with count_tables(True, f"restore {target_dbname}", tables) as on_line:
                for args in runs:
                    run_streaming([*args, "--verbose"], env, "pg_restore", on_line)
        else:
            for args in runs:
                run(args, env=env, what="pg_restore")
        if loaded is not None:
            loaded()
        vacuum_analyze(env, target_dbname, jobs, vacuum)
        make_durable(db_cfg, target_dbname, server_started)
    except BaseException:
        # The original error matters more than a failed clean-up; the caller journals the name.
        with contextlib.suppress(Exception):
            drop_database(db_cfg, target_dbname)
        raise


__all__ = [
    "OperationFailed",
    "create_database",
    "drop_database",
    "dump_database",
    "list_dump",
    "make_durable",
    "may_set",
    "postmaster_start_time",
    "restore_dump",
    "restore_runs",
    "restore_scratch",
    "restore_sessions",
    "server_state",
    "vacuum_analyze",
    "with_options",
]
