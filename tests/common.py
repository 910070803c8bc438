# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A real helper (odoo-rollback serve) on a Unix socket, configured for the test database."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from unittest.mock import patch

from odoo.addons.deployment_rollback.models.helper_client import ADDRESS_PARAM, SECRET_OPTION
from odoo.tools import config


def helper_command():
    """The helper's command line: the installed console script, else the module of this interpreter."""
    script = shutil.which("odoo-rollback") or str(Path(sys.executable).with_name("odoo-rollback"))
    return [script] if Path(script).exists() else [sys.executable, "-m", "odoo_rollback.cli"]


class RealHelper:
    """Starts ``odoo-rollback serve`` for *dbname*; stop() ends it and removes its files.

    *filestore* is the served database's, by default Odoo's own for *dbname*.
    """

    def __init__(self, dbname, tables=("res_partner", "account_move"), extra_toml="", filestore=None):
        self.dir = Path(tempfile.mkdtemp(prefix="rbhelper-"))
        self.socket = self.dir / "api.sock"
        self.secret_file = self.dir / "api-secret"
        self.secret_file.write_text(os.urandom(32).hex())
        self.secret_file.chmod(0o600)
        filestore = Path(filestore or config.filestore(dbname))
        filestore.mkdir(parents=True, exist_ok=True)
        env = os.environ
        self.config_path = self.dir / "helper.toml"
        self.config_path.write_text(
            "\n".join(
                [
                    "[database]",
                    f"name = {json.dumps(dbname)}",
                    f"host = {json.dumps(env.get('ROLLBACK_TEST_PGHOST', '127.0.0.1'))}",
                    f"port = {int(env.get('ROLLBACK_TEST_PGPORT', '5432'))}",
                    f"user = {json.dumps(env.get('ROLLBACK_TEST_PGUSER', 'rollback_helper'))}",
                    f"password = {json.dumps(env.get('ROLLBACK_TEST_PGPASSWORD', 'rollback_helper'))}",
                    "[filestore]",
                    f"path = {json.dumps(str(filestore))}",
                    "[storage]",
                    f"path = {json.dumps(str(self.dir / 'storage'))}",
                    "jobs = 2",
                    "[counts]",
                    f"tables = {json.dumps(list(tables))}",
                    "[api]",
                    f"socket = {json.dumps(str(self.socket))}",
                    f"secret_file = {json.dumps(str(self.secret_file))}",
                ]
            )
            + "\n"
            + extra_toml
        )
        self.config_path.chmod(0o600)  # it holds the database password
        self.log = self.dir / "serve.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*helper_command(), "--config", str(self.config_path), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"odoo-rollback serve did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def cli(self, *args):
        result = subprocess.run(
            [*helper_command(), "--config", str(self.config_path), *args, "--json"],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(result.stdout)

    def patch_odoo(self, env):
        """Point Odoo at this helper (address parameter and the odoo.conf secret option)."""
        env["ir.config_parameter"].sudo().set_param(ADDRESS_PARAM, f"unix:{self.socket}")
        return patch.dict(config.options, {SECRET_OPTION: str(self.secret_file)})

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RealHelperMixin:
    """A real helper for the test database during the whole class, and Odoo pointed at it in every test.

    ``_helper_toml()`` adds configuration sections (services, health...) to the helper's file.
    """

    @classmethod
    def _helper_toml(cls):
        return ""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.helper = RealHelper(cls.env.cr.dbname, extra_toml=cls._helper_toml())
        cls.addClassCleanup(cls.helper.stop)

    def setUp(self):
        super().setUp()
        patcher = self.helper.patch_odoo(self.env)
        patcher.start()
        self.addCleanup(patcher.stop)


ROLLBACK_STARTED = datetime(2026, 11, 25, 9, 0, 0)


def running_rollback(env, decider, **vals):
    """A rollback the helper is running, made through the helper's path; returned without that path's
    token, as the rest of Odoo sees it."""
    created = (
        env["deployment.rollback"]
        ._helper_sync()
        .create(
            {
                "reason": "Invoices cannot be posted",
                "decision": "rollback",
                "decided_by_id": decider.id,
                "state": "running",
                "started_at": ROLLBACK_STARTED,
                "rto_target_minutes": 15,
                "rto_max_minutes": 30,
                "database": env.cr.dbname,
                **vals,
            }
        )
    )
    return env["deployment.rollback"].browse(created.id)
