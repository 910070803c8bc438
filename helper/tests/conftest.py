"""Fixtures on real parts: a real PostgreSQL server, real files, the real command line.

Every database a test creates has a unique name and is dropped afterwards, whatever happened.
Connection settings come from the environment written by ``make setup`` (.venv/test.env).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import psycopg2
import pytest
from odoo_rollback.api.client import HelperClient
from psycopg2 import sql

PG = {
    "host": os.environ.get("ROLLBACK_TEST_PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("ROLLBACK_TEST_PGPORT", "5432")),
    "user": os.environ.get("ROLLBACK_TEST_PGUSER", "rollback_helper"),
    "password": os.environ.get("ROLLBACK_TEST_PGPASSWORD", "rollback_helper"),
}
# Databases made by the tests carry this prefix, so a crashed run's leftovers are recognisable.
TEST_DB_PREFIX = "rbtest_"
SERVED_SECRET = b"a-long-random-secret-of-64-characters-for-the-helpers-api-tests!"


def pg_connect(dbname: str = "postgres") -> Any:
    conn = psycopg2.connect(dbname=dbname, **PG)
    conn.autocommit = True
    return conn


def drop_database(name: str) -> None:
    # Not "with conn": on psycopg2 2.9 that opens a transaction even in autocommit mode.
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            # A snapshot's slot left on a test database would hold the cluster's WAL for good (and
            # PostgreSQL refuses to drop a database that has one).
            cur.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = %s AND active",
                (name,),
            )
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s", (name,)
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def tail_slots() -> list[str]:
    """The read-ahead's second slots left on the server: a restore's (``__tail``), dropped whatever
    happens to it, and a warm standby's (``__standby``), which goes with its standby."""
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT slot_name::text FROM pg_replication_slots"
                " WHERE slot_name::text LIKE '%%\\_\\_tail' OR slot_name::text LIKE '%%\\_\\_standby'"
            )
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def as_superuser(*statements: sql.Composable) -> None:
    """Runs *statements* one by one as the test cluster's superuser, outside any transaction."""
    conn = pg_connect()
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def create_database(name: str) -> None:
    as_superuser(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def list_databases(prefix: str) -> list[str]:
    conn = pg_connect()
    with conn.cursor() as cur:
        cur.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname", (prefix + "%",))
        names = [row[0] for row in cur.fetchall()]
    conn.close()
    return names


# A small database shaped like Odoo's: the tables the helper reads (ir_module_module) and the
# tracked tables with create_date/write_date, as Odoo creates them.
ODOO_LIKE_SCHEMA = """
CREATE TABLE ir_module_module (
    id serial PRIMARY KEY, name varchar NOT NULL UNIQUE, state varchar, latest_version varchar
);
CREATE TABLE res_partner (
    id serial PRIMARY KEY, name varchar, email varchar,
    create_date timestamp DEFAULT (now() at time zone 'utc'),
    write_date timestamp DEFAULT (now() at time zone 'utc')
);
CREATE TABLE account_move (
    id serial PRIMARY KEY, name varchar, partner_id int REFERENCES res_partner(id),
    amount_total numeric, state varchar,
    create_date timestamp DEFAULT (now() at time zone 'utc'),
    write_date timestamp DEFAULT (now() at time zone 'utc')
);
INSERT INTO ir_module_module (name, state, latest_version) VALUES
    ('base', 'installed', '16.0.1.3'), ('mail', 'installed', '16.0.1.10'),
    ('account', 'installed', '16.0.1.2'), ('sale', 'uninstalled', NULL);
INSERT INTO res_partner (name, email)
    SELECT 'Partner ' || i, 'p' || i || '@example.com' FROM generate_series(1, %(partners)s) i;
INSERT INTO account_move (name, partner_id, amount_total, state)
    SELECT 'INV/' || i, 1 + (i %% %(partners)s), i * 1.5, 'posted' FROM generate_series(1, %(moves)s) i;
"""


@dataclass
class OdooLikeDatabase:
    name: str
    partners: int
    moves: int

    def execute(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        conn = pg_connect(self.name)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


@pytest.fixture
def odoo_db() -> Iterator[OdooLikeDatabase]:
    """A fresh Odoo-like database, dropped afterwards."""
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:10]}"
    conn = pg_connect()
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn.close()
    db = OdooLikeDatabase(name=name, partners=50, moves=200)
    try:
        db.execute(ODOO_LIKE_SCHEMA, {"partners": db.partners, "moves": db.moves})
        yield db
    finally:
        # Whatever a restore left behind: the staging, failed and scratch copies share the prefix.
        for leftover in list_databases(name):
            drop_database(leftover)


