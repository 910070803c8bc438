# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import shutil
import tempfile
import time
from unittest.mock import patch

from odoo import sql_db
from odoo.addons.deployment_rollback.models.deployment_operation import CURSOR_PARAM
from odoo.addons.deployment_rollback.models.helper_client import SECRET_OPTION
from odoo.addons.deployment_rollback.models.rollback_catalogue import RESTORE_STEPS
from odoo.exceptions import UserError
from odoo.tests.common import Form, TransactionCase, new_test_user
from odoo.tools import config

from .common import RealHelper, RealHelperMixin


class TestHelperIntegration(RealHelperMixin, TransactionCase):
    """A real odoo-rollback serve, snapshotting this very test database."""

    def _wait_done(self, snapshot, timeout=120, waiting=("capturing",)):
        deadline = time.monotonic() + timeout
        while snapshot.state in waiting and time.monotonic() < deadline:
            time.sleep(0.3)
            snapshot.action_refresh()
        return snapshot

    def test_capture_from_settings_then_import_the_journal(self):
        notification = self.env["res.config.settings"].create({}).action_deployment_test_connection()
        self.assertIn(self.env.cr.dbname, notification["params"]["message"])

        # The button asks for the snapshot's name first, then the helper takes it under that name.
        dialog = self.env["res.config.settings"].create({}).action_deployment_capture_snapshot()
        self.assertEqual(dialog["res_model"], "deployment.snapshot.capture")
        capture = Form(self.env["deployment.snapshot.capture"].with_context(**dialog["context"]))
        self.assertEqual(capture.kind, "pre_deploy")
        capture.label = "before v2.3"
        action = capture.save().action_capture()
        snapshot = self.env["deployment.snapshot"].browse(action["res_id"])
        self.assertEqual(snapshot.state, "capturing")
        # Taken ("done"), then verified: the journal says each as soon as the helper did it.
        self._wait_done(snapshot, waiting=("capturing", "done"))

        self.assertEqual(snapshot.state, "verified", snapshot.job_error)
        self.assertTrue(snapshot.display_label.startswith("before v2.3 ("), snapshot.display_label)
        self.assertNotIn(snapshot.helper_id, snapshot.display_label)
        listed = {row["id"]: row for row in self.helper.cli("list")}
        self.assertEqual(listed[snapshot.helper_id]["label"], "before v2.3")
        counts = {c.table_name: c for c in snapshot.count_ids}
        # The helper counts committed rows; this test's transaction added none to res_partner.
        self.env.cr.execute("SELECT count(*) FROM res_partner")
        self.assertEqual(counts["res_partner"].count, self.env.cr.fetchone()[0])
        self.assertEqual(counts["res_partner"].model, "res.partner")
        self.assertTrue(counts["account_move"].absent)
        self.assertIn("deployment_rollback", snapshot.module_ids.mapped("name"))

        self.env["deployment.operation"]._import_journal()
        self.env["deployment.operation"]._import_journal()
        self.assertEqual(self.env["deployment.snapshot"].search_count([("helper_id", "=", snapshot.helper_id)]), 1)

    def test_capture_from_settings_with_a_warm_standby(self):
        self.env["ir.config_parameter"].sudo().set_param("deployment_rollback.standby_after_capture", "True")
        dialog = self.env["res.config.settings"].create({}).action_deployment_capture_snapshot()
        capture = Form(self.env["deployment.snapshot.capture"].with_context(**dialog["context"]))
        capture.label = "with a standby"
        action = capture.save().action_capture()
        snapshot = self.env["deployment.snapshot"].browse(action["res_id"])
        # Whatever the test's outcome, no standby database is left behind.
        self.addCleanup(lambda: snapshot.helper_id and self.helper.cli("standby", "drop", snapshot.helper_id))
        self._wait_done(snapshot, waiting=("capturing", "done"))
        self.assertEqual(snapshot.state, "verified", snapshot.job_error)

        # Built in the background, at low priority; the journal tells Odoo when it is ready.
        deadline = time.monotonic() + 300
        while snapshot.standby_state in ("none", "building") and time.monotonic() < deadline:
            time.sleep(0.5)
            self.env["deployment.operation"]._import_journal()
        self.assertEqual(snapshot.standby_state, "ready")
        # The database Odoo names is the helper's standby of this snapshot, really there and closed.
        listed = next(s for s in self.helper.cli("list") if s["id"] == snapshot.helper_id)["standby"]
        self.assertEqual((listed["state"], snapshot.standby_database), ("ready", listed["database"]))
        with sql_db.db_connect("postgres").cursor() as cr:  # the test's own transaction predates it
            cr.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (snapshot.standby_database,))
            self.assertEqual(cr.fetchall(), [(False,)])

    def test_history_survives_a_restore(self):
        first = self.helper.cli("snapshot", "--kind", "pre_deploy", "--verify")
        self.env["deployment.operation"]._import_journal()
        # What the database knew when the first snapshot was taken: a restore brings back exactly this.
        cursor_at_first = self.env["ir.config_parameter"].sudo().get_param(CURSOR_PARAM)
        second = self.helper.cli("snapshot", "--kind", "manual")
        drill = self.helper.cli("drill", first["id"])
        self.env["deployment.operation"]._import_journal()
        snapshots = self.env["deployment.snapshot"]
        self.assertTrue(snapshots.search([("helper_id", "=", second["id"])]))

        # The restored database lacks everything after the first snapshot, and has its old cursor.
        snapshots.search([("helper_id", "=", second["id"])]).sudo().unlink()
        self.env["deployment.operation"].search([]).sudo().unlink()
        self.env["ir.config_parameter"].sudo().set_param(CURSOR_PARAM, cursor_at_first)

        self.env["deployment.operation"]._import_journal()

        self.assertTrue(snapshots.search([("helper_id", "=", second["id"])]))
        imported = self.env["deployment.operation"].search([("helper_id", "=", drill["id"])])
        self.assertEqual(imported.kind, "drill")
        self.assertEqual(imported.state, "done")
        self.assertEqual(imported.snapshot_id.helper_id, first["id"])

    def test_every_step_the_helper_plans_is_labelled_for_people(self):
        # The restore's steps are the helper's (its plan lists them); Odoo shows each by its label.
        taken = self.helper.cli("snapshot", "--kind", "manual")
        plan = self.helper.cli("restore", taken["id"])
        self.assertIn("standby_recheck", plan["steps"])
        self.assertEqual([step for step in plan["steps"] if step not in RESTORE_STEPS], [])

    def test_failed_job_is_shown_on_the_record(self):
        taken = self.helper.cli("snapshot", "--kind", "manual")
        archive = self.helper.dir / "storage" / "snapshots" / taken["id"] / "filestore.tar"
        archive.write_bytes(archive.read_bytes()[:10])
        reply = self.env["deployment.rollback.helper"]._request("POST", f"/v1/snapshots/{taken['id']}/verify", {})
        snapshot = (
            self.env["deployment.snapshot"]
            ._helper_sync()
            .create({"kind": "manual", "state": "capturing", "helper_job_id": reply["job"]["id"]})
        )
        self._wait_done(snapshot)
        self.assertEqual(snapshot.state, "failed")
        self.assertIn("filestore.tar", snapshot.job_error)

    def test_unknown_snapshot_and_wrong_secret_are_clear_errors(self):
        with self.assertRaisesRegex(UserError, "404"):
            self.env["deployment.rollback.helper"]._request(
                "POST", "/v1/snapshots/20990101T000000Z-manual-abcdef/verify", {}
            )
        wrong = self.helper.dir / "wrong-secret"
        wrong.write_text("not-the-helper-secret")
        with (
            patch.dict(config.options, {SECRET_OPTION: str(wrong)}),
            self.assertRaisesRegex(UserError, "shared secret"),
        ):
            self.env["deployment.rollback.helper"]._request("GET", "/v1/health")


