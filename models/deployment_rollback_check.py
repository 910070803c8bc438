# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class DeploymentRollbackCheck(models.Model):
    """A critical check after the restore: measured where possible, ticked by a person otherwise."""

    _name = "deployment.rollback.check"
    _description = "Deployment Rollback Validation Check"
    _order = "sequence, id"

    rollback_id = fields.Many2one("deployment.rollback", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer()
    code = fields.Char(required=True)
    name = fields.Char(string="Check", required=True)
    automatic = fields.Boolean(readonly=True)
    state = fields.Selection(
        [("pending", "To check"), ("ok", "Passed"), ("failed", "Failed")], default="pending", required=True
    )
    detail = fields.Char()
    checked_by_id = fields.Many2one("res.users", readonly=True)

    def action_mark_ok(self):
        self.write({"state": "ok", "checked_by_id": self.env.uid})
        return True

    def action_mark_failed(self):
        self.write({"state": "failed", "checked_by_id": self.env.uid})
        return True
