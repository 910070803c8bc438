# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Drills by quarter: the current and the previous year, each quarter done, failed, missing or upcoming."""

from odoo import _, api, fields, models

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
    line_ids = fields.One2many("deployment.drill.overview.line", "overview_id", compute="_compute_line_ids")
    done_count = fields.Integer(string="Quarters Done", compute="_compute_line_ids")
    missing_count = fields.Integer(string="Quarters Failed or Missing", compute="_compute_line_ids")

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

    def action_run_now(self):
        return self.env["deployment.drill"].action_run_now()
