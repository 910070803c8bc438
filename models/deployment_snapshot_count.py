# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import api, fields, models


class DeploymentSnapshotCount(models.Model):
    _name = "deployment.snapshot.count"
    _inherit = ["deployment.model.label.mixin"]
    _description = "Deployment Snapshot Record Count"
    _order = "table_name"

    snapshot_id = fields.Many2one("deployment.snapshot", required=True, ondelete="cascade", index=True)
    table_name = fields.Char(string="Table", required=True)
    model = fields.Char()
    count = fields.Integer()
    absent = fields.Boolean(help="The table did not exist when the snapshot was taken.")

    @api.model
    def _models_by_table(self):
        """{table: model name} of the installed models; of models sharing a table, the one named after it."""
        mapping = {}
        for name, model in sorted(self.env.registry.models.items()):
            if not model._abstract and model._auto:
                if model._table == name.replace(".", "_"):
                    mapping[model._table] = name
                else:
                    mapping.setdefault(model._table, name)
        return mapping