@pytest.fixture
def filestore(tmp_path: Path) -> Path:
    """A filestore folder laid out like Odoo's (two-character buckets of attachment files)."""
    root = tmp_path / "filestore"
    for i in range(30):
        bucket = root / f"{i:02x}"
        bucket.mkdir(parents=True, exist_ok=True)
        (bucket / f"{i:02x}{uuid.uuid4().hex}").write_bytes(os.urandom(256 + i * 64))
    return root


def toml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines: list[str] = []
    for section, values in sections.items():
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in scalars.items())
        for key, sub in values.items():
            if isinstance(sub, dict):
                lines.append(f"[{section}.{key}]")
                lines.extend(f"{k} = {toml_value(v)}" for k, v in sub.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)  # it holds the database password: the helper refuses it readable by everyone
    return path


@dataclass
class ConfiguredHelper:
    """A configured helper: its config sections, storage, and the command line to run it."""

    tmp_path: Path
    sections: dict[str, dict[str, Any]]

    @property
    def storage(self) -> Path:
        return Path(self.sections["storage"]["path"])

    @property
    def config_path(self) -> Path:
        return self.tmp_path / "odoo-rollback.toml"

    def write(self, **overrides: dict[str, Any]) -> Path:
        """(Re)write the config file, merging *overrides* section by section."""
        for section, values in overrides.items():
            self.sections.setdefault(section, {}).update(values)
        return write_config(self.config_path, self.sections)

    def run(
        self, *args: str, check: bool = False, timeout: float = 600, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``odoo-rollback`` command line with this config."""
        self.write()
        cmd = [sys.executable, "-m", "odoo_rollback.cli", "--config", str(self.config_path), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{cmd} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def run_json(self, *args: str, **kwargs: Any) -> Any:
        result = self.run(*args, "--json", check=True, **kwargs)
        return json.loads(result.stdout)


@dataclass
class HelperEnv(ConfiguredHelper):
    """The helper configured for a test's Odoo-like database and filestore."""

    db: OdooLikeDatabase
    filestore: Path


@pytest.fixture
def helper_env(tmp_path: Path, odoo_db: OdooLikeDatabase, filestore: Path) -> HelperEnv:
    sections: dict[str, dict[str, Any]] = {
        "database": {"name": odoo_db.name, **PG},
        "filestore": {"path": str(filestore)},
        "storage": {"path": str(tmp_path / "storage")},
        "counts": {"tables": ["account_move", "res_partner", "einvoice_document"]},
        "services": {"backend": "none"},
        # A deploy builds a warm standby in the background; the tests of standbys turn it on.
        "standby": {"enabled": False},
    }
    env = HelperEnv(tmp_path=tmp_path, db=odoo_db, filestore=filestore, sections=sections)
    env.write()
    return env


def databases_seen_by_the_services(helper: ConfiguredHelper, prefix: str) -> dict[str, Path]:
    """The command backend, whose stop and start each write down the databases named *prefix*...
    with their oids, as the services would find them: what was restored during the downtime shows."""
    seen = {when: helper.tmp_path / f"databases-at-{when}.txt" for when in ("stop", "start")}
    query = f"SELECT datname || ' ' || oid FROM pg_database WHERE datname LIKE '{prefix}%' ORDER BY 1"
    psql = f"PGPASSWORD={PG['password']} psql -h {PG['host']} -p {PG['port']} -U {PG['user']} -d postgres -Atc"
    helper.write(
        services={
            "backend": "command",
            **{f"{when}_command": ["sh", "-c", f'{psql} "{query}" > {path}'] for when, path in seen.items()},
        }
    )
    return seen


def read_databases_seen(path: Path) -> dict[str, int]:
    """Name -> oid, as the stop or the start wrote them down."""
    return {name: int(oid) for name, oid in (line.split() for line in path.read_text().splitlines())}


# -- restore helpers ------------------------------------------------------------------------------
def database_counts(name: str) -> dict[str, int]:
    conn = pg_connect(name)
    try:
        with conn.cursor() as cur:
            counts = {}
            for table in ("account_move", "res_partner"):
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                counts[table] = cur.fetchone()[0]
            return counts
    finally:
        conn.close()


def table_maintenance(dbname: str, table: str) -> dict[str, bool]:
    """Whether the helper analyzed and vacuumed *table* of *dbname* (autovacuum's own runs are apart)."""
    conn = pg_connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT last_analyze IS NOT NULL, last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = %s",
                (table,),
            )
            analyzed, vacuumed = cur.fetchone()
            return {"analyzed": analyzed, "vacuumed": vacuumed}
    finally:
        conn.close()


