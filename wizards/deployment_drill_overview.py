# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Drills by quarter: the current and the previous year, each quarter done, failed, missing or upcoming."""

from odoo import _, api, fields, models
from odoo.exceptions import AccessError

QUARTER_STATES = [
    ("done", "Done"),
    ("failed", "Failed"),
    ("missing", "Missing"),
    ("upcoming", "Upcoming"),
]


class DeploymentDrillOverview(models.TransientModel):
    _name = "deployment.drill.overview"
    _description = "Rollback Drills by Quarter"

    year = fields.Integer(required=True, default=lambda self: fields.Date.context_today(self).year)
    # Stored: the menu opens a saved overview, whose lines the form reads back; lines computed but not
    # stored would exist in memory only and read as none.
    line_ids = fields.One2many("deployment.drill.overview.line", "overview_id", compute="_compute_line_ids", store=True)
    done_count = fields.Integer(string="Quarters Done", compute="_compute_line_ids", store=True)
    missing_count = fields.Integer(string="Quarters Failed or Missing", compute="_compute_line_ids", store=True)

    @api.depends("year")
    def _compute_line_ids(self):
        today = fields.Date.context_today(self)
        drills = self.env["deployment.drill"]
        for overview in self:
            # Newest first, as Odoo lists history.
            rows = drills._quarter_overview([overview.year - 1, overview.year], today=today)[::-1]
            overview.line_ids = [(5, 0, 0)] + [(0, 0, {**row, "drill_ids": [(6, 0, row["drill_ids"])]}) for row in rows]
            overview.done_count = sum(1 for row in rows if row["state"] == "done")
            overview.missing_count = sum(1 for row in rows if row["state"] in ("failed", "missing"))

    def name_get(self):
        # The breadcrumb's text: the screen's name, never the model's technical name and id.
        return [(overview.id, _("Drills by Quarter")) for overview in self]

    @api.model
    def action_open(self):
        """The menu's action: a saved overview. A form opened on no record is a new one, titled "New" and
        saved by Odoo only when left; a saved one carries its name in the breadcrumb."""
        if not self.env.user.has_group("deployment_rollback.group_deployment_rollback_user"):
            # Said before create(), whose refusal would name a model nobody knows.
            raise AccessError(
                _(
                    "The drills by quarter need the access right Deployment Rollback: User. "
                    "Ask an administrator to set it on your user (Settings > Users)."
                )
            )
        overview = self.create({})
        return {
            "type": "ir.actions.act_window",
            "name": _("Drills by Quarter"),
            "res_model": self._name,
            "res_id": overview.id,
            "view_mode": "form",
            "views": [(self.env.ref("deployment_rollback.deployment_drill_overview_view_form").id, "form")],
            "target": "current",
        }

    def action_run_now(self):
        return self.env["deployment.drill"].action_run_now()
