# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import timedelta

from odoo import fields
from odoo.tests.common import TransactionCase, new_test_user


class TestDeploymentOverview(TransactionCase):
    """The on-call questions, answered from the records as they are."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(
            cls.env, login="rb_oncall", groups="base.group_user,deployment_rollback.group_deployment_rollback_user"
        )

    def _overview(self):
        # As the menu opens it: a saved record, read fresh.
        action = self.env.ref("deployment_rollback.deployment_overview_action_open").with_user(self.user).run()
        return self.env["deployment.overview"].with_user(self.user).browse(action["res_id"])

    def test_empty_deployment_asks_for_a_snapshot_and_a_drill(self):
        self.env["deployment.snapshot"].search([]).sudo().unlink()
        self.env["deployment.drill"].search([]).sudo().unlink()
        overview = self._overview()
        self.assertFalse(overview.snapshot_id)
        self.assertTrue(overview.snapshot_stale)
        self.assertFalse(overview.rollback_id)
        self.assertEqual(overview.quarter_state, "missing")

    def test_answers_the_on_call_questions(self):
        now = fields.Datetime.now()
        sync = self.env["deployment.snapshot"]._helper_sync()
        sync.create(
            {"kind": "pre_deploy", "state": "verified", "helper_id": "a-old", "taken_at": now - timedelta(days=3)}
        )
        newest = sync.create(
            {"kind": "pre_deploy", "state": "verified", "helper_id": "a-new", "taken_at": now - timedelta(hours=2)}
        )
        sync.create({"kind": "manual", "state": "verified", "helper_id": "a-manual", "taken_at": now})
        rollback = (
            self.env["deployment.rollback"]
            ._helper_sync()
            .create(
                {
                    "reason": "broken invoices",
                    "decision": "rollback",
                    "state": "running",
                    "started_at": now - timedelta(minutes=20),
                    "rto_target_minutes": 15,
                    "rto_max_minutes": 30,
                }
            )
        )
        today = fields.Date.context_today(self.env["deployment.drill"])
        postmortem = self.env["deployment.postmortem"].create({"name": "Last week's incident"})
        self.env["deployment.postmortem.action"].create(
            [
                {
                    "postmortem_id": postmortem.id,
                    "name": "Add a test",
                    "owner_id": self.user.id,
                    "due_date": today - timedelta(days=1),
                },
                {
                    "postmortem_id": postmortem.id,
                    "name": "Fix monitoring",
                    "owner_id": self.user.id,
                    "due_date": today + timedelta(days=5),
                },
            ]
        )
        self.env["deployment.drill"].create(
            {"date": today, "state": "done", "result": "ok", "seconds": 42, "rto_met": True}
        )

        overview = self._overview()
        self.assertEqual(overview.snapshot_id, newest)
        self.assertFalse(overview.snapshot_stale)
        self.assertEqual(overview.snapshot_age, "2 hours")
        self.assertEqual(overview.rollback_id, rollback)
        self.assertEqual(overview.rollback_rto_status, "over_target")
        self.assertEqual(overview.open_action_count, 2)
        self.assertEqual(overview.overdue_action_count, 1)
        self.assertEqual(overview.quarter_state, "done")
        self.assertEqual(overview.action_open_rollback()["res_id"], rollback.id)
