# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import datetime, timedelta, timezone

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import format_datetime, str2bool

from .schedule_time import UTC, local_now
from .texts import age_text, human_size

# Written only by the helper's mirror (capture, refresh, journal import), never over RPC: the context
# carries this object, which no JSON-RPC or XML-RPC client can send (the pattern of OCA queue_job).
HELPER_SYNC = "_deployment_rollback_helper_sync"
_HELPER_SYNC_TOKEN = object()
# The bus channel of the snapshots' state changes; static/src/js/snapshot_state_field.js listens to it.
SNAPSHOT_CHANNEL = "deployment_rollback.snapshot"
# How long a taken snapshot's page waits for its verification.
FOLLOW_MINUTES = 15

# Scheduled snapshots (Settings): on/off, the hour, its time zone and the days they are taken on.
SCHEDULE_ENABLED_PARAM = "deployment_rollback.schedule_enabled"
SCHEDULE_HOUR_PARAM = "deployment_rollback.schedule_hour"
# The zone of whoever set the hour (schedule_time.setter_tz); none, as before 16.0.3.1.0, means UTC.
SCHEDULE_TZ_PARAM = "deployment_rollback.schedule_tz"
SCHEDULE_DAYS_PARAM = "deployment_rollback.schedule_days"
SCHEDULE_LAST_PARAM = "deployment_rollback.schedule_last_date"
SCHEDULE_DAYS = {"daily": range(7), "weekdays": range(5), "weekly": (6,)}


def parse_helper_time(value):
    """The helper's ISO 8601 UTC time as Odoo's naive UTC datetime."""
    if not value:
        return False
    moment = datetime.fromisoformat(value)
    if moment.tzinfo:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.replace(microsecond=0)


