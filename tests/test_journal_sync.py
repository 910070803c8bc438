# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The one sync path: records follow the helper through its journal, imported once, at once, safely."""

import json
import logging
import os
import select
import tempfile
import time
from pathlib import Path
from unittest.mock import patch

from odoo import SUPERUSER_ID, api, sql_db
from odoo.addons.deployment_rollback.models import deployment_operation
from odoo.addons.deployment_rollback.models.deployment_operation import CURSOR_PARAM, IMPORT_CRON
from odoo.addons.deployment_rollback.models.helper_client import ADDRESS_PARAM, SECRET_OPTION
from odoo.tests.common import Form, TransactionCase, new_test_user
from odoo.tools import config

from .common import RealHelper, RealHelperMixin

# The helper's stop command fails: the restore ends before the swap, with the live database untouched.
FAILING_STOP = """
[services]
backend = "command"
stop_command = ["false"]
start_command = ["true"]
[rto]
target_minutes = 7
max_minutes = 12
"""


def _restore_page(name, uid="uid-imported"):
    """A journal page with one finished restore that carries its rollback record."""
    operation = {
        "id": "restore-20261125T100500Z-cccccc",
        "kind": "restore",
        "state": "failed",
        "database": "prod",
        "started_at": "2026-11-25T10:05:00+00:00",
        "finished_at": "2026-11-25T10:06:00+00:00",
        "data": {
            "snapshot": "20261125T100000Z-pre_deploy-d3d3d3",
            "rollback": {"uid": uid, "name": name, "reason": "imported", "decision": "rollback"},
            "result": {"error": "stop failed"},
        },
    }
    event = {"seq": 1, "operation_id": operation["id"], "at": operation["started_at"], "step": "restore"}
    return {"events": [dict(event, status="start")], "operations": {operation["id"]: operation}, "next": 1}


class TestJournalSync(TransactionCase):
    """Without a helper: what the cron, Odoo's start and the validation do on their own."""

    def test_cron_before_the_helper_is_configured_warns_once_without_a_traceback(self):
        deployment_operation._told_unconfigured.discard(self.env.cr.dbname)
        logger = "odoo.addons.deployment_rollback"
        with patch.dict(config.options, {SECRET_OPTION: ""}), self.assertLogs(logger, logging.DEBUG) as logs:
            self.env["deployment.snapshot"]._cron_refresh()
            self.env["deployment.snapshot"]._cron_refresh()
            logging.getLogger(logger).debug("end")  # assertLogs wants one line at least
        warnings = [r for r in logs.records if r.levelno >= logging.WARNING]
        self.assertEqual(len(warnings), 1, logs.output)
        self.assertEqual(warnings[0].levelno, logging.WARNING)
        self.assertIn("not configured", warnings[0].getMessage())
        self.assertIsNone(warnings[0].exc_info)

    def test_the_helpers_retention_in_one_line(self):
        settings = self.env["res.config.settings"]
        retention = {
            "snapshots": {"keep_last": 5, "max_days": 0},
            "kept": {"keep_last": 2, "max_days": 7.0, "text": "the 2 newest, none older than 7 days"},
            "remotes": [],
        }
        self.assertEqual(
            settings._retention_text(retention),
            "Snapshots: keep the last 5; Databases kept aside: the 2 newest, none older than 7 days",
        )
        self.assertFalse(settings._retention_text({}))

    def test_odoo_start_imports_the_journal_at_once(self):
        cron = self.env.ref(IMPORT_CRON)
        triggers = self.env["ir.cron.trigger"].sudo()
        before = triggers.search_count([("cron_id", "=", cron.id)])
        # Where Odoo's cron workers listen for triggers (ir.cron._notifydb).
        with sql_db.db_connect("postgres").cursor() as listener:
            listener.execute("LISTEN cron_trigger")
            listener.commit()
            with patch.dict(config.options, {SECRET_OPTION: "/etc/odoo/rollback-secret"}):
                self.env["deployment.operation"]._register_hook()
            self.assertEqual(triggers.search_count([("cron_id", "=", cron.id)]), before + 1)
            # At Odoo's start the workers listen only after the registries loaded: they are told again.
            connection, told = listener._cnx, []
            deadline = time.monotonic() + 30
            while self.env.cr.dbname not in told and time.monotonic() < deadline:
                select.select([connection], [], [], 1)
                connection.poll()
                told += [notify.payload for notify in connection.notifies]
                connection.notifies.clear()
            self.assertIn(self.env.cr.dbname, told)

    def test_imported_rollback_moves_the_numbering_past_it(self):
        sequence = self.env["ir.sequence"].search([("code", "=", "deployment.rollback")])
        prefix, _suffix = sequence._get_prefix_suffix()
        # The restored database's sequence is where it was at the snapshot: its next number is taken.
        name = f"{prefix}{sequence.number_next_actual:0{sequence.padding}d}"
        self.env["deployment.operation"]._import_page(_restore_page(name))
        self.assertTrue(self.env["deployment.rollback"].search([("name", "=", name)]))

        following = self.env["deployment.rollback"]._helper_sync().create({"reason": "next", "decision": "rollback"})

        self.assertNotEqual(following.name, name)
        self.assertEqual(self.env["deployment.rollback"].search_count([("name", "=", name)]), 1)

    def test_a_rollback_without_a_known_rto_is_not_over_it(self):
        # Imported while the helper could not tell its [rto]: no figure is invented.
        self.env["deployment.operation"]._import_page(_restore_page("RB/imported/1"))
        rollback = self.env["deployment.rollback"].search([("rollback_uid", "=", "uid-imported")])
        self.assertEqual((rollback.rto_target_minutes, rollback.rto_max_minutes), (0, 0))
        self.assertFalse(rollback.rto_status)
        self.assertFalse(rollback.eta)

    def test_a_failing_read_fails_its_check_not_the_transaction(self):
        rollback = (
            self.env["deployment.rollback"]
            ._helper_sync()
            .create({"reason": "bad migration", "decision": "rollback", "state": "done"})
        )
        # What a bad migration leaves: a column the ORM reads is gone.
        self.env.cr.execute("ALTER TABLE res_partner RENAME COLUMN active TO active_before_migration")

        rollback._validate()

        checks = {check.code: check for check in rollback.check_ids}
        self.assertEqual(checks["queries"].state, "failed")
        self.assertIn("active", checks["queries"].detail)
        self.assertEqual(checks["log"].state, "pending")
        self.env.cr.execute("SELECT count(*) FROM deployment_rollback_check WHERE rollback_id = %s", (rollback.id,))
        self.assertEqual(self.env.cr.fetchone()[0], len(checks))


