# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class DeploymentSnapshotCapture(models.TransientModel):
    """Names the snapshot before the helper takes it ("before v2.3"): the name is how people find it later."""

    _name = "deployment.snapshot.capture"
    _description = "Capture a Snapshot"

    kind = fields.Selection([("pre_deploy", "Pre-deploy"), ("manual", "Manual")], required=True, default="pre_deploy")
    label = fields.Char(string="Name", help="Why the snapshot is taken, e.g. before v2.3.")

    def action_capture(self):
        self.ensure_one()
        return self.env["deployment.snapshot"].action_capture(self.kind, (self.label or "").strip())
