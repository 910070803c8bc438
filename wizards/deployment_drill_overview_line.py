# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

from .deployment_drill_overview import QUARTER_STATES


class DeploymentDrillOverviewLine(models.TransientModel):
    _name = "deployment.drill.overview.line"
    _description = "Rollback Drills of a Quarter"
    _order = "year desc, quarter_number desc"

    overview_id = fields.Many2one("deployment.drill.overview", required=True, ondelete="cascade")
    year = fields.Integer()
    quarter_number = fields.Integer()
    quarter = fields.Char()
    state = fields.Selection(QUARTER_STATES)
    drill_ids = fields.Many2many("deployment.drill", string="Drills")
