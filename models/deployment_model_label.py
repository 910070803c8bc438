# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models


class DeploymentModelLabelMixin(models.AbstractModel):
    """Lines that count a table's rows show the records by their name ("Journal Entry"), not "account.move"."""

    _name = "deployment.model.label.mixin"
    _description = "Deployment Rollback Counted Records"

    model_label = fields.Char(string="Records", compute="_compute_model_label")

    @api.depends("model", "table_name")
    @api.depends_context("lang")
    def _compute_model_label(self):
        names = {}
        for line in self:
            if line.model and line.model not in names:
                names[line.model] = self.env["ir.model"]._get(line.model).name or line.model
            line.model_label = names.get(line.model) or line.table_name
