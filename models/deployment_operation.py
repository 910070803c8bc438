# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Restores, drills and deployments done by the helper, imported from its journal.

The journal lives outside the database, so after a restore replaced the database the next import
brings back the restore itself and every snapshot taken after the restored one.
"""

import json
from collections import defaultdict

from odoo import _, api, fields, models

from .deployment_snapshot import parse_helper_time

CURSOR_PARAM = "deployment_rollback.journal_cursor"
PAGE = 500


class DeploymentOperation(models.Model):
    _name = "deployment.operation"
    _inherit = ["deployment.helper.mirror.mixin", "mail.thread"]
    _description = "Deployment Rollback Operation"
    _order = "started_at desc, id desc"
    _rec_name = "helper_id"
    _protected_fields = [
        "helper_id",
        "kind",
        "state",
        "started_at",
        "finished_at",
        "snapshot_id",
        "helper_job_id",
        "data",
        "message",
    ]

    helper_id = fields.Char(string="Helper ID", required=True, index=True, readonly=True)
    kind = fields.Selection(
        [
            ("restore", "Restore"),
            ("drill", "Drill"),
            ("deploy", "Deployment"),
            ("verify", "Verification"),
        ],
        required=True,
        readonly=True,
    )
    state = fields.Selection(
        [
            ("running", "Running"),
            ("done", "Done"),
            ("failed", "Failed"),
            ("undone", "Undone"),
        ],
        readonly=True,
        tracking=True,
    )
    started_at = fields.Datetime(readonly=True)
    finished_at = fields.Datetime(readonly=True)
    duration_minutes = fields.Float(compute="_compute_duration")
    snapshot_id = fields.Many2one("deployment.snapshot", readonly=True, ondelete="set null")
    helper_job_id = fields.Char(readonly=True)
    message = fields.Char(readonly=True)
    data = fields.Text(string="Helper Data (JSON)", readonly=True)

    _sql_constraints = [
        ("helper_id_unique", "unique(helper_id)", "A helper operation is imported once."),
    ]

    @api.depends("started_at", "finished_at")
    def _compute_duration(self):
        for record in self:
            if record.started_at and record.finished_at:
                seconds = (record.finished_at - record.started_at).total_seconds()
                record.duration_minutes = seconds / 60
            else:
                record.duration_minutes = 0.0

    @api.model
    def action_import_journal(self):
        count = self._import_journal()
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": _("Journal imported"),
                "message": _("%s operations read from the helper's journal.", count),
                "type": "success",
                "sticky": False,
            },
        }

    @api.model
    def _import_journal(self):
        """Import the helper's journal from the stored cursor, idempotently (by helper ids)."""
        params = self.env["ir.config_parameter"].sudo()
        cursor = int(params.get_param(CURSOR_PARAM, "0") or 0)
        helper = self.env["deployment.rollback.helper"]
        seen = 0
        while True:
            page = helper._request("GET", f"/v1/journal?since={cursor}&limit={PAGE}")
            events = defaultdict(list)
            for event in page["events"]:
                events[event["operation_id"]].append(event)
            for operation in page["operations"].values():
                self._import_operation(operation, events[operation["id"]])
                seen += 1
            cursor = page["next"]
            if len(page["events"]) < PAGE:
                break
        params.set_param(CURSOR_PARAM, str(cursor))
        return seen

    @api.model
    def _import_operation(self, operation, events=()):
        data = operation.get("data") or {}
        kind = operation["kind"]
        snapshots = self.env["deployment.snapshot"].sudo()
        if kind == "snapshot":
            self._import_snapshot(operation, data)
            return
        snapshot = snapshots.search([("helper_id", "=", data.get("snapshot"))], limit=1)
        if kind == "verify" and operation["state"] == "done" and snapshot:
            snapshot._helper_sync().write(
                {"state": "verified", "verified_at": parse_helper_time(operation["finished_at"])}
            )
        if kind not in ("restore", "drill", "deploy"):
            return
        vals = {
            "helper_id": operation["id"],
            "kind": kind,
            "state": operation["state"],
            "started_at": parse_helper_time(operation["started_at"]),
            "finished_at": parse_helper_time(operation.get("finished_at")),
            "snapshot_id": snapshot.id or False,
            "helper_job_id": data.get("job_id"),
            "data": json.dumps(data, indent=2, sort_keys=True),
        }
        record = self.sudo().search([("helper_id", "=", operation["id"])], limit=1)
        if record:
            record._helper_sync().write(vals)
        else:
            self._helper_sync().create(vals)
        if kind == "restore":
            self.env["deployment.rollback"]._sync_from_operation(operation, events)
        if kind == "drill":
            # Drills run from the shell belong to the quarterly drill history too.
            self.env["deployment.drill"]._import_helper_operation(operation)

    @api.model
    def _import_snapshot(self, operation, data):
        snapshots = self.env["deployment.snapshot"].sudo()
        summary = data.get("summary")
        pending = snapshots.search(
            [("helper_job_id", "=", data.get("job_id")), ("helper_job_id", "!=", False)], limit=1
        )
        if operation["state"] == "done" and summary:
            if pending and not pending.helper_id:
                pending._helper_sync()._apply_summary(summary)
            else:
                snapshots._mirror(summary)
        elif operation["state"] == "failed" and pending and pending.state == "capturing":
            pending._helper_sync().write({"state": "failed", "job_error": operation.get("data", {}).get("error")})
