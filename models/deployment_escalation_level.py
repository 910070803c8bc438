# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models


class DeploymentEscalationLevel(models.Model):
    """Who is called when a rollback has run for so many minutes (the runbook's escalation path)."""

    _name = "deployment.escalation.level"
    _description = "Deployment Rollback Escalation Level"
    _order = "minutes, id"
    _rec_name = "role"

    role = fields.Char(required=True, translate=True)
    minutes = fields.Integer(
        string="After (minutes)", required=True, help="Called once a rollback has run this many minutes."
    )
    partner_ids = fields.Many2many("res.partner", string="Contacts")
    active = fields.Boolean(default=True)

    _sql_constraints = [
        ("minutes_positive", "CHECK(minutes >= 0)", "An escalation level starts at 0 minutes or later."),
    ]

    @api.model
    def _reached(self, elapsed_minutes):
        """The levels whose time has come, lowest first."""
        return self.search([("minutes", "<=", elapsed_minutes)])

    def _reached_partners(self):
        """The contacts of these levels and of every level called before them."""
        if not self:
            return self.env["res.partner"]
        return self.search([("minutes", "<=", max(self.mapped("minutes")))]).partner_ids
