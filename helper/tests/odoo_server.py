"""A real Odoo 16 server for the tests, on a loopback port, with a database of its own.

The database is created by ``odoo-bin -i base,account,l10n_generic_coa`` (the generic chart of
accounts, for invoices; about 25 s here), the server runs as a subprocess of the tests, and both are
removed afterwards, whatever happened. ``$ODOO_SRC`` and ``$ODOO_RC`` come from ``.venv/test.env``.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import TEST_DB_PREFIX, drop_database

START_TIMEOUT = 180  # seconds for the server to answer /web/login
INSTALL_TIMEOUT = 900


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OdooServer:
    database: str
    data_dir: Path
    log_path: Path
    odoo_bin: Path
    odoo_rc: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    made: dict[str, Any] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def filestore(self) -> Path:
        return self.data_dir / "filestore" / self.database

    def odoo(self, *args: str) -> list[str]:
        return [sys.executable, str(self.odoo_bin), "-c", str(self.odoo_rc), f"--data-dir={self.data_dir}", *args]

    def install(self) -> None:
        result = subprocess.run(
            self.odoo(
                "-d",
                self.database,
                "-i",
                "base,account,l10n_generic_coa",
                "--stop-after-init",
                "--without-demo=all",
                "--log-level=warn",
                f"--logfile={self.log_path}",
            ),
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"installing the test database failed ({result.returncode}):\n{self.log_tail()}{result.stderr}")

    def start(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            self.odoo(
                "-d",
                self.database,
                f"--db-filter=^{self.database}$",
                "--http-interface=127.0.0.1",
                f"--http-port={self.port}",
                "--workers=0",
                "--max-cron-threads=0",
                "--log-level=warn",
                f"--logfile={self.log_path}",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the Odoo server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/web/login", timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"the Odoo server did not answer /web/login in {START_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]) + "\n"
        except OSError:
            return ""

    # -- JSON-RPC, as the test's own client (the helper's is what is under test) ------------------
    def rpc(self, service: str, method: str, *args: Any) -> Any:
        payload = {
            "jsonrpc": "2.0",
            "method": "call",
            "id": next(self._ids),
            "params": {"service": service, "method": method, "args": list(args)},
        }
        request = urllib.request.Request(
            f"{self.url}/jsonrpc", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        if answer.get("error"):
            raise AssertionError(f"RPC {service}.{method} failed: {answer['error']}")
        return answer["result"]

    def execute(self, login: str, password: str, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        uid = self.rpc("common", "login", self.database, login, password)
        assert uid, f"cannot log in as {login}"
        return self.rpc("object", "execute_kw", self.database, uid, password, model, method, list(args), kwargs)


# The smoke's RPC user: an internal user who may read invoices, with a password known to the tests.
SMOKE_LOGIN = "smoke"
SMOKE_PASSWORD = f"smoke-{uuid.uuid4().hex}"


def prepare(server: OdooServer) -> dict[str, Any]:
    """A read-only smoke user and one posted customer invoice, made over RPC as a fresh database's admin."""

    def admin(model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        # A database created without demo data has admin/admin.
        return server.execute("admin", "admin", model, method, *args, **kwargs)

    groups = admin(
        "ir.model.data",
        "search_read",
        [
            "|",
            "&",
            ("module", "=", "base"),
            ("name", "=", "group_user"),
            "&",
            ("module", "=", "account"),
            ("name", "=", "group_account_readonly"),
        ],
        fields=["res_id"],
    )
    assert len(groups) == 2
    admin(
        "res.users",
        "create",
        {
            "name": "Smoke check",
            "login": SMOKE_LOGIN,
            "password": SMOKE_PASSWORD,
            "groups_id": [(6, 0, [g["res_id"] for g in groups])],
        },
    )
    partner_id = admin("res.partner", "create", {"name": "Smoke Customer"})
    move_id = admin(
        "account.move",
        "create",
        {
            "move_type": "out_invoice",
            "partner_id": partner_id,
            "invoice_line_ids": [(0, 0, {"name": "Consulting", "quantity": 2, "price_unit": 50.0})],
        },
    )
    admin("account.move", "action_post", [move_id])
    invoice = admin("account.move", "read", [move_id], fields=["name", "state"])[0]
    assert invoice["state"] == "posted"
    return {"invoice": invoice["name"], "partner_id": partner_id}


@pytest.fixture(scope="module")
def odoo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OdooServer]:
    odoo_src, odoo_rc = os.environ.get("ODOO_SRC"), os.environ.get("ODOO_RC")
    if not odoo_src or not odoo_rc or not (Path(odoo_src) / "odoo-bin").is_file():
        pytest.fail("ODOO_SRC and ODOO_RC must name Odoo 16's source and config (set -a; . .venv/test.env)")
    root = tmp_path_factory.mktemp("odoo")
    server = OdooServer(
        database=f"{TEST_DB_PREFIX}odoo_{uuid.uuid4().hex[:8]}",
        data_dir=root / "data",
        log_path=root / "odoo.log",
        odoo_bin=Path(odoo_src) / "odoo-bin",
        odoo_rc=Path(odoo_rc),
    )
    try:
        started = time.monotonic()
        server.install()
        sys.stderr.write(f"\nodoo-bin -i base,account,l10n_generic_coa took {time.monotonic() - started:.0f} s\n")
        server.start()
        server.made = prepare(server)
        yield server
    finally:
        server.stop()
        drop_database(server.database)
