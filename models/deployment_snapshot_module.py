# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class DeploymentSnapshotModule(models.Model):
    _name = "deployment.snapshot.module"
    _description = "Deployment Snapshot Module Version"
    _order = "name"

    snapshot_id = fields.Many2one("deployment.snapshot", required=True, ondelete="cascade", index=True)
    name = fields.Char(string="Module", required=True)
    version = fields.Char()
