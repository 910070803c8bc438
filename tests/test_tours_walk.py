# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The screens a new administrator found confusing (issue 14), walked in headless Chromium."""

from datetime import date, datetime, timedelta

from odoo.tests import HttpCase, tagged

from .common import RealHelperMixin

STARTED = datetime(2026, 11, 25, 9, 0, 0)


@tagged("post_install", "-at_install")
class TestToursWalk(RealHelperMixin, HttpCase):
    # A desktop screen, as the administrator's. Chromium reads --window-size as "W,H": Odoo 16's default
    # "1366x768" leaves it at its own 800 x 600, where any list squeezes its columns.
    browser_size = "1366,768"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        params = cls.env["ir.config_parameter"].sudo()
        # The host's load is measured for real: a busy test machine must not hold a trigger.
        params.set_param("deployment_rollback.cpu_percent", 100000)
        params.set_param("deployment_rollback.memory_percent", 101)

    def test_checklist_marks_what_is_missing_without_an_error_dialog(self):
        self.start_tour("/web", "deployment_rollback_checklist_marks_what_is_missing", login="admin")
        self.assertFalse(self.env["deployment.rollback"].search([]))

    def test_finished_rollback_reads_plainly(self):
        rollback = (
            self.env["deployment.rollback"]
            ._helper_sync()
            .create(
                {
                    "reason": "Invoices cannot be posted",
                    "decision": "rollback",
                    "state": "done",
                    "started_at": STARTED,
                    "finished_at": STARTED + timedelta(minutes=4),
                    "rto_target_minutes": 15,
                    "rto_max_minutes": 30,
                    "database": self.env.cr.dbname,
                    "escalation_level_id": self.env.ref("deployment_rollback.escalation_level_technical_lead").id,
                }
            )
        )
        events = []
        for minute, step in enumerate(["preflight", "staging", "swap", "verify_live", "start"]):
            at = (STARTED + timedelta(minutes=minute)).isoformat()
            events += [{"step": step, "status": "start", "at": at}, {"step": step, "status": "done", "at": at}]
        rollback._apply_steps(events)
        self.assertTrue(rollback.name.startswith("RB/"))
        self.start_tour("/web", "deployment_rollback_finished_rollback_reads_plainly", login="admin")

    def _spanish_admin(self):
        self.env["res.lang"]._activate_lang("es_CR")
        self.env["ir.module.module"].search([("name", "=", "deployment_rollback")])._update_translations(["es_CR"])
        self.env.ref("base.user_admin").lang = "es_CR"

    def test_spanish_checklist_columns_are_not_cut(self):
        self._spanish_admin()
        self.start_tour("/web", "deployment_rollback_spanish_columns_are_not_cut", login="admin")

    def test_spanish_quarters_are_not_cut(self):
        self._spanish_admin()
        self.env["deployment.drill"].create(
            {"date": date.today(), "state": "done", "result": "ok", "seconds": 312.5, "rto_met": True}
        )
        self.start_tour("/web", "deployment_rollback_spanish_quarters_are_not_cut", login="admin")