@contextmanager
def autovacuum_working_in(dbname: str) -> Iterator[int]:
    """An autovacuum worker busy in *dbname* the whole block (its pid): a process with no role, which
    PostgreSQL 15 lets no role but a superuser end. The server is told to look every second until the
    worker starts on a table vacuumed as slowly as PostgreSQL allows, then back to its own pace."""
    conn = pg_connect(dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE rbtest_slow_vacuum (pad text) WITH (autovacuum_vacuum_threshold = 0,"
                " autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100,"
                " autovacuum_vacuum_cost_limit = 1)"
            )
            cur.execute("INSERT INTO rbtest_slow_vacuum SELECT repeat('x', 200) FROM generate_series(1, 20000)")
            cur.execute("DELETE FROM rbtest_slow_vacuum")
    finally:
        conn.close()
    admin = pg_connect()
    try:
        with admin.cursor() as cur:
            cur.execute("ALTER SYSTEM SET autovacuum_naptime = '1s'")
            cur.execute("SELECT pg_reload_conf()")
            try:
                deadline = time.monotonic() + 60
                pid = None
                while pid is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                    cur.execute(
                        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND datname = %s",
                        (dbname,),
                    )
                    row = cur.fetchone()
                    pid = row[0] if row else None
            finally:
                cur.execute("ALTER SYSTEM RESET autovacuum_naptime")
                cur.execute("SELECT pg_reload_conf()")
        assert pid is not None, f"no autovacuum worker came to {dbname} within 60 s"
        yield pid
    finally:
        admin.close()


@pytest.fixture
def snapshot_then_changes(helper_env: HelperEnv) -> dict[str, Any]:
    """A verified pre_deploy snapshot, then a deployment that changed data and the filestore."""
    snap = helper_env.run_json("snapshot", "--kind", "pre_deploy", "--verify")
    helper_env.db.execute("INSERT INTO res_partner (name) SELECT 'after ' || i FROM generate_series(1, 7) i")
    helper_env.db.execute("DELETE FROM account_move WHERE id <= 20")
    (helper_env.filestore / "ff").mkdir()
    (helper_env.filestore / "ff" / "new-attachment").write_bytes(b"written after the snapshot")
    return snap


# -- Docker: a tiny local image and a stand-in compose project ------------------------------------
TEST_IMAGE = "odoo-rollback-test/busybox:1"


@pytest.fixture(scope="session")
def docker_image() -> str:
    client = docker.from_env()
    try:
        client.images.get(TEST_IMAGE)
        return TEST_IMAGE
    except docker.errors.ImageNotFound:
        pass
    finally:
        client.close()
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail("Debian's busybox-static is needed to build the test image (apt-get install busybox-static)")
    with tempfile.TemporaryDirectory() as root:
        (Path(root) / "bin").mkdir()
        (Path(root) / "www").mkdir()
        (Path(root) / "bin" / "busybox").write_bytes(busybox.read_bytes())
        (Path(root) / "bin" / "busybox").chmod(0o755)
        for applet in ("sh", "httpd", "sleep", "cat", "echo"):
            (Path(root) / "bin" / applet).symlink_to("busybox")
        tar = subprocess.run(["tar", "-C", root, "-c", "."], capture_output=True, check=True).stdout
        subprocess.run(["docker", "import", "-", TEST_IMAGE], input=tar, capture_output=True, check=True)
    return TEST_IMAGE


@dataclass
class ComposeStandIn:
    project: str
    port: int
    www: Path
    containers: dict[str, Any]  # compose service -> container
    client: Any = None  # the containers' Docker client, closed with them

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/index.html"

    def states(self) -> dict[str, str]:
        for container in self.containers.values():
            container.reload()
        return {service: container.status for service, container in self.containers.items()}


def start_compose_stand_in(
    docker_image: str, tmp_path: Path, prefix: str, odoo_command: Callable[[int], list[str]]
) -> ComposeStandIn:
    """Containers labelled like a compose project: db and nginx (sleeping) and odoo, whose command is
    given the loopback port it must serve on. The caller removes them (``remove_compose_stand_in``)."""
    client = docker.from_env()
    project = f"{prefix}{uuid.uuid4().hex[:8]}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<html>Odoo stand-in</html>")
    stand_in = ComposeStandIn(project, port, www, {}, client)
    try:
        for service, command in (
            ("db", ["/bin/sleep", "3600"]),
            ("odoo", odoo_command(port)),
            ("nginx", ["/bin/sleep", "3600"]),
        ):
            stand_in.containers[service] = client.containers.run(
                docker_image,
                command,
                detach=True,
                network_mode="host",
                labels={"com.docker.compose.project": project, "com.docker.compose.service": service},
                volumes={str(www): {"bind": "/www", "mode": "ro"}},
                name=f"{project}-{service}",
            )
    except BaseException:
        remove_compose_stand_in(stand_in)
        raise
    return stand_in


