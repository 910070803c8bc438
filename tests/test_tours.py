# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The operator's main paths in headless Chromium, against a real helper on a socket."""

from datetime import date

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
        # The tour waited on the page for "Verified": nobody pressed Refresh, no cron ran.
        snapshot = self.env["deployment.snapshot"].search([], limit=1)
        self.assertEqual(snapshot.requested_by_id, self.env.ref("base.user_admin"))
        self.assertEqual(snapshot.label, "before v2.3")
        # Taken ("done"), then verified: the page followed both, as the journal said each.
        self.assertEqual(snapshot.state, "verified", snapshot.job_error)

    def test_rollback_wizard_up_to_the_confirmation(self):
        self.helper.cli("snapshot", "--kind", "pre_deploy", "--verify")
        self.env["deployment.operation"]._import_journal()
        self.start_tour("/web", "deployment_rollback_wizard", login="admin")
        # The tour stopped before "Start rollback": nothing was started.
        self.assertFalse(self.env["deployment.rollback"].search([]))

    def test_postmortem_with_an_action_item(self):
        self.start_tour("/web", "deployment_rollback_postmortem", login="admin")
        postmortem = self.env["deployment.postmortem"].search([])
        self.assertEqual(postmortem.name, "Rollback of the 16.0.3 deployment")
        self.assertEqual(postmortem.state, "review")
        self.assertIn("dropped the invoice lines' tax column", postmortem.root_cause)
        # The browser's time zone shifts both times alike: the day and the duration are what was typed.
        self.assertEqual(postmortem.duration_minutes, 45)
        self.assertEqual(postmortem.incident_start.date(), date(2026, 11, 20))
        admin = self.env.ref("base.user_admin")
        action = postmortem.action_ids
        self.assertEqual(action.mapped("name"), ["Test migrations on a copy of production"])
        self.assertEqual(action.owner_id, admin)
        self.assertEqual(action.due_date, date(2026, 12, 15))
        self.assertEqual(action.state, "open")
        activity = self.env["mail.activity"].search(
            [("res_model", "=", "deployment.postmortem"), ("res_id", "=", postmortem.id)]
        )
        self.assertEqual(activity, action.activity_id)
        self.assertEqual(activity.user_id, admin)
        self.assertEqual(activity.summary, "Test migrations on a copy of production")
        self.assertEqual(activity.date_deadline, date(2026, 12, 15))

    def test_drills_by_quarter(self):
        # The tour takes the current quarter from the browser's clock, this machine's local time: so does
        # the passed drill's date.
        drills = self.env["deployment.drill"]
        drills.create({"date": date.today(), "state": "done", "result": "ok", "seconds": 312.5, "rto_met": True})
        before = drills.search([])
        self.start_tour("/web", "deployment_rollback_drills", login="admin")
        # Looking at the quarters starts nothing.
        self.assertEqual(drills.search([]), before)
        self.assertFalse(drills.search([("state", "=", "running")]))
