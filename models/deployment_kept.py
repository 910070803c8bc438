# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import _, api, fields, models

from .deployment_snapshot import parse_helper_time
from .texts import human_size


class DeploymentKept(models.TransientModel):
    """The databases and filestores kept beside the live ones, as the helper lists them just now."""

    _name = "deployment.kept"
    _description = "Database Kept Beside the Live One"
    _order = "created_at desc, id"

    name = fields.Char(string="Database", readonly=True)
    purpose = fields.Selection(
        [
            ("failed", "Replaced by a restore"),
            ("restore", "Left by an interrupted restore"),
            ("drill", "Left by an interrupted drill"),
            ("verify", "Left by an interrupted verification"),
            ("import", "Left by an interrupted import"),
        ],
        readonly=True,
    )
    created_at = fields.Datetime(readonly=True)
    size_human = fields.Char(string="Size", readonly=True)
    filestore = fields.Char(readonly=True)
    protected = fields.Char(string="Kept Because", readonly=True)

    @api.model
    def action_open(self):
        """Ask the helper what it keeps, and show it (the helper's retention drops these, not Odoo)."""
        reply = self.env["deployment.rollback.helper"]._request("GET", "/v1/kept")
        self.search([("create_uid", "=", self.env.uid)]).unlink()
        # The helper never imports Odoo and says why it keeps a database in English: its two reasons, read here.
        reasons = {
            "an unfinished operation uses it": _("an unfinished operation uses it"),
            "kept by the newest restore": _("kept by the newest restore"),
        }
        records = self.create(
            [
                {
                    "name": item["name"],
                    "purpose": item["purpose"],
                    "created_at": parse_helper_time(item["created_at"]),
                    "size_human": human_size(item["size"]),
                    "filestore": item.get("filestore") or False,
                    "protected": reasons.get(item.get("protected"), item.get("protected")) or False,
                }
                for item in reply.get("kept", [])
            ]
        )
        return {
            "type": "ir.actions.act_window",
            "name": _("Kept Databases"),
            "res_model": self._name,
            "view_mode": "tree",
            "domain": [("id", "in", records.ids)],
            "target": "current",
        }
