# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class DeploymentPostmortemTimeline(models.Model):
    _name = "deployment.postmortem.timeline"
    _description = "Deployment Post-mortem Timeline Line"
    _order = "time, sequence, id"
    _rec_name = "event"

    postmortem_id = fields.Many2one("deployment.postmortem", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer(default=10)
    time = fields.Datetime(required=True)
    event = fields.Char(required=True)
