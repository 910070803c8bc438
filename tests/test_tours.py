# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The operator's main paths in headless Chromium, against a real helper on a socket."""

import time

from odoo.tests import HttpCase, tagged

from .common import RealHelper


@tagged("post_install", "-at_install")
class TestTours(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.helper = RealHelper(cls.env.cr.dbname)
        cls.addClassCleanup(cls.helper.stop)

    def setUp(self):
        super().setUp()
        patcher = self.helper.patch_odoo(self.env)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_capture_snapshot_from_settings(self):
        self.start_tour("/web", "deployment_rollback_capture_snapshot", login="admin")
        snapshot = self.env["deployment.snapshot"].search([], limit=1)
        self.assertEqual(snapshot.requested_by_id, self.env.ref("base.user_admin"))
        deadline = time.monotonic() + 120
        while snapshot.state == "capturing" and time.monotonic() < deadline:
            time.sleep(0.3)
            snapshot.action_refresh()
        self.assertEqual(snapshot.state, "verified", snapshot.job_error)

    def test_rollback_wizard_up_to_the_confirmation(self):
        self.helper.cli("snapshot", "--kind", "pre_deploy", "--verify")
        self.env["deployment.operation"]._import_journal()
        self.start_tour("/web", "deployment_rollback_wizard", login="admin")
        # The tour stopped before "Start rollback": nothing was started.
        self.assertFalse(self.env["deployment.rollback"].search([]))
