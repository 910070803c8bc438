# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import Command, api, fields, models
from psycopg2 import sql


class DeploymentSnapshotCompare(models.TransientModel):
    _name = "deployment.snapshot.compare"
    _description = "Compare a Snapshot with Live Data"

    snapshot_id = fields.Many2one("deployment.snapshot", required=True, readonly=True)
    # Saved lines: computed ones would be new records that the form's client never receives.
    line_ids = fields.One2many("deployment.snapshot.compare.line", "wizard_id", readonly=True)

    @api.model_create_multi
    def create(self, vals_list):
        wizards = super().create(vals_list)
        for wizard in wizards:
            wizard.line_ids = wizard._line_commands()
        return wizards

    def _line_commands(self):
        """One line a counted table: its rows in the snapshot and now."""
        self.ensure_one()
        lines = [Command.clear()]
        for count in self.snapshot_id.count_ids:
            live = self._live_count(count.table_name)
            lines.append(
                Command.create(
                    {
                        "table_name": count.table_name,
                        "model": count.model,
                        "snapshot_count": count.count,
                        "live_count": live or 0,
                        "difference": (live or 0) - count.count,
                        "absent": live is None,
                    }
                )
            )
        return lines

    def _live_count(self, table):
        """Exact row count of *table*, as the helper counts it (all rows, active or not)."""
        self.env.cr.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        if not self.env.cr.fetchone()[0]:
            return None
        self.env.cr.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        return self.env.cr.fetchone()[0]


class DeploymentSnapshotCompareLine(models.TransientModel):
    _name = "deployment.snapshot.compare.line"
    _inherit = ["deployment.model.label.mixin"]
    _description = "Snapshot Comparison Line"

    wizard_id = fields.Many2one("deployment.snapshot.compare", ondelete="cascade")
    table_name = fields.Char(string="Table")
    model = fields.Char()
    snapshot_count = fields.Integer()
    live_count = fields.Integer()
    difference = fields.Integer()
    absent = fields.Boolean(string="Absent Now")
