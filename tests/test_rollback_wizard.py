# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The rollback checklist, walked through Form as a person would, against a real helper."""

import time

from odoo.addons.deployment_rollback.models.rollback_catalogue import IMMEDIATE, TEAM, required_decision
from odoo.exceptions import AccessError, UserError
from odoo.tests.common import Form, TransactionCase, new_test_user

from .common import RealHelperMixin

# The helper's stop command fails: the restore ends before the swap, with the live database untouched,
# so that the test database survives the test.
FAILING_STOP = """
[services]
backend = "command"
stop_command = ["false"]
start_command = ["true"]
"""


class TestRollbackCatalogue(TransactionCase):
    def test_immediate_trigger_imposes_the_rollback(self):
        self.assertEqual(required_decision(["slow_response", "email_broken"]), "rollback")
        self.assertIsNone(required_decision(["slow_response", "cpu_high"]))
        self.assertIsNone(required_decision([]))


class TestRollbackWizard(RealHelperMixin, TransactionCase):
    @classmethod
    def _helper_toml(cls):
        return FAILING_STOP

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(
            cls.env,
            login="rb_wizard_manager",
            groups="base.group_user,deployment_rollback.group_deployment_rollback_manager",
        )
        cls.user = new_test_user(
            cls.env, login="rb_wizard_user", groups="base.group_user,deployment_rollback.group_deployment_rollback_user"
        )
        cls.colleague = new_test_user(cls.env, login="rb_colleague", groups="base.group_user")
        cls.stakeholder = cls.env["res.partner"].create({"name": "Finance lead", "email": "finance@example.com"})
        cls.env["ir.config_parameter"].sudo().set_param("deployment_rollback.stakeholder_ids", str(cls.stakeholder.id))
        # The host's load is measured for real: a busy test machine must not hold the CPU or memory trigger.
        cls.env["ir.config_parameter"].sudo().set_param("deployment_rollback.cpu_percent", 100000)
        cls.env["ir.config_parameter"].sudo().set_param("deployment_rollback.memory_percent", 101)

    def _verified_snapshot(self):
        taken = self.helper.cli("snapshot", "--kind", "pre_deploy", "--verify")
        self.env["deployment.operation"]._import_journal()
        snapshot = self.env["deployment.snapshot"].search([("helper_id", "=", taken["id"])])
        self.assertEqual(snapshot.state, "verified")
        return snapshot

    def _form(self, user=None):
        return Form(self.env["deployment.rollback.wizard"].with_user(user or self.manager))

    def _hold(self, form, code):
        for index in range(len(form.line_ids)):
            with form.line_ids.edit(index) as line:
                if line.code == code:
                    line.holds = True

    def test_lines_list_every_trigger_with_measured_ones_filled_in(self):
        wizard = self.env["deployment.rollback.wizard"].with_user(self.manager).create({})
        self.assertEqual(set(wizard.line_ids.mapped("category")), {IMMEDIATE, TEAM})
        self.assertEqual(len(wizard.line_ids), 18)
        self.assertEqual(wizard.line_ids[0].code, "odoo_not_starting")
        # What Odoo measured carries its value and source; the rest is for people to assess.
        measured = wizard.line_ids.filtered("source")
        self.assertEqual(
            sorted(measured.mapped("code")),
            ["cpu_high", "email_broken", "email_failures", "error_rate_rising", "memory_high", "query_timeouts"],
        )
        self.assertFalse(wizard.line_ids.filtered(lambda line: line.code == "pos_broken").source)

    def test_immediate_trigger_decides_rollback_and_needs_a_snapshot(self):
        form = self._form()
        self._hold(form, "invoices_blocked")
        self.assertEqual(form.decision, "rollback")
        wizard = form.save()
        self.assertTrue(wizard.immediate_held)
        self.env["deployment.snapshot"].search([]).sudo().unlink()
        with self.assertRaisesRegex(UserError, "no verified snapshot"):
            wizard.action_next()
        self.assertEqual(wizard.step, "triggers")

    def test_team_triggers_need_decision_decider_and_participants(self):
        form = self._form(self.user)
        self._hold(form, "slow_response")
        self.assertFalse(form.decision)
        # The form marks what the team must fill in, as the browser does, instead of an error dialog.
        with self.assertRaisesRegex(AssertionError, "decision is a required field"):
            form.save()
        # Past the form, the server says it, one missing item a line.
        unchecked = self.env["deployment.rollback.wizard"].with_user(self.user).create({})
        with self.assertRaisesRegex(UserError, "Still to fill in:\n- Decision: .*\n- Taken Part: "):
            unchecked.action_next()

        form.decision = "monitor"
        form.participant_ids.add(self.colleague)
        form.reason = "Slow pages after the update"
        wizard = form.save()
        action = wizard.action_record_decision()
        rollback = self.env["deployment.rollback"].browse(action["res_id"])
        self.assertEqual(rollback.state, "cancelled")
        self.assertEqual(rollback.decision, "monitor")
        self.assertEqual(rollback.decided_by_id, self.user)
        self.assertEqual(rollback.participant_ids, self.colleague)
        self.assertEqual(rollback.trigger_ids.filtered("holds").mapped("code"), ["slow_response"])
        self.assertIn("Slow pages", rollback.reason)

    def test_no_trigger_needs_a_reason(self):
        form = self._form()
        form.decision = "rollback"
        form.participant_ids.add(self.colleague)
        with self.assertRaisesRegex(AssertionError, "reason is a required field"):
            form.save()
        wizard = (
            self.env["deployment.rollback.wizard"]
            .with_user(self.manager)
            .create({"decision": "rollback", "participant_ids": [(6, 0, self.colleague.ids)]})
        )
        with self.assertRaisesRegex(UserError, "Reason: why roll back when no trigger holds"):
            wizard.action_next()

    def test_user_without_manager_group_cannot_pass_to_the_confirmation(self):
        self._verified_snapshot()
        form = self._form(self.user)
        self._hold(form, "database_corruption")
        wizard = form.save()
        wizard.action_next()
        self.assertEqual(wizard.step, "snapshot")
        with self.assertRaises(AccessError):
            wizard.action_next()
        self.assertEqual(wizard.step, "snapshot")
        wizard.step = "confirm"  # even past the buttons, the server refuses
        before = self.env["deployment.rollback"].search([])
        with self.assertRaises(AccessError):
            wizard.action_start()
        self.assertEqual(self.env["deployment.rollback"].search([]), before)

    def _walk_to_confirmation(self):
        snapshot = self._verified_snapshot()
        form = self._form()
        self._hold(form, "migration_data_errors")
        form.reason = "Invoices lost their lines after the migration"
        form.impact = "Nobody can invoice"
        wizard = form.save()
        self.assertEqual(wizard.snapshot_id, snapshot)
        wizard.action_next()
        self.assertEqual(wizard.step, "snapshot")
        # The helper's preview: rows written since the snapshot, per tracked table.
        self.assertEqual(sorted(wizard.preview_line_ids.mapped("table_name")), ["res_partner"])
        wizard.action_next()
        self.assertEqual(wizard.step, "confirm")
        return wizard

    def test_typed_name_must_match(self):
        wizard = self._walk_to_confirmation()
        wizard.confirm_database = "production"
        before = self.env["deployment.rollback"].search([])
        with self.assertRaisesRegex(UserError, "does not match"):
            wizard.action_start()
        self.assertEqual(self.env["deployment.rollback"].search([]), before)

    def test_helper_down_changes_nothing(self):
        wizard = self._walk_to_confirmation()
        wizard.confirm_database = self.env.cr.dbname
        self.env["ir.config_parameter"].sudo().set_param(
            "deployment_rollback.helper_address", f"unix:{self.helper.dir}/nobody.sock"
        )
        before = self.env["deployment.rollback"].search([])
        with self.assertRaisesRegex(UserError, "cannot be reached"):
            wizard.action_start()
        self.assertEqual(self.env["deployment.rollback"].search([]), before)

    def test_second_rollback_while_one_runs_is_refused(self):
        wizard = self._walk_to_confirmation()
        wizard.confirm_database = self.env.cr.dbname
        running = (
            self.env["deployment.rollback"]
            ._helper_sync()
            .create({"reason": "first", "decision": "rollback", "state": "running"})
        )
        with self.assertRaisesRegex(UserError, f"{running.name} is still running"):
            wizard.action_start()
        self.assertEqual(self.env["deployment.rollback"].search([]), running)

    def test_start_follows_the_helper_and_recreates_the_record_from_the_journal(self):
        wizard = self._walk_to_confirmation()
        wizard.confirm_database = self.env.cr.dbname
        action = wizard.action_start()
        rollback = self.env["deployment.rollback"].browse(action["res_id"])
        self.assertEqual(rollback.state, "running")
        self.assertTrue(rollback.helper_job_id)
        notice = rollback.message_ids.filtered(lambda m: m.subject and "Rollback started" in m.subject)
        self.assertEqual(notice.partner_ids, self.stakeholder)
        self.assertIn("Nobody can invoice", notice.body)

        deadline = time.monotonic() + 120
        while rollback.state == "running" and time.monotonic() < deadline:
            time.sleep(0.3)
            rollback.action_refresh()
        # The stop command fails: the helper undid everything, the live database was not touched.
        self.assertEqual(rollback.state, "failed")
        steps = {step.name: step.result for step in rollback.step_ids}
        self.assertEqual(steps["preflight"], "ok")
        self.assertEqual(steps["staging"], "ok")
        self.assertEqual(steps["stop"], "failed")
        completion = rollback.message_ids.filtered(lambda m: m.subject and "[Rollback Failed]" in m.subject)
        self.assertEqual(completion.partner_ids, self.stakeholder)
        self.assertIn("did not complete", completion.body)

        # A restore that succeeded would have replaced this database by the snapshot's copy, which has
        # no trace of the rollback: the journal import brings the record back, whole.
        uid, name = rollback.rollback_uid, rollback.name
        rollback.sudo().unlink()
        self.env["ir.config_parameter"].sudo().set_param("deployment_rollback.journal_cursor", "0")
        self.env["deployment.operation"]._import_journal()
        again = self.env["deployment.rollback"].search([("rollback_uid", "=", uid)])
        self.assertEqual(again.name, name)
        self.assertEqual(again.state, "failed")
        self.assertEqual(again.decided_by_id, self.manager)
        self.assertIn("Invoices lost their lines", again.reason)
        self.assertEqual(again.trigger_ids.filtered("holds").mapped("code"), ["migration_data_errors"])
        self.assertEqual({s.name: s.result for s in again.step_ids}["stop"], "failed")
        # Imported twice, still one record.
        self.env["deployment.operation"]._import_journal()
        self.assertEqual(self.env["deployment.rollback"].search_count([("rollback_uid", "=", uid)]), 1)

    def test_with_a_standby_the_steps_it_skipped_read_as_skipped(self):
        # Named to run last: the restore it journals would come back into the other tests by the import.
        wizard = self._walk_to_confirmation()
        standby = self.helper.cli("standby", "build", wizard.snapshot_id.helper_id)
        self.addCleanup(lambda: self.helper.cli("standby", "drop", wizard.snapshot_id.helper_id))
        self.assertEqual(standby["state"], "ready")
        wizard.confirm_database = self.env.cr.dbname
        rollback = self.env["deployment.rollback"].browse(wizard.action_start()["res_id"])
        deadline = time.monotonic() + 120
        while rollback.state == "running" and time.monotonic() < deadline:
            time.sleep(0.3)
            rollback.action_refresh()

        # The stop command fails, as above; the standby had taken the staging's place: no step of the
        # finished rollback reads as still running, and each reads in words, not by its journal name.
        self.assertEqual(rollback.state, "failed")
        steps = {step.name: step.result for step in rollback.step_ids}
        self.assertEqual(
            {name: steps.get(name) for name in ("preflight", "standby", "staging", "check", "stop")},
            {"preflight": "ok", "standby": "ok", "staging": "skipped", "check": "skipped", "stop": "failed"},
        )
        self.assertFalse(rollback.step_ids.filtered(lambda step: step.result == "running"))
        self.assertEqual([step.name for step in rollback.step_ids if step.label == step.name], [])