class TestConcurrentImports(TransactionCase):
    """Two transactions import at once (two workers, or the cron and the button): one imports, the
    other steps aside, including when it started before the first one committed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.helper = RealHelper(cls.env.cr.dbname)
        cls.addClassCleanup(cls.helper.stop)

    def _committed(self, work):
        with self.registry.cursor() as cr:
            result = work(api.Environment(cr, SUPERUSER_ID, {}))
            # Two workers only meet through committed rows; what is committed here is removed at the end.
            cr.commit()  # pylint: disable=invalid-commit
        return result

    def test_two_imports_at_once_import_once(self):
        taken = self.helper.cli("snapshot", "--kind", "manual")
        secret = patch.dict(config.options, {SECRET_OPTION: str(self.helper.secret_file)})
        secret.start()
        self.addCleanup(secret.stop)

        def clean(env):
            env["deployment.snapshot"].search([("helper_id", "=", taken["id"])]).unlink()
            env["ir.config_parameter"].search([("key", "in", [ADDRESS_PARAM, CURSOR_PARAM])]).unlink()

        self._committed(clean)
        self.addCleanup(self._committed, clean)
        self._committed(lambda env: env["ir.config_parameter"].set_param(ADDRESS_PARAM, f"unix:{self.helper.socket}"))
        self._committed(lambda env: env["ir.config_parameter"].set_param(CURSOR_PARAM, "0"))

        with self.registry.cursor() as first_cr, self.registry.cursor() as second_cr:
            first = api.Environment(first_cr, SUPERUSER_ID, {})
            second = api.Environment(second_cr, SUPERUSER_ID, {})
            self.assertGreater(first["deployment.operation"]._import_journal(), 0)
            # The first has not committed: the second steps aside at once, without waiting, and a
            # person pressing the button is told why.
            self.assertIsNone(second["deployment.operation"]._import_journal())
            notice = second["deployment.operation"].action_import_journal()["params"]
            self.assertEqual(notice["type"], "info")
            self.assertIn("Another import", notice["message"])
            first_cr.commit()  # pylint: disable=invalid-commit
            # Committed after the second's transaction began: its cursor would be stale.
            self.assertIsNone(second["deployment.operation"]._import_journal())
            second_cr.rollback()
            # A new transaction sees the advanced cursor: nothing more to import, nothing doubled.
            self.assertEqual(second["deployment.operation"]._import_journal(), 0)
            self.assertEqual(second["deployment.snapshot"].search_count([("helper_id", "=", taken["id"])]), 1)
            second_cr.rollback()


class TestSyncWithTheHelper(RealHelperMixin, TransactionCase):
    """A real odoo-rollback serve: what the helper really journals comes back whole."""

    @classmethod
    def _helper_toml(cls):
        # Odoo's service log as the helper reads it: one line, before any rollback of these tests.
        handle, name = tempfile.mkstemp(prefix="rbsync-odoo-", suffix=".log")
        os.close(handle)
        cls.log_file = Path(name)
        cls.log_file.write_text("2026-11-25 10:00:00,000 1 INFO db odoo.modules.loading: loaded\n")
        cls.addClassCleanup(cls.log_file.unlink)
        return FAILING_STOP + f"[deploy]\nlog_file = {json.dumps(str(cls.log_file))}\n"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(
            cls.env,
            login="rb_sync_manager",
            groups="base.group_user,base.group_system,deployment_rollback.group_deployment_rollback_manager",
        )
        cls.colleague = new_test_user(cls.env, login="rb_sync_colleague", groups="base.group_user")

    def test_settings_show_the_helper_configuration(self):
        settings = Form(self.env["res.config.settings"].with_user(self.manager))
        self.assertEqual(settings.deployment_helper_config, str(self.helper.config_path))
        self.assertEqual((settings.deployment_rto_target_minutes, settings.deployment_rto_max_minutes), (7, 12))
        # The helper counts res_partner and account_move: the records by name, a table without a model as is.
        self.assertEqual(settings.deployment_tracked_models, "Contact, account_move")

    def test_the_minute_cron_follows_a_capture_once_the_helpers_job_ends(self):
        action = self.env["deployment.snapshot"].with_user(self.manager).action_capture("manual", "before v2.3")
        snapshot = self.env["deployment.snapshot"].browse(action["res_id"])
        helper = self.env["deployment.rollback.helper"]
        deadline = time.monotonic() + 120
        while helper._request("GET", f"/v1/jobs/{snapshot.helper_job_id}")["state"] in ("queued", "running"):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.3)

        self.env["deployment.rollback"]._cron_progress()

        # The capture verifies what it took, in the same job.
        self.assertEqual(snapshot.state, "verified", snapshot.job_error)
        self.assertEqual(snapshot.label, "before v2.3")

    def test_log_check_reads_the_helpers_log(self):
        rollback = self.env["deployment.rollback"]._helper_sync().create({"reason": "r", "decision": "rollback"})

        code, _name, state, detail = rollback._log_check()

        self.assertEqual((code, state), ("log", "ok"), detail)
        self.assertIn(str(self.log_file), detail)

    def _verified_snapshot(self):
        taken = self.helper.cli("snapshot", "--kind", "pre_deploy", "--verify")
        self.env["deployment.operation"]._import_journal()
        return self.env["deployment.snapshot"].search([("helper_id", "=", taken["id"])])

    def test_the_rollback_comes_back_from_the_helpers_journal_whole(self):
        snapshot = self._verified_snapshot()
        sequence = self.env["ir.sequence"].search([("code", "=", "deployment.rollback")])
        number_at_snapshot = sequence.number_next_actual
        form = Form(self.env["deployment.rollback.wizard"].with_user(self.manager))
        for index in range(len(form.line_ids)):
            with form.line_ids.edit(index) as line:
                if line.code == "migration_data_errors":
                    line.holds = True
        form.reason = "Invoices lost their lines"
        form.impact = "Nobody can invoice"
        form.next_steps = "Fix the migration on staging"
        form.participant_ids.add(self.colleague)
        wizard = form.save()
        self.assertEqual(wizard.snapshot_id, snapshot)
        wizard.action_next()
        wizard.action_next()
        wizard.confirm_database = self.env.cr.dbname
        rollback = self.env["deployment.rollback"].browse(wizard.action_start()["res_id"])
        # The helper's [rto], not a second copy in Odoo.
        self.assertEqual((rollback.rto_target_minutes, rollback.rto_max_minutes), (7, 12))
        deadline = time.monotonic() + 120
        while rollback.state == "running" and time.monotonic() < deadline:
            time.sleep(0.3)
            rollback.action_refresh()
        self.assertEqual(rollback.state, "failed")
        self.assertTrue(rollback.helper_operation_id)
        sent = rollback._helper_payload()

        # A restore that succeeded replaced this database by the snapshot's copy: no record, the
        # journal cursor and the numbering as they were then.
        rollback.sudo().unlink()
        self.env["ir.config_parameter"].sudo().set_param(CURSOR_PARAM, "0")
        sequence.write({"number_next": number_at_snapshot})
        self.env["deployment.operation"]._import_journal()

        again = self.env["deployment.rollback"].search([("rollback_uid", "=", sent["uid"])])
        self.assertEqual(again._helper_payload(), sent)
        self.assertEqual(again.state, "failed")
        self.assertEqual(again.snapshot_id, snapshot)
        following = self.env["deployment.rollback"]._helper_sync().create({"reason": "next", "decision": "rollback"})
        self.assertNotEqual(following.name, again.name)
