# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import time
from datetime import date

from odoo.addons.deployment_rollback.models.deployment_drill import (
    REMINDER_DAYS_PARAM,
    quarter_bounds,
)
from odoo.exceptions import AccessError, UserError
from odoo.tests.common import TransactionCase, new_test_user

from .common import RealHelperMixin

MANAGER_GROUP = "deployment_rollback.group_deployment_rollback_manager"


class TestDeploymentDrill(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(cls.env, login="drill_manager", groups=f"base.group_user,{MANAGER_GROUP}")
        cls.user = new_test_user(
            cls.env, login="drill_user", groups="base.group_user,deployment_rollback.group_deployment_rollback_user"
        )
        cls.drills = cls.env["deployment.drill"].with_user(cls.manager)

    def _finished(self, day, result):
        return self.drills.create({"date": day, "state": "done", "result": result, "seconds": 42.0})

    def _reminders(self, quarter):
        return self.env["mail.activity"].search(
            [("res_model", "=", "deployment.drill"), ("summary", "=", f"Run the rollback drill of {quarter}")]
        )

    def test_quarter_of_the_date(self):
        cases = {
            date(2026, 1, 1): ("2026-Q1", 2026, 1),
            date(2026, 3, 31): ("2026-Q1", 2026, 1),
            date(2026, 4, 1): ("2026-Q2", 2026, 2),
            date(2026, 9, 30): ("2026-Q3", 2026, 3),
            date(2026, 12, 31): ("2026-Q4", 2026, 4),
        }
        for day, expected in cases.items():
            drill = self.drills.create({"date": day})
            self.assertEqual((drill.quarter, drill.year, drill.quarter_number), expected, day)
        drill.date = date(2027, 5, 2)
        self.assertEqual(drill.quarter, "2027-Q2")
        self.assertEqual(quarter_bounds(2028, 1), (date(2028, 1, 1), date(2028, 3, 31)))
        self.assertEqual(quarter_bounds(2026, 4), (date(2026, 10, 1), date(2026, 12, 31)))

    def test_overview_by_quarter(self):
        self._finished(date(2031, 2, 3), "ok")
        self._finished(date(2031, 5, 3), "failed")
        failed_then_passed = self._finished(date(2031, 8, 1), "failed") | self._finished(date(2031, 8, 20), "ok")
        self.drills.create({"date": date(2031, 11, 2)})  # planned, never run
        self._finished(date(2032, 1, 15), "ok")

        rows = self.drills._quarter_overview([2031, 2032], today=date(2032, 5, 10))

        self.assertEqual(
            [(row["quarter"], row["state"]) for row in rows],
            [
                ("2031-Q1", "done"),
                ("2031-Q2", "failed"),
                ("2031-Q3", "done"),
                ("2031-Q4", "missing"),
                ("2032-Q1", "done"),
                ("2032-Q2", "missing"),
                ("2032-Q3", "upcoming"),
                ("2032-Q4", "upcoming"),
            ],
        )
        self.assertEqual(sorted(rows[2]["drill_ids"]), sorted(failed_then_passed.ids))

    def test_overview_view_shows_the_current_and_previous_year(self):
        today = date.today()
        self._finished(today, "ok")
        overview = self.env["deployment.drill.overview"].with_user(self.user).create({})
        self.assertEqual(len(overview.line_ids), 8)
        self.assertEqual(
            sorted(set(overview.line_ids.mapped("year"))), [today.year - 1, today.year], "newest first, two years"
        )
        current = overview.line_ids.filtered(lambda line: line.quarter == f"{today.year}-Q{(today.month - 1) // 3 + 1}")
        self.assertEqual(current.state, "done")
        self.assertGreaterEqual(overview.done_count, 1)

    def test_reminder_near_the_end_of_a_quarter_without_a_passed_drill(self):
        self.env["ir.config_parameter"].sudo().set_param(REMINDER_DAYS_PARAM, "14")
        managers = self.env.ref(MANAGER_GROUP).users.filtered(lambda u: u.active and not u.share)
        self.assertIn(self.manager, managers)
        self._finished(date(2031, 10, 5), "failed")  # a failed drill does not count

        drill = self.env["deployment.drill"]._cron_drill_reminder(today=date(2031, 12, 21))

        reminders = self._reminders("2031-Q4")
        self.assertEqual(reminders.user_id, managers)
        self.assertEqual(len(reminders), len(managers))
        self.assertEqual(set(reminders.mapped("date_deadline")), {date(2031, 12, 31)})
        self.assertEqual(set(reminders.mapped("res_id")), {drill.id})
        self.assertEqual(drill.state, "planned")
        self.assertEqual(drill.quarter, "2031-Q4")

        # Once, whatever language the summary was written in.
        reminders.write({"summary": "Lancer l'exercice de retour arri\u00e8re du 2031-Q4"})
        self.env["deployment.drill"]._cron_drill_reminder(today=date(2031, 12, 22))
        self.assertEqual(drill.activity_ids, reminders, "each manager is reminded once")
        reminders.write({"summary": "Run the rollback drill of 2031-Q4"})

        # Recording the quarter's drill as passed answers the reminders.
        drill.with_user(self.manager).write({"result": "ok", "seconds": 95})
        drill.with_user(self.manager).action_record_result()
        self.assertFalse(self._reminders("2031-Q4"))
        self.assertIn("2031-Q4 drill of 2031-12-21 passed.", drill.message_ids[0].body)
        self.env["deployment.drill"]._cron_drill_reminder(today=date(2031, 12, 23))
        self.assertFalse(self._reminders("2031-Q4"))

    def test_reminder_uses_the_planned_drill_of_the_quarter(self):
        planned = self.drills.create({"date": date(2031, 6, 1)})
        self.env["deployment.drill"]._cron_drill_reminder(today=date(2031, 6, 25))
        self.assertEqual(set(self._reminders("2031-Q2").mapped("res_id")), {planned.id})
        self.assertEqual(self.env["deployment.drill"].search_count([("quarter", "=", "2031-Q2")]), 1)

    def test_no_reminder_after_a_passed_drill(self):
        self._finished(date(2031, 7, 10), "ok")
        self.env["deployment.drill"]._cron_drill_reminder(today=date(2031, 9, 20))
        self.assertFalse(self._reminders("2031-Q3"))

    def test_no_reminder_early_in_the_quarter(self):
        self.env["ir.config_parameter"].sudo().set_param(REMINDER_DAYS_PARAM, "14")
        self.env["deployment.drill"]._cron_drill_reminder(today=date(2031, 11, 21))  # 40 days before the end
        self.assertFalse(self._reminders("2031-Q4"))
        self.assertFalse(self.env["deployment.drill"].search([("quarter", "=", "2031-Q4")]))
        # The setting moves the reminder.
        self.env["ir.config_parameter"].sudo().set_param(REMINDER_DAYS_PARAM, "45")
        self.env["deployment.drill"]._cron_drill_reminder(today=date(2031, 11, 21))
        self.assertTrue(self._reminders("2031-Q4"))

    def test_reminder_days_setting(self):
        settings = self.env["res.config.settings"].create({"deployment_drill_reminder_days": 21})
        settings.execute()
        self.assertEqual(self.env["ir.config_parameter"].sudo().get_param(REMINDER_DAYS_PARAM), "21")
        with self.assertRaisesRegex(Exception, "0 to 92 days"):
            self.env["res.config.settings"].create({"deployment_drill_reminder_days": -3})

    def test_only_managers_run_drills(self):
        with self.assertRaisesRegex(AccessError, "managers"):
            self.env["deployment.drill"].with_user(self.user).action_run_now()
        self.assertFalse(self.env["deployment.drill"].search([]))

    def test_drill_recorded_by_hand(self):
        drill = self.drills.create({"date": date(2031, 3, 3), "environment": "staging", "seconds": 310})
        with self.assertRaisesRegex(UserError, "Set the result"):
            drill.action_record_result()
        drill.result = "ok"
        drill.action_record_result()
        self.assertEqual(drill.state, "done")
        with self.assertRaisesRegex(AccessError, "mirror the rollback helper"):
            drill.write({"helper_id": "drill-20310303T000000Z-abcdef"})


class TestDeploymentDrillHelper(RealHelperMixin, TransactionCase):
    """Drills run by a real odoo-rollback serve against this test database."""

    def _wait_done(self, drill, timeout=180):
        deadline = time.monotonic() + timeout
        while drill.state == "running" and time.monotonic() < deadline:
            time.sleep(0.3)
            drill.action_refresh()
        return drill

    def test_run_drill_now_records_the_result(self):
        snapshot = self.helper.cli("snapshot", "--kind", "pre_deploy", "--verify")
        # The reminder of this quarter plans the drill that the manager then runs.
        self.env["ir.config_parameter"].sudo().set_param(REMINDER_DAYS_PARAM, "92")
        planned = self.env["deployment.drill"]._cron_drill_reminder()
        self.assertEqual(planned.state, "planned")
        self.assertTrue(planned.activity_ids)

        action = planned.action_run_now()
        drill = self.env["deployment.drill"].browse(action["res_id"])
        self.assertEqual(drill, planned)
        self.assertEqual(drill.state, "running")
        self.assertTrue(drill.helper_job_id)
        self._wait_done(drill)

        self.assertEqual(drill.state, "done", drill.problems)
        self.assertEqual(drill.result, "ok", drill.problems)
        self.assertGreater(drill.seconds, 0)
        self.assertTrue(drill.rto_met)
        self.assertEqual(drill.snapshot_helper_id, snapshot["id"])
        self.assertTrue(drill.helper_id.startswith("drill-"))
        self.assertFalse(drill.activity_ids, "the passed drill answers the quarter's reminders")

        # The journal holds the same drill: importing it adds no second record.
        self.env["deployment.operation"]._import_journal()
        self.assertEqual(self.env["deployment.drill"].search([("helper_job_id", "=", drill.helper_job_id)]), drill)
        self.assertEqual(self.env["deployment.drill"].search([("helper_id", "=", drill.helper_id)]), drill)
        operation = self.env["deployment.operation"].search([("helper_id", "=", drill.helper_id)])
        self.assertEqual(operation.kind, "drill")

    def test_failed_drill_is_recorded_as_failed(self):
        taken = self.helper.cli("snapshot", "--kind", "pre_deploy", "--verify")
        self.env["deployment.operation"]._import_journal()
        snapshot = self.env["deployment.snapshot"].search([("helper_id", "=", taken["id"])])
        archive = self.helper.dir / "storage" / "snapshots" / taken["id"] / "filestore.tar"
        archive.write_bytes(archive.read_bytes()[:10])

        drill = self.env["deployment.drill"].create({"snapshot_id": snapshot.id})
        drill.action_run_now()
        reader = new_test_user(
            self.env, login="drill_reader", groups="base.group_user,deployment_rollback.group_deployment_rollback_user"
        )
        self._wait_done(drill.with_user(reader))

        self.assertEqual(drill.state, "done")
        self.assertEqual(drill.result, "failed")
        self.assertIn("filestore.tar", drill.problems)
        self.assertIn("Drill failed", drill.message_ids[0].body)
        # Drills of other tests come back with the helper's journal; alone, this one fails its quarter.
        self.env["deployment.drill"].search([("id", "!=", drill.id)]).unlink()
        row = next(r for r in drill._quarter_overview([drill.year]) if r["quarter_number"] == drill.quarter_number)
        self.assertEqual(row["state"], "failed")
        self.assertEqual(row["drill_ids"], drill.ids)

    def test_drill_from_the_shell_joins_the_history(self):
        snapshot = self.helper.cli("snapshot", "--kind", "pre_deploy", "--verify")
        shell_drill = self.helper.cli("drill", snapshot["id"])

        self.env["deployment.operation"]._import_journal()
        self.env["ir.config_parameter"].sudo().set_param("deployment_rollback.journal_cursor", "0")
        self.env["deployment.operation"]._import_journal()

        drill = self.env["deployment.drill"].search([("helper_id", "=", shell_drill["id"])])
        self.assertEqual(len(drill), 1)
        self.assertEqual(drill.state, "done")
        self.assertEqual(drill.result, "ok")
        self.assertEqual(drill.seconds, shell_drill["seconds"])
        self.assertTrue(drill.rto_met)
        self.assertEqual(drill.snapshot_id.helper_id, snapshot["id"])
        row = next(
            r
            for r in self.env["deployment.drill"]._quarter_overview([drill.year])
            if r["quarter_number"] == drill.quarter_number
        )
        self.assertEqual(row["state"], "done")

    def test_drill_of_an_unknown_snapshot_is_refused(self):
        with self.assertRaisesRegex(UserError, "404"):
            self.env["deployment.rollback.helper"]._request(
                "POST", "/v1/drills", {"snapshot": "20990101T000000Z-pre_deploy-abcdef"}
            )
        drill = self.env["deployment.drill"].create({"date": date.today()})
        drill.snapshot_id = self.env["deployment.snapshot"]._helper_sync().create({"kind": "manual"})
        with self.assertRaisesRegex(UserError, "not complete yet"):
            drill.action_run_now()
        self.assertEqual(drill.state, "planned")
