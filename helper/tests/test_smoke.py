"""odoo-rollback smoke and health against a real Odoo 16 server on a loopback port."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import PG, ConfiguredHelper, pg_connect
from odoo_rollback.config import load_config
from odoo_rollback.smoke import smoke_report
from odoo_server import SMOKE_LOGIN, SMOKE_PASSWORD, OdooServer, odoo_server
from psycopg2 import sql

__all__ = ["odoo_server"]  # the module-scoped fixture, imported to be used here


class Helper(ConfiguredHelper):
    """The helper configured for the test's Odoo server, with storage of its own."""

    def __init__(self, tmp_path: Path, server: OdooServer) -> None:
        self.server = server
        self.credentials = tmp_path / "smoke-password"
        self.credentials.write_text(SMOKE_PASSWORD + "\n", encoding="utf-8")
        self.credentials.chmod(0o600)
        server.filestore.mkdir(parents=True, exist_ok=True)
        super().__init__(
            tmp_path,
            {
                "database": {"name": server.database, **PG},
                "filestore": {"path": str(server.filestore)},
                "storage": {"path": str(tmp_path / "storage")},
                "counts": {"tables": ["account_move", "res_partner"]},
                "services": {"backend": "none"},
                "health": {"url": f"{server.url}/web/login", "timeout": 10},
                "smoke": {"login": SMOKE_LOGIN, "credentials_file": str(self.credentials), "timeout": 30},
            },
        )

    def checks(self, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
        """Exit status and the checks by name of ``COMMAND --json``."""
        result = self.run(*args, "--json")
        assert result.stdout, result.stderr
        return result.returncode, {c["name"]: c for c in json.loads(result.stdout)["checks"]}


@pytest.fixture
def helper(tmp_path: Path, odoo_server: OdooServer) -> Helper:
    return Helper(tmp_path, odoo_server)


def live_count(server: OdooServer, table: str) -> int:
    # The table's rows, as the helper counts them (search_count would leave archived records out).
    conn = pg_connect(server.database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def test_healthy_smoke_reads_the_newest_invoice_and_compares_with_the_snapshot(helper: Helper) -> None:
    snapshot = json.loads(helper.run("snapshot", "--kind", "pre_deploy", "--verify", "--json").stdout)
    status, checks = helper.checks("smoke")
    assert status == 0, checks
    assert checks["login page"]["ok"] and checks["rpc login"]["ok"]
    assert helper.server.made["invoice"] in checks["newest customer invoice"]["detail"]
    assert checks["a partner"]["ok"]
    assert checks["count account_move"]["ok"] and snapshot["id"] in checks["count account_move"]["detail"]
    assert checks["count res_partner"]["ok"]
    text = helper.run("smoke").stdout
    assert "smoke passed" in text and "FAIL" not in text


def test_lower_counts_than_the_snapshot_fail(helper: Helper) -> None:
    server = helper.server
    doomed = server.execute("admin", "admin", "res.partner", "create", {"name": "Deleted after the snapshot"})
    helper.run("snapshot", "--kind", "pre_deploy", "--verify")
    server.execute("admin", "admin", "res.partner", "unlink", [doomed])
    now = live_count(server, "res_partner")
    result = helper.run("smoke", "--json")
    assert result.returncode == 1
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["count res_partner"]["ok"] is False
    assert checks["count res_partner"]["detail"].startswith(f"{now} rows now, {now + 1} in snapshot ")
    assert checks["count account_move"]["ok"] and checks["rpc login"]["ok"]
    assert "SMOKE FAILED" in helper.run("smoke").stdout


def test_smoke_report_compares_with_the_counts_it_is_given(helper: Helper) -> None:
    # The deploy engine passes the counts of the snapshot it took.
    cfg = load_config(helper.write())
    moves = live_count(helper.server, "account_move")
    report = smoke_report(cfg, {"account_move": moves + 3, "res_partner": 1, "einvoice_document": None})
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is False
    assert checks["count account_move"] == {
        "name": "count account_move",
        "ok": False,
        "detail": f"{moves} rows now, {moves + 3} in the given counts",
    }
    assert checks["count res_partner"]["ok"] is True and "count einvoice_document" not in checks
    assert smoke_report(cfg, {"account_move": moves})["ok"] is True


def test_failing_sql_and_url_checks(helper: Helper) -> None:
    helper.write(
        smoke={
            "sql_checks": [
                "SELECT id FROM res_users WHERE login = 'admin'",
                "SELECT 1 FROM res_partner WHERE name = 'nobody by this name';",
                # Read-only: an operator's typo that writes is refused, not run.
                "UPDATE res_partner SET name = 'overwritten' WHERE id = 1 RETURNING id",
            ],
            "url_checks": ["/web/login", "/web/no-such-page"],
        }
    )
    name_before = helper.server.execute("admin", "admin", "res.partner", "read", [1], fields=["name"])[0]["name"]
    status, checks = helper.checks("smoke")
    assert status == 1
    assert checks["sql 1"]["ok"] is True
    assert checks["sql 2"]["ok"] is False and checks["sql 2"]["detail"].startswith("returned no row")
    assert checks["sql 3"]["ok"] is False and "read-only transaction" in checks["sql 3"]["detail"]
    assert checks[f"url {helper.server.url}/web/login"]["ok"] is True
    missing = checks[f"url {helper.server.url}/web/no-such-page"]
    assert missing["ok"] is False and missing["detail"].startswith("404")
    assert checks["rpc login"]["ok"] is True
    assert (
        helper.server.execute("admin", "admin", "res.partner", "read", [1], fields=["name"])[0]["name"] == name_before
    )


def test_a_slow_sql_check_is_cut_by_the_timeout(helper: Helper) -> None:
    helper.write(smoke={"timeout": 1, "sql_checks": ["SELECT 1 FROM pg_sleep(30)"]})
    status, checks = helper.checks("smoke")
    assert status == 1
    assert "statement timeout" in checks["sql 1"]["detail"]


def test_wrong_credentials_fail_clearly(helper: Helper) -> None:
    helper.credentials.write_text("not-the-password", encoding="utf-8")
    status, checks = helper.checks("smoke")
    assert status == 1
    assert checks["rpc login"]["ok"] is False
    assert checks["rpc login"]["detail"] == (
        f"Odoo refused the credentials of 'smoke' on database '{helper.server.database}' (see smoke.credentials_file)"
    )
    # Nothing read as nobody: the reads are not reported as passed.
    assert "a partner" not in checks and "newest customer invoice" not in checks
    assert checks["login page"]["ok"] is True


def test_a_user_who_may_not_read_invoices_fails_the_invoice_check(helper: Helper) -> None:
    login = f"no-accounting-{helper.tmp_path.name[-8:]}"
    group = helper.server.execute(
        "admin",
        "admin",
        "ir.model.data",
        "search_read",
        [("module", "=", "base"), ("name", "=", "group_user")],
        fields=["res_id"],
    )[0]["res_id"]
    helper.server.execute(
        "admin",
        "admin",
        "res.users",
        "create",
        {"name": "No accounting", "login": login, "password": SMOKE_PASSWORD, "groups_id": [(6, 0, [group])]},
    )
    helper.write(smoke={"login": login})
    status, checks = helper.checks("smoke")
    assert status == 1
    assert checks["rpc login"]["ok"] is True and checks["a partner"]["ok"] is True
    invoice = checks["newest customer invoice"]
    assert invoice["ok"] is False and invoice["detail"].startswith("reading account.move failed: ")
    assert "not allowed to access" in invoice["detail"]


def test_credentials_file_readable_by_everyone_is_refused(helper: Helper) -> None:
    helper.credentials.chmod(0o644)
    result = helper.run("smoke")
    assert result.returncode == 2 and result.stdout == ""
    assert "smoke.credentials_file" in result.stderr and "readable by everyone" in result.stderr
    report = smoke_report(load_config(helper.config_path))
    assert report["ok"] is False and report["checks"][0]["name"] == "configuration"


def test_smoke_without_login_is_a_configuration_error(helper: Helper) -> None:
    del helper.sections["smoke"]
    result = helper.run("smoke")
    assert result.returncode == 2
    assert "smoke needs [smoke] login and credentials_file" in result.stderr


def test_health_against_the_real_server_then_stopped(helper: Helper) -> None:
    status, checks = helper.checks("health")
    assert status == 0, checks
    assert checks["http"]["ok"] and checks["http"]["detail"].startswith(f"{helper.server.url}/web/login: 200 in ")
    assert checks["database"]["ok"] and checks["storage"]["ok"]
    helper.server.stop()
    try:
        status, checks = helper.checks("health")
        assert status == 1
        assert checks["http"]["ok"] is False and "Connection refused" in checks["http"]["detail"]
        assert checks["database"]["ok"] is True
        status, checks = helper.checks("smoke")
        assert status == 1 and checks["login page"]["ok"] is False and checks["rpc login"]["ok"] is False
    finally:
        # For the tests after this one (the server comes back on a new port; each test's config follows).
        helper.server.start()
