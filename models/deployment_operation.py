# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Restores, drills and deployments done by the helper, imported from its journal.

The journal is the one path by which Odoo's records follow the helper: snapshots, verifications,
restores (with their rollback records), drills and deployments, whether Odoo or the shell started them.
Every job the API accepts ends up in it, even one that failed before its command began. The journal
lives outside the database, so after a restore replaced the database the next import brings back the
restore itself and every snapshot taken after the restored one; Odoo imports it at its start, every
minute while something waits for the helper, every 5 minutes otherwise, and on the button.
"""

import json
import logging
import threading
from collections import defaultdict

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from psycopg2 import errors

from .deployment_snapshot import parse_helper_time
from .helper_client import SECRET_OPTION

_logger = logging.getLogger(__name__)
# Databases whose cron said once, in this process, that the helper is not configured.
_told_unconfigured = set()

CURSOR_PARAM = "deployment_rollback.journal_cursor"
IMPORT_CRON = "deployment_rollback.ir_cron_deployment_snapshot_refresh"
PAGE = 500
RENOTIFY_SECONDS = 5


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

    def _register_hook(self):
        """At Odoo's start, import the journal at once rather than at the cron's next run.

        After a restore Odoo starts on the snapshot's copy of the database, which knows nothing of the
        rollback or of the snapshots taken since: the records come back as soon as Odoo answers again.
        """
        result = super()._register_hook()
        cron = self.env.ref(IMPORT_CRON, raise_if_not_found=False)
        if cron and self.env["deployment.rollback.helper"]._configured():
            cron._trigger()
            # At Odoo's start the registries load before the cron workers listen for triggers: this
            # trigger's notification reaches none of them, and they would find it only at their next
            # poll, a minute later. Tell them again once they listen.
            renotify = threading.Timer(RENOTIFY_SECONDS, cron._notifydb)
            renotify.daemon = True
            renotify.start()
        return result

    @api.model
    def action_import_journal(self):
        count = self._import_journal()
        if count is None:
            message, kind = _("Another import of the helper's journal is running; it brings the same."), "info"
        else:
            message, kind = _("%s operations read from the helper's journal.", count), "success"
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": _("Journal imported"), "message": message, "type": kind, "sticky": False},
        }

    @api.model
    def _cron_import_journal(self):
        """The cron's import: quiet until the helper is configured, one line (no traceback) when the
        helper does not answer."""
        if not self.env["deployment.rollback.helper"]._configured():
            if self.env.cr.dbname not in _told_unconfigured:
                _told_unconfigured.add(self.env.cr.dbname)
                _logger.warning(
                    "the rollback helper is not configured yet (%s in the Odoo configuration file): "
                    "its journal is imported once it is",
                    SECRET_OPTION,
                )
            return None
        try:
            return self._import_journal()
        except UserError as exc:
            _logger.warning("the rollback helper's journal was not imported: %s", exc.args[0])
            return None

    @api.model
    def _lock_cursor(self):
        """Lock the journal cursor's row for this transaction and return its value, or None when another
        transaction imports right now or has just imported (two workers, the cron and a button at once).

        The row lock is the mutex; NOWAIT answers at once instead of waiting; and a row written by an
        import committed after this transaction's snapshot (Odoo's repeatable read) fails to lock with a
        serialization error instead of being imported twice from a stale cursor. Neither is an error
        for Odoo's log: the other import brings the same.
        """
        cr = self.env.cr
        # A cursor set through the ORM in this transaction (tests, a manual reset) must be what is read.
        self.env["ir.config_parameter"].flush_model()
        for _attempt in range(2):
            try:
                with cr.savepoint(flush=False):
                    cr.execute(
                        "SELECT value FROM ir_config_parameter WHERE key = %s FOR UPDATE NOWAIT",
                        (CURSOR_PARAM,),
                        log_exceptions=False,
                    )
                    row = cr.fetchone()
            except (errors.LockNotAvailable, errors.SerializationFailure):
                return None
            if row:
                return int(row[0] or 0)
            # The first import of this database: the row appears once, whoever inserts it.
            cr.execute(
                """INSERT INTO ir_config_parameter (key, value, create_uid, write_uid, create_date, write_date)
                   VALUES (%s, '0', %s, %s, now() at time zone 'UTC', now() at time zone 'UTC')
                   ON CONFLICT (key) DO NOTHING""",
                (CURSOR_PARAM, self.env.uid, self.env.uid),
            )
            self.env["ir.config_parameter"].clear_caches()
        return None

    @api.model
    def _import_journal(self):
        """The one path by which records follow the helper: its journal, from the stored cursor (the
        journal's event sequence), idempotently (by helper ids). Returns the operations read, or None when
        another transaction is importing."""
        cursor = self._lock_cursor()
        if cursor is None:
            return None
        helper = self.env["deployment.rollback.helper"]
        seen = 0
        while True:
            page = helper._request("GET", f"/v1/journal?since={cursor}&limit={PAGE}")
            seen += self._import_page(page)
            cursor = page["next"]
            if len(page["events"]) < PAGE:
                break
        self.env["ir.config_parameter"].sudo().set_param(CURSOR_PARAM, str(cursor))
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
        for journaled in page["operations"].values():
            ops_events = events[journaled["id"]]
            operation = dict(journaled, error=self._operation_error(journaled, ops_events))
            self._import_operation(operation, ops_events, deploys_by_restore.get(operation["id"]))
        return len(page["operations"])

    @api.model
    def _operation_error(self, operation, events):
        """Why an operation failed: its data's error, else the message of its final journal line."""
        if operation.get("state") not in ("failed", "undone"):
            return False
        error = (operation.get("data") or {}).get("error")
        if not error:
            finals = [e for e in events if e.get("step") == operation["kind"] and e.get("status") == operation["state"]]
            error = finals[-1].get("message") if finals else False
        return error or False

    @api.model
    def _import_operation(self, operation, events=(), deploy=None):
        data = operation.get("data") or {}
        kind = operation["kind"]
        snapshots = self.env["deployment.snapshot"].sudo()
        if kind in ("snapshot", "import"):  # an imported Odoo zip or pg_dump file is a snapshot too
            self._import_snapshot(operation, data)
            return
        if kind == "delete":  # the helper's retention removed a snapshot
            self._import_delete(operation, data)
            return
        snapshot = snapshots.search([("helper_id", "=", data.get("snapshot"))], limit=1)
        snapshot._helper_sync()._apply_standby_operation(operation)
        if kind in ("standby", "standby_drop"):
            return
        if kind == "verify" and operation["state"] == "done" and snapshot:
            snapshot._helper_sync().write(
                {"state": "verified", "verified_at": parse_helper_time(operation["finished_at"])}
            )
        if kind == "verify" and operation["state"] == "failed":
            self._fail_pending_snapshot(operation, data)
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
            "message": (operation.get("error") or "")[:250] or False,
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
    def _import_delete(self, operation, data):
        if operation["state"] == "done" and data.get("deleted"):
            deleted = self.env["deployment.snapshot"].sudo().search([("helper_id", "=", data["deleted"])])
            deleted._helper_sync().write({"state": "deleted"})

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
        try:
            # The RTO the helper measured this restore against: its [rto], not a copy kept in Odoo.
            target, maximum = self.env["deployment.rollback.helper"]._rto()
        except UserError:
            # Unknown rather than guessed: the record shows no RTO when the helper cannot say it.
            target = maximum = 0
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
            "rto_target_minutes": target,
            "rto_max_minutes": maximum,
            "triggers": [],
        }

    @api.model
    def _pending_snapshot(self, data):
        """The record of a capture (or verification) Odoo asked for, found by the helper's job id."""
        if not data.get("job_id"):
            return self.env["deployment.snapshot"]
        return self.env["deployment.snapshot"].sudo().search([("helper_job_id", "=", data["job_id"])], limit=1)

    @api.model
    def _fail_pending_snapshot(self, operation, data):
        pending = self._pending_snapshot(data)
        if pending and pending.state == "capturing":
            pending._helper_sync().write(
                {
                    "state": "failed",
                    "job_error": operation.get("error") or _("the helper's job failed"),
                    "finished_at": parse_helper_time(operation.get("finished_at")),
                }
            )
            pending.message_post(body=_("Snapshot failed: %s", operation.get("error") or ""))

    @api.model
    def _import_snapshot(self, operation, data):
        snapshots = self.env["deployment.snapshot"].sudo()
        summary = data.get("summary")
        pending = self._pending_snapshot(data)
        if operation["state"] == "done" and summary:
            if pending and not pending.helper_id:
                pending._helper_sync()._apply_summary(summary)
            else:
                snapshots._mirror(summary)
        elif operation["state"] == "failed":
            self._fail_pending_snapshot(operation, data)
