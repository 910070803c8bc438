# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Progress updates, escalation by elapsed time, and what follows a rollback, with time frozen."""

from datetime import timedelta

from odoo.exceptions import AccessError
from odoo.tests.common import TransactionCase, new_test_user

from .common import ROLLBACK_STARTED, running_rollback

STARTED = ROLLBACK_STARTED


class TestRollbackCommunication(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        partners = cls.env["res.partner"]
        cls.stakeholder = partners.create({"name": "Sales lead", "email": "sales@example.com"})
        cls.lead = partners.create({"name": "Tech Lead", "email": "lead@example.com"})
        cls.devops = partners.create({"name": "DevOps Manager", "email": "devops@example.com"})
        cls.cto = partners.create({"name": "The CTO", "email": "cto@example.com"})
        cls.env["ir.config_parameter"].sudo().set_param("deployment_rollback.stakeholder_ids", str(cls.stakeholder.id))
        cls.env.ref("deployment_rollback.escalation_level_technical_lead").partner_ids = cls.lead
        cls.env.ref("deployment_rollback.escalation_level_devops_manager").partner_ids = cls.devops
        cls.env.ref("deployment_rollback.escalation_level_cto").partner_ids = cls.cto
        cls.decider = new_test_user(
            cls.env, login="rb_decider", groups="base.group_user,deployment_rollback.group_deployment_rollback_user"
        )

    def _rollback(self, **vals):
        return running_rollback(self.env, self.decider, **vals)

    def _cron_at(self, minutes):
        self.env["deployment.rollback"].with_context(
            deployment_rollback_now=STARTED + timedelta(minutes=minutes)
        )._cron_progress()

    def _sent(self, rollback, marker):
        return rollback.message_ids.filtered(lambda m: m.subject and marker in m.subject)

    def test_progress_every_15_minutes_and_escalation_by_elapsed_time(self):
        rollback = self._rollback()
        self._cron_at(0)
        self.assertEqual(rollback.escalation_level_id.role, "Technical lead")
        self.assertEqual(self._sent(rollback, "escalation").partner_ids, self.lead)
        self.assertFalse(self._sent(rollback, "Rollback update"))

        self._cron_at(14)
        self.assertFalse(self._sent(rollback, "Rollback update"))

        self._cron_at(15)
        update = self._sent(rollback, "Rollback update")
        self.assertEqual(len(update), 1)
        self.assertEqual(update.partner_ids, self.stakeholder | self.lead)
        self.assertIn("15 minutes elapsed", update.subject)
        self.assertEqual(rollback.escalation_level_id.role, "Technical lead")

        self._cron_at(29)
        self.assertEqual(len(self._sent(rollback, "Rollback update")), 1)

        self._cron_at(31)
        self.assertEqual(rollback.escalation_level_id.role, "DevOps manager")
        self.assertEqual(self._sent(rollback, "DevOps manager").partner_ids, self.devops)
        updates = self._sent(rollback, "Rollback update")
        self.assertEqual(len(updates), 2)
        self.assertEqual(updates[0].partner_ids, self.stakeholder | self.lead | self.devops)
        self.assertEqual(
            rollback.with_context(deployment_rollback_now=STARTED + timedelta(minutes=31)).rto_status, "over_max"
        )

        self._cron_at(61)
        self.assertEqual(rollback.escalation_level_id.role, "CTO")
        self.assertEqual(self._sent(rollback, "CTO").partner_ids, self.cto)

    def test_progress_interval_is_a_setting(self):
        self.env["ir.config_parameter"].sudo().set_param("deployment_rollback.progress_minutes", "5")
        rollback = self._rollback()
        self._cron_at(5)
        self.assertEqual(len(self._sent(rollback, "Rollback update")), 1)

    def test_placeholders_for_the_helper(self):
        rollback = self._rollback()
        subject, body = rollback._helper_texts()
        self.assertIn("$status", subject)
        self.assertIn("$elapsed_minutes", subject)
        for placeholder in ("$step", "$eta_minutes", "$issues"):
            self.assertIn(placeholder, body)
        self.assertIn("Invoices cannot be posted", body)
        self.assertNotIn("<li>", body)

    def test_done_rollback_is_validated_followed_up_and_announced(self):
        snapshot = (
            self.env["deployment.snapshot"]
            ._helper_sync()
            .create({"kind": "pre_deploy", "state": "verified", "helper_id": "20261125T085000Z-pre_deploy-aaaaaa"})
        )
        self.env.cr.execute("SELECT count(*) FROM res_partner")
        partners = self.env.cr.fetchone()[0]
        snapshot._helper_sync().write(
            {
                "count_ids": [
                    (0, 0, {"table_name": "res_partner", "model": "res.partner", "count": partners}),
                    (0, 0, {"table_name": "res_users", "model": "res.users", "count": 1}),
                ]
            }
        )
        rollback = self._rollback(snapshot_id=snapshot.id)
        events = [
            {"step": "preflight", "status": "start", "at": "2026-11-25T09:00:01+00:00"},
            {"step": "preflight", "status": "done", "at": "2026-11-25T09:00:02+00:00"},
            {"step": "swap", "status": "start", "at": "2026-11-25T09:03:00+00:00"},
            {"step": "swap", "status": "done", "at": "2026-11-25T09:03:01+00:00"},
            {"step": "notify", "status": "done", "at": "2026-11-25T09:03:02+00:00"},
        ]
        rollback._apply_helper_state(
            "done",
            events,
            result={"kept_as": "db__failed_x", "lost_rows_total": 4},
            finished_at=STARTED + timedelta(minutes=4),
        )
        self.assertEqual(rollback.state, "done")
        self.assertEqual(rollback.step_ids.mapped("name"), ["preflight", "swap"])
        self.assertEqual(rollback.step_ids[0].seconds, 1.0)
        self.assertAlmostEqual(rollback.elapsed_minutes, 4.0)
        self.assertEqual(rollback.rto_status, "within")
        self.assertEqual(rollback.kept_as, "db__failed_x")

        integrity = {line.table_name: line for line in rollback.integrity_ids}
        self.assertTrue(integrity["res_partner"].match)
        self.assertFalse(integrity["res_users"].match)
        self.assertFalse(rollback.integrity_ok)
        checks = {check.code: check for check in rollback.check_ids}
        self.assertEqual(checks["queries"].state, "ok")
        self.assertTrue(checks["queries"].automatic)
        # No helper is configured in this test: what only it can tell waits for a person.
        self.assertEqual(checks["services"].state, "pending")
        self.assertEqual(checks["users"].state, "pending")
        checks["users"].with_user(self.decider).action_mark_ok()
        self.assertEqual(checks["users"].checked_by_id, self.decider)

        activities = rollback.activity_ids
        self.assertEqual(len(activities), 10)
        self.assertEqual(set(activities.mapped("user_id")), {self.decider})
        deadlines = {a.summary.split(":")[0]: a.date_deadline for a in activities}
        self.assertEqual(deadlines["Immediate"], (STARTED + timedelta(minutes=4, hours=4)).date())
        self.assertEqual(deadlines["Medium-term"], (STARTED + timedelta(minutes=4, days=7)).date())

        completion = self._sent(rollback, "Rollback Done")
        self.assertEqual(completion.partner_ids, self.stakeholder)
        self.assertIn("4 created or changed after the snapshot", completion.body)

        # A draft post-mortem waits, filled in from the rollback.
        postmortem = rollback.postmortem_id
        self.assertEqual(postmortem.state, "draft")
        self.assertEqual(postmortem.rollback_id, rollback)
        self.assertEqual(postmortem.incident_start, STARTED)
        self.assertEqual(postmortem.duration_minutes, 4)
        self.assertTrue(postmortem.data_loss)  # 4 rows were not in the snapshot
        self.assertEqual(len(postmortem.timeline_ids), 2)
        self.assertIn("Preflight checks", postmortem.timeline_ids[0].event)

        # A second report of the same end changes nothing.
        rollback._apply_helper_state("done", events)
        self.assertEqual(len(rollback.activity_ids), 10)

    def test_mirror_fields_cannot_be_written_by_hand(self):
        rollback = self._rollback()
        with self.assertRaisesRegex(AccessError, "mirror the rollback helper"):
            rollback.with_user(self.decider).write({"state": "done"})