class TestHelperOfAnotherDatabase(TransactionCase):
    """Every database of one Odoo instance reads the same secret (odoo.conf): the helper of another
    database ("prod") must neither act for this one nor show it prod's state, to managers or users."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.prod = f"{cls.env.cr.dbname}_prod"
        filestore = tempfile.mkdtemp(prefix="rbhelper-prod-filestore-")
        cls.addClassCleanup(shutil.rmtree, filestore, ignore_errors=True)
        cls.helper = RealHelper(cls.prod, filestore=filestore)
        cls.addClassCleanup(cls.helper.stop)
        cls.manager = new_test_user(
            cls.env,
            login="rb_other_db_manager",
            groups="base.group_user,base.group_system,deployment_rollback.group_deployment_rollback_manager",
        )

    def setUp(self):
        super().setUp()
        patcher = self.helper.patch_odoo(self.env)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_the_helper_of_another_database_refuses_and_shows_nothing(self):
        refusal = f"this helper serves another database, not {self.env.cr.dbname}"
        overview = self.env["deployment.overview"].with_user(self.manager).create({})
        self.assertFalse(overview.helper_reachable)
        self.assertIn("Reachable, but refused the request: ", overview.helper_status)
        self.assertIn(refusal, overview.helper_status)
        self.assertFalse(overview.helper_storage_free)
        with self.assertRaisesRegex(UserError, refusal):
            self.env["res.config.settings"].with_user(self.manager).create({}).action_deployment_test_connection()
        with self.assertRaisesRegex(UserError, refusal):
            self.env["deployment.rollback.helper"].with_user(self.manager)._request("GET", "/v1/config")
        with self.assertRaisesRegex(UserError, refusal):
            self.env["deployment.snapshot"].with_user(self.manager).action_capture("pre_deploy", "from another db")
        with self.assertRaisesRegex(UserError, refusal):
            self.env["deployment.rollback.helper"].with_user(self.manager)._request("POST", "/v1/drills", {})
        self.assertFalse(self.env["deployment.snapshot"].search([("label", "=", "from another db")]))
        # Nothing done: no snapshot, no operation in the helper's journal; each refusal is in its log.
        self.assertEqual(self.helper.cli("list"), [])
        self.assertEqual(self.helper.cli("journal")["events"], [])
        log = self.helper.log.read_text()
        refused = f"signed for database '{self.env.cr.dbname}'; this helper serves '{self.prod}'"
        self.assertGreaterEqual(log.count(refused), 5)