def remove_compose_stand_in(stand_in: ComposeStandIn) -> None:
    for container in stand_in.containers.values():
        container.remove(force=True)
    stand_in.client.close()


@pytest.fixture
def compose_project(docker_image: str, tmp_path: Path) -> Iterator[ComposeStandIn]:
    """A compose project whose odoo is busybox httpd on loopback."""
    stand_in = start_compose_stand_in(
        docker_image, tmp_path, "rbtest", lambda port: ["/bin/httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"]
    )
    try:
        yield stand_in
    finally:
        remove_compose_stand_in(stand_in)


# -- the API: a real `odoo-rollback serve` on a Unix socket, and a signed client -------------------
class Served:
    def __init__(
        self, socket_path: Path, secret: bytes, database: str, process: subprocess.Popen[str], log: Path
    ) -> None:
        self.socket_path = socket_path
        self.client = HelperClient(f"unix:{socket_path}", secret, database)
        self.process = process
        self.log = log

    def wait_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = self.client.request("GET", f"/v1/jobs/{job_id}")
            assert status == 200
            if job["state"] in ("done", "failed"):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish")


@pytest.fixture
def served(helper_env: HelperEnv, tmp_path: Path) -> Iterator[Served]:
    secret_file = tmp_path / "api-secret"
    secret_file.write_text(SERVED_SECRET.decode() + "\n")
    secret_file.chmod(0o640)
    socket_path = tmp_path / "api.sock"
    helper_env.write(api={"socket": str(socket_path), "secret_file": str(secret_file), "max_clock_skew": 60})
    log = tmp_path / "serve.log"
    with log.open("w") as log_handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "odoo_rollback.cli", "--config", str(helper_env.config_path), "serve"],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
    deadline = time.monotonic() + 20
    while not socket_path.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield Served(socket_path, SERVED_SECRET, helper_env.db.name, process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


@contextmanager
def tmpfs(path: Path, size: int | str, inodes: int | None = None) -> Iterator[Path]:
    """A small file system mounted at *path* for a disk-full case (skipped where mounting is refused);
    *inodes* limits its files too, so that it fills with room left in bytes."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes is not None else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)