class HelperMirrorMixin(models.AbstractModel):
    """Records that mirror the helper: their fields are written through the privileged path only."""

    _name = "deployment.helper.mirror.mixin"
    _description = "Deployment Rollback Helper Mirror"
    _protected_fields = []

    def _check_protected(self, vals):
        # The token only, never env.su: a public method that sudo()es (or a server action, or a shell
        # script) must not write what only the helper knows. Install and upgrade write none of these.
        if self.env.context.get(HELPER_SYNC) is _HELPER_SYNC_TOKEN:
            return
        touched = set(vals) & set(self._protected_fields)
        if touched:
            raise AccessError(
                _(
                    "These fields mirror the rollback helper and cannot be changed by hand: %s",
                    ", ".join(sorted(touched)),
                )
            )

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            self._check_protected(vals)
        return super().create(vals_list)

    def write(self, vals):
        self._check_protected(vals)
        return super().write(vals)

    def _helper_sync(self):
        return self.sudo().with_context(**{HELPER_SYNC: _HELPER_SYNC_TOKEN})

    def _open_action(self):
        """The record's form, as the action a button returns."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "current",
        }


class DeploymentSnapshot(models.Model):
    _name = "deployment.snapshot"
    _inherit = ["deployment.helper.mirror.mixin", "mail.thread", "mail.activity.mixin"]
    _description = "Deployment Snapshot"
    _order = "create_date desc, id desc"
    _rec_name = "display_label"
    _protected_fields = [
        "helper_id",
        "kind",
        "state",
        "taken_at",
        "finished_at",
        "verified_at",
        "requested_by_id",
        "database",
        "size",
        "code_revision",
        "helper_job_id",
        "job_error",
        "count_ids",
        "module_ids",
        "path",
        "standby_state",
        "standby_database",
    ]

    helper_id = fields.Char(string="Helper ID", readonly=True, index=True, copy=False, tracking=True)
    kind = fields.Selection(
        [
            ("pre_deploy", "Pre-deploy"),
            ("manual", "Manual"),
            ("drill", "Drill"),
            ("scheduled", "Scheduled"),
            ("imported", "Imported"),
        ],
        required=True,
        default="pre_deploy",
        readonly=True,
    )
    label = fields.Char(string="Name", help="Why the snapshot was taken, e.g. before v2.3.")
    display_label = fields.Char(compute="_compute_display_label")
    state = fields.Selection(
        [
            ("capturing", "Capturing"),
            ("done", "Done"),
            ("verified", "Verified"),
            ("failed", "Failed"),
            ("deleted", "Deleted"),  # by the helper's retention: the record stays, for the history
        ],
        default="capturing",
        required=True,
        readonly=True,
        tracking=True,
    )
    taken_at = fields.Datetime(readonly=True)
    finished_at = fields.Datetime(readonly=True)
    verified_at = fields.Datetime(readonly=True)
    requested_by_id = fields.Many2one("res.users", readonly=True)
    database = fields.Char(readonly=True)
    size = fields.Integer(string="Size (bytes)", readonly=True)
    size_human = fields.Char(string="Size", compute="_compute_size_human")
    code_revision = fields.Char(readonly=True)
    path = fields.Char(string="Stored At", readonly=True)
    helper_job_id = fields.Char(readonly=True, copy=False)
    job_error = fields.Text(readonly=True)
    count_ids = fields.One2many("deployment.snapshot.count", "snapshot_id", string="Record Counts", readonly=True)
    module_ids = fields.One2many("deployment.snapshot.module", "snapshot_id", string="Modules", readonly=True)
    standby_state = fields.Selection(
        [
            ("none", "None"),
            ("building", "Building"),
            ("ready", "Ready"),
            ("failed", "Failed"),
            ("interrupted", "Interrupted"),
        ],
        string="Standby",
        default="none",
        required=True,
        readonly=True,
        help="A ready standby is this snapshot already restored beside the live database, closed and "
        "proven equal to it: a rollback to it is a swap of a few seconds instead of a restore.",
    )
    standby_database = fields.Char(readonly=True)
    age_hours = fields.Float(compute="_compute_age")
    age_display = fields.Char(string="Age", compute="_compute_age")

    _sql_constraints = [
        ("helper_id_unique", "unique(helper_id)", "A helper snapshot is mirrored once."),
    ]

    @api.depends("taken_at", "label", "kind")
    @api.depends_context("tz", "lang")
    def _compute_display_label(self):
        kinds = dict(self._fields["kind"]._description_selection(self.env))
        for record in self:
            name = record.label or kinds.get(record.kind)
            # When it was taken tells snapshots apart for people; the helper's id is on the record's page.
            when = format_datetime(self.env, record.taken_at, dt_format="short") if record.taken_at else ""
            record.display_label = f"{name} ({when})" if when else name

    @api.depends("size")
    def _compute_size_human(self):
        for record in self:
            record.size_human = human_size(record.size) if record.size else ""

    @api.depends("taken_at")
    def _compute_age(self):
        now = fields.Datetime.now()
        for record in self:
            if not record.taken_at:
                record.age_hours = 0.0
                record.age_display = ""
                continue
            hours = (now - record.taken_at).total_seconds() / 3600
            record.age_hours = hours
            record.age_display = age_text(self.env, hours)

    def write(self, vals):
        result = super().write(vals)
        if "state" in vals:
            self._notify_state()
        return result

    def _notify_state(self):
        """Tell the open snapshot pages that a state changed (Odoo's bus, once the transaction commits)."""
        self.env["bus.bus"]._sendmany(
            [
                (SNAPSHOT_CHANNEL, "deployment_rollback/snapshot", {"id": record.id, "state": record.state})
                for record in self
            ]
        )

    # -- actions ----------------------------------------------------------------------------------
    @api.model
    def action_open_capture(self, kind="pre_deploy", label=""):
        """The dialog that names the snapshot before the helper takes it."""
        self._check_manager()
        action = self.env["ir.actions.actions"]._for_xml_id("deployment_rollback.deployment_snapshot_capture_action")
        action["context"] = {"default_kind": kind, "default_label": label}
        return action

    def action_follow_capture(self):
        """Called every few seconds by the snapshot's page while it follows a capture.

        Returns {"state", "follow"}: the state after asking the helper, and whether the page should keep
        asking (a capture, then its verification, which the helper journals a moment after)."""
        self.ensure_one()
        if self._following():
            self.action_refresh()
        return {"state": self.state, "follow": self._following()}

    def _following(self):
        if self.state == "capturing":
            return True
        # Odoo's captures ask for a verification: a taken snapshot is verified soon after, or never.
        recent = self.finished_at and fields.Datetime.now() - self.finished_at < timedelta(minutes=FOLLOW_MINUTES)
        return bool(self.state == "done" and self.helper_job_id and recent)

    def _check_manager(self):
        if not self.env.user.has_group("deployment_rollback.group_deployment_rollback_manager"):
            raise AccessError(_("Only Deployment Rollback managers can do this."))

    @api.model
    def action_capture(self, kind="pre_deploy", label=""):
        """Ask the helper for a snapshot and open its record, filled in when the job ends."""
        self._check_manager()
        reply = self.env["deployment.rollback.helper"]._request(
            "POST",
            "/v1/snapshots",
            {
                "kind": kind,
                "label": label or "",
                "verify": True,
                "standby": str2bool(
                    self.env["ir.config_parameter"].sudo().get_param("deployment_rollback.standby_after_capture", "")
                    or "False"
                ),
                "requested_by": self.env.user.login,
            },
        )
        snapshot = self._helper_sync().create(
            {
                "kind": kind,
                "label": label,
                "state": "capturing",
                "helper_job_id": reply["job"]["id"],
                "requested_by_id": self.env.uid,
                "database": self.env.cr.dbname,
                "taken_at": fields.Datetime.now(),
            }
        )
        return snapshot._open_action()

    def action_download_odoo_zip(self):
        """The snapshot as Odoo's backup zip (dump.sql, filestore/, manifest.json), streamed by the helper."""
        self.ensure_one()
        self._check_manager()
        if not self.helper_id:
            raise UserError(_("This snapshot is not complete yet."))
        return {
            "type": "ir.actions.act_url",
            "url": f"/deployment_rollback/snapshot/{self.id}/odoo-zip",
            "target": "self",
        }

    @api.model
    def _schedule(self):
        """Settings' schedule: (hour, its time zone, the weekdays)."""
        params = self.env["ir.config_parameter"].sudo()
        hour = int(params.get_param(SCHEDULE_HOUR_PARAM, 2) or 0)
        tz_name = params.get_param(SCHEDULE_TZ_PARAM) or UTC
        days = SCHEDULE_DAYS.get(params.get_param(SCHEDULE_DAYS_PARAM) or "daily", SCHEDULE_DAYS["daily"])
        return hour, tz_name, days

    @api.model
    def _schedule_due(self):
        """The day (a date string) a scheduled snapshot is due for, or False: Settings' days and hour, once a day.
        Day and hour are those of the schedule's time zone: 2 set in Costa Rica is due from 8:00 UTC."""
        params = self.env["ir.config_parameter"].sudo()
        if not str2bool(params.get_param(SCHEDULE_ENABLED_PARAM, "False")):
            return False
        hour, tz_name, days = self._schedule()
        now = local_now(fields.Datetime.now(), tz_name)
        today = fields.Date.to_string(now.date())
        if now.hour < hour or now.weekday() not in days or params.get_param(SCHEDULE_LAST_PARAM) == today:
            return False
        return today

    @api.model
    def _cron_scheduled_snapshot(self):
        """Hourly: ask the helper for the scheduled snapshot when it is due."""
        today = self._schedule_due()
        if not today:
            return False
        # Recorded before asking: a helper that is down is not asked again every hour of the same day;
        # the failure is in the cron's log.
        self.env["ir.config_parameter"].sudo().set_param(SCHEDULE_LAST_PARAM, today)
        self.action_capture(kind="scheduled", label=_("Scheduled snapshot of %s", today))
        return True

    def action_refresh(self):
        """Follow the helper: its journal holds every job's outcome, this capture's included."""
        self.env["deployment.operation"]._import_journal()
        return True

    def action_verify(self):
        self._check_manager()
        helper = self.env["deployment.rollback.helper"]
        for record in self:
            if not record.helper_id:
                raise UserError(_("This snapshot is not complete yet."))
            helper._request("POST", f"/v1/snapshots/{record.helper_id}/verify", {})
            record.message_post(body=_("Verification requested from the helper."))
        return True

    def action_compare_live(self):
        self.ensure_one()
        wizard = self.env["deployment.snapshot.compare"].create({"snapshot_id": self.id})
        return {
            "type": "ir.actions.act_window",
            "name": _("Compare with Live Data"),
            "res_model": wizard._name,
            "res_id": wizard.id,
            "view_mode": "form",
            "target": "new",
        }

    # -- the helper's mirror ----------------------------------------------------------------------
    def _apply_summary(self, summary):
        """Fill the record from the helper's snapshot summary (the `snapshot --json` object)."""
        self.ensure_one()
        if summary.get("database") and summary["database"] != self.env.cr.dbname:
            self.write(
                {
                    "state": "failed",
                    "job_error": _(
                        "The helper snapshotted database %(other)s, not %(this)s: check the helper's [database] name.",
                        other=summary["database"],
                        this=self.env.cr.dbname,
                    ),
                }
            )
            return
        models_by_table = self.env["deployment.snapshot.count"]._models_by_table()
        verified_at = parse_helper_time(summary.get("verified_at"))
        vals = {
            "helper_id": summary["id"],
            "kind": summary.get("kind") or self.kind,
            "label": self.label or summary.get("label"),
            "state": "verified" if verified_at else "done",
            "taken_at": parse_helper_time(summary.get("created_at")),
            "finished_at": fields.Datetime.now(),
            "verified_at": verified_at,
            "database": summary.get("database"),
            "size": summary.get("size") or 0,
            "code_revision": summary.get("code_revision"),
            "path": summary.get("path"),
            "count_ids": [(5, 0, 0)]
            + [
                (
                    0,
                    0,
                    {
                        "table_name": table,
                        "model": models_by_table.get(table, False),
                        "count": count or 0,
                        "absent": count is None,
                    },
                )
                for table, count in sorted((summary.get("counts") or {}).items())
            ],
        }
        standby = summary.get("standby") or {}
        vals["standby_state"] = standby.get("state") or "none"
        vals["standby_database"] = standby.get("database") or False
        modules = summary.get("modules")
        if isinstance(modules, dict):
            vals["module_ids"] = [(5, 0, 0)] + [
                (0, 0, {"name": name, "version": version}) for name, version in sorted(modules.items())
            ]
        self.write(vals)

    # What the helper's journal says of a standby: its build (kind "standby") by state, or its drop.
    _STANDBY_BY_OPERATION = {
        ("standby", "running"): "building",
        ("standby", "done"): "ready",
        ("standby", "failed"): "failed",
        ("standby_drop", "done"): "none",
    }

    def _apply_standby_operation(self, operation):
        """The standby's state from a journal operation of this snapshot (nothing when none is named)."""
        if not self:
            return
        self.ensure_one()
        state = self._STANDBY_BY_OPERATION.get((operation["kind"], operation["state"]))
        data = operation.get("data") or {}
        if operation["kind"] == "restore" and (data.get("standby_used") or data.get("standby_taken")):
            # Taken by a rollback, it went live or was dropped (refused at the last check, or undone):
            # a later rollback to this snapshot restores from its files.
            state = "none"
        if state:
            database = (operation.get("data") or {}).get("database") if state != "none" else False
            self.write({"standby_state": state, "standby_database": database or False})

    @api.model
    def _mirror(self, summary):
        """Create or update the record of a helper snapshot, by its helper id (idempotent)."""
        record = self.sudo().search([("helper_id", "=", summary["id"])], limit=1)
        if not record:
            record = self._helper_sync().create({"kind": summary.get("kind") or "manual", "state": "capturing"})
        record._helper_sync()._apply_summary(summary)
        return self.browse(record.id)

    @api.model
    def _cron_refresh(self):
        """Every 5 minutes (the cron's model is kept for existing databases): import the journal."""
        self.env["deployment.operation"]._cron_import_journal()

    @api.model
    def _newest_verified_pre_deploy(self):
        return self.search(
            [("kind", "=", "pre_deploy"), ("state", "=", "verified")],
            order="taken_at desc, id desc",
            limit=1,
        )
