# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import time
from unittest.mock import patch

from odoo.addons.deployment_rollback.models.deployment_operation import CURSOR_PARAM
from odoo.addons.deployment_rollback.models.helper_client import SECRET_OPTION
from odoo.exceptions import UserError
from odoo.tests.common import TransactionCase
from odoo.tools import config

from .common import RealHelperMixin


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

        action = self.env["res.config.settings"].create({}).action_deployment_capture_snapshot()
        snapshot = self.env["deployment.snapshot"].browse(action["res_id"])
        self.assertEqual(snapshot.state, "capturing")
        # Taken ("done"), then verified: the journal says each as soon as the helper did it.
        self._wait_done(snapshot, waiting=("capturing", "done"))

        self.assertEqual(snapshot.state, "verified", snapshot.job_error)
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
