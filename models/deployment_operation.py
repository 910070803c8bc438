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
        "outcome",
        "reason",
        "from_revision",
        "to_revision",
        "modules",
        "analysis",
        "rollback_operation_helper_id",
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
    # Deployments (odoo-rollback deploy): what was deployed, how the analysis judged it, what followed.
    outcome = fields.Selection(
        [("deployed", "Deployed"), ("rolled_back", "Rolled back"), ("paused", "Paused"), ("failed", "Failed")],
        readonly=True,
        tracking=True,
    )
    reason = fields.Char(readonly=True)
    from_revision = fields.Char(readonly=True)
    to_revision = fields.Char(readonly=True)
    modules = fields.Char(string="Modules Updated", readonly=True)
    analysis = fields.Text(readonly=True)
    rollback_operation_helper_id = fields.Char(string="Rollback Operation ID", readonly=True)
    rollback_operation_id = fields.Many2one("deployment.operation", compute="_compute_rollback_links")
    rollback_id = fields.Many2one("deployment.rollback", compute="_compute_rollback_links")

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

    @api.depends("rollback_operation_helper_id")
    def _compute_rollback_links(self):
        for record in self:
            helper_id = record.rollback_operation_helper_id
            record.rollback_operation_id = helper_id and self.search([("helper_id", "=", helper_id)], limit=1)
            record.rollback_id = helper_id and self.env["deployment.rollback"].search(
                [("helper_operation_id", "=", helper_id)], limit=1
            )

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
            seen += self._import_page(page)
            cursor = page["next"]
            if len(page["events"]) < PAGE:
                break
        params.set_param(CURSOR_PARAM, str(cursor))
        return seen

    @api.model
    def _import_page(self, page):
        """Import one page of the journal (``GET /v1/journal``); returns the operations seen."""
        events = defaultdict(list)
        for event in page["events"]:
            events[event["operation_id"]].append(event)
        # A deployment that rolled itself back names its restore: that restore gets a rollback record.
        deploys_by_restore = {
            (op.get("data") or {}).get("rollback_operation"): op
            for op in page["operations"].values()
            if op["kind"] == "deploy" and (op.get("data") or {}).get("rollback_operation")
        }
        for operation in page["operations"].values():
            self._import_operation(operation, events[operation["id"]], deploys_by_restore.get(operation["id"]))
        return len(page["operations"])

    @api.model
    def _import_operation(self, operation, events=(), deploy=None):
        data = operation.get("data") or {}
        kind = operation["kind"]
        snapshots = self.env["deployment.snapshot"].sudo()
        if kind == "snapshot":
            self._import_snapshot(operation, data)
            return
        snapshot = snapshots.search([("helper_id", "=", data.get("snapshot"))], limit=1)
        if kind in ("standby", "standby_drop"):
            if snapshot:
                snapshot._helper_sync()._apply_standby_operation(operation)
            return
        if kind == "restore" and data.get("standby_used") and snapshot:
            # The standby went live: a later rollback to this snapshot restores from its files.
            snapshot._helper_sync().write({"standby_state": "none", "standby_database": False})
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
        if kind == "deploy":
            vals.update(self._deploy_vals(data))
        record = self.sudo().search([("helper_id", "=", operation["id"])], limit=1)
        if record:
            record._helper_sync().write(vals)
        else:
            self._helper_sync().create(vals)
        if kind == "restore":
            if deploy and not data.get("rollback"):
                operation = dict(operation, data=dict(data, rollback=self._automatic_rollback_payload(deploy)))
            self.env["deployment.rollback"]._sync_from_operation(operation, events)
        if kind == "drill":
            # Drills run from the shell belong to the quarterly drill history too.
            self.env["deployment.drill"]._import_helper_operation(operation)

    @api.model
    def _deploy_vals(self, data):
        checks = data.get("analysis") or []
        return {
            "outcome": data.get("outcome") or False,
            "reason": (data.get("reason") or "")[:250] or False,
            "from_revision": data.get("from_revision"),
            "to_revision": data.get("to_revision") or data.get("requested"),
            "modules": ", ".join(data.get("modules") or []) or False,
            "analysis": "\n".join(
                f"{'ok' if check.get('ok') else 'FAILED'}  {check.get('name')}: {check.get('detail') or ''}"
                for check in checks
            )
            or False,
            "rollback_operation_helper_id": data.get("rollback_operation"),
        }

    @api.model
    def _automatic_rollback_payload(self, deploy):
        """The rollback record of a restore that a failed deployment started by itself."""
        data = deploy.get("data") or {}
        failed = [check.get("name") for check in data.get("analysis") or [] if not check.get("ok")]
        params = self.env["ir.config_parameter"].sudo()
        return {
            "uid": f"deploy-{deploy['id']}",
            "reason": _(
                "Automatic rollback of the deployment of %(revision)s: %(reason)s",
                revision=data.get("to_revision") or data.get("requested") or "?",
                reason=data.get("reason") or ", ".join(failed) or _("an immediate trigger failed"),
            ),
            "decision": "rollback",
            "snapshot": data.get("snapshot"),
            "started_at": deploy.get("started_at"),
            "rto_target_minutes": int(params.get_param("deployment_rollback.rto_target_minutes", 15) or 15),
            "rto_max_minutes": int(params.get_param("deployment_rollback.rto_max_minutes", 30) or 30),
            "triggers": [],
        }

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
