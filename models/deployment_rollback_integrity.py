# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models


class DeploymentRollbackIntegrity(models.Model):
    """Record count of one tracked table: the snapshot's against the restored database's."""

    _name = "deployment.rollback.integrity"
    _inherit = ["deployment.model.label.mixin"]
    _description = "Deployment Rollback Data Integrity"
    _order = "table_name"

    rollback_id = fields.Many2one("deployment.rollback", required=True, ondelete="cascade", index=True)
    table_name = fields.Char(string="Table", required=True)
    model = fields.Char()
    snapshot_count = fields.Integer()
    restored_count = fields.Integer(string="Count After Restore")
    match = fields.Boolean(compute="_compute_match", store=True)

    @api.depends("snapshot_count", "restored_count")
    def _compute_match(self):
        for line in self:
            line.match = line.snapshot_count == line.restored_count
