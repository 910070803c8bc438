# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models

from .rollback_catalogue import IMMEDIATE, TEAM

CATEGORIES = [(IMMEDIATE, "Immediate"), (TEAM, "Team decision")]


class DeploymentRollbackTrigger(models.Model):
    """A runbook trigger as it stood when the decision was taken."""

    _name = "deployment.rollback.trigger"
    _description = "Deployment Rollback Trigger"
    _order = "category, sequence, id"

    rollback_id = fields.Many2one("deployment.rollback", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer()
    code = fields.Char(required=True)
    name = fields.Char(string="Trigger", required=True)
    category = fields.Selection(CATEGORIES, required=True)
    holds = fields.Boolean()
    measured_value = fields.Char()
    source = fields.Char(help="Where the measured value comes from; empty when assessed by a person.")
