# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tools import str2bool

from .deployment_snapshot import SCHEDULE_ENABLED_PARAM, SCHEDULE_HOUR_PARAM, SCHEDULE_TZ_PARAM
from .helper_client import ADDRESS_PARAM, DEFAULT_ADDRESS, SECRET_OPTION
from .helper_version import version_problem
from .schedule_time import hour_in, next_run_utc, setter_tz

STAKEHOLDERS_PARAM = "deployment_rollback.stakeholder_ids"


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    deployment_helper_address = fields.Char(
        string="Helper Address",
        config_parameter=ADDRESS_PARAM,
        default=DEFAULT_ADDRESS,
        help="unix:/path/to/api.sock, or http://127.0.0.1:PORT for docker set-ups.",
    )
    # What the helper does is set in its configuration file, the one source of truth: Odoo shows it,
    # read-only, as GET /v1/config answers (helper/README.md, "Settings: the helper's file is the truth").
    deployment_helper_config = fields.Char(
        string="Helper Configuration", compute="_compute_deployment_helper_config", readonly=True
    )
    deployment_tracked_models = fields.Char(
        string="Tracked Tables",
        compute="_compute_deployment_helper_config",
        readonly=True,
        help="The tables whose rows the helper counts in every snapshot ([counts] tables).",
    )
    deployment_rto_target_minutes = fields.Integer(
        string="RTO Target (minutes)", compute="_compute_deployment_helper_config", readonly=True
    )
    deployment_rto_max_minutes = fields.Integer(
        string="RTO Maximum (minutes)", compute="_compute_deployment_helper_config", readonly=True
    )
    deployment_retention = fields.Char(
        string="Snapshots Kept", compute="_compute_deployment_helper_config", readonly=True
    )
    deployment_schedule_enabled = fields.Boolean(
        string="Scheduled Snapshots",
        config_parameter="deployment_rollback.schedule_enabled",
        help="Ask the helper for a verified snapshot every scheduled day, as auto_backup does.",
    )
    # An hour of the setter's day, stored with the setter's time zone (models/schedule_time.py).
    deployment_schedule_hour = fields.Integer(
        string="Snapshot Hour",
        compute="_compute_deployment_schedule_hour",
        inverse="_inverse_deployment_schedule_hour",
        readonly=False,
        help="An hour of the day on the clock of the time zone shown beside it: yours (Preferences), "
        "else the company's, else UTC. It stays that wall-clock hour through daylight saving time.",
    )
    deployment_schedule_tz = fields.Char(
        string="Snapshot Time Zone", compute="_compute_deployment_schedule_hour", readonly=True
    )
    deployment_schedule_days = fields.Selection(
        [("daily", "Every day"), ("weekdays", "Monday to Friday"), ("weekly", "Sundays")],
        string="Snapshot Days",
        config_parameter="deployment_rollback.schedule_days",
        default="daily",
    )
    deployment_standby_after_capture = fields.Boolean(
        string="Warm Standby after Capture",
        config_parameter="deployment_rollback.standby_after_capture",
        help="After a snapshot captured from Odoo is verified, the helper restores it ahead of need, in the "
        "background and at low priority: a rollback to it is then a swap of a few seconds. It takes a "
        "database's disk space; the helper refuses one that would not fit.",
    )
    deployment_drill_reminder_days = fields.Integer(
        string="Drill Reminder (days before quarter end)",
        config_parameter="deployment_rollback.drill_reminder_days",
        default=14,
        help="When the quarter has no passed drill this many days before it ends, managers get a To Do.",
    )
    deployment_stakeholder_ids = fields.Many2many(
        "res.partner",
        string="Stakeholders to Notify",
        compute="_compute_deployment_stakeholder_ids",
        inverse="_inverse_deployment_stakeholder_ids",
    )
    deployment_trigger_window_minutes = fields.Integer(
        string="Trigger Window (minutes)",
        config_parameter="deployment_rollback.trigger_window_minutes",
        default=60,
        help="How far back the rollback checklist measures e-mail and e-invoice failures.",
    )
    deployment_email_failure_percent = fields.Integer(
        string="E-mail Failures (%)",
        config_parameter="deployment_rollback.email_failure_percent",
        default=20,
    )
    deployment_einvoice_failure_percent = fields.Integer(
        string="E-invoice Failures (%)",
        config_parameter="deployment_rollback.einvoice_failure_percent",
        default=10,
    )
    deployment_response_seconds = fields.Integer(
        string="Response Time (s)",
        config_parameter="deployment_rollback.response_seconds",
        default=10,
    )
    deployment_cpu_percent = fields.Integer(
        string="CPU (%)",
        config_parameter="deployment_rollback.cpu_percent",
        default=90,
        help="Five-minute load average per CPU, as the helper reads it on its host.",
    )
    deployment_memory_percent = fields.Integer(
        string="Memory (%)",
        config_parameter="deployment_rollback.memory_percent",
        default=95,
    )
    deployment_query_seconds = fields.Integer(
        string="Query Time (s)",
        config_parameter="deployment_rollback.query_seconds",
        default=30,
        help="A query of this database running longer counts as a query timing out.",
    )
    deployment_progress_minutes = fields.Integer(
        string="Progress Updates Every (minutes)",
        config_parameter="deployment_rollback.progress_minutes",
        default=15,
    )

    @api.model
    def _stakeholders(self):
        """The partners told about every rollback."""
        raw = self.env["ir.config_parameter"].sudo().get_param(STAKEHOLDERS_PARAM, "") or ""
        ids = [int(i) for i in raw.split(",") if i.strip().isdigit()]
        return self.env["res.partner"].sudo().browse(ids).exists()

    @api.constrains("deployment_drill_reminder_days")
    def _check_deployment_drill_reminder_days(self):
        for record in self:
            if not 0 <= record.deployment_drill_reminder_days <= 92:
                raise ValidationError(_("The drill reminder comes 0 to 92 days before the end of the quarter."))

    @api.constrains("deployment_schedule_hour")
    def _check_deployment_schedule_hour(self):
        for record in self:
            if not 0 <= record.deployment_schedule_hour <= 23:
                raise ValidationError(_("The scheduled snapshot hour is 0 to 23."))

    @api.depends("company_id")
    def _compute_deployment_schedule_hour(self):
        """The stored hour read on the clock of whoever looks: that zone applies once they save it."""
        params = self.env["ir.config_parameter"].sudo()
        hour, stored_tz, _days = self.env["deployment.snapshot"]._schedule()
        viewer_tz = setter_tz(self.env)
        if params.get_param(SCHEDULE_HOUR_PARAM) not in (None, False, ""):
            hour = hour_in(hour, stored_tz, viewer_tz, fields.Datetime.now())
        for record in self:
            record.deployment_schedule_hour = hour
            record.deployment_schedule_tz = viewer_tz

    def _inverse_deployment_schedule_hour(self):
        params = self.env["ir.config_parameter"].sudo()
        stored = params.get_param(SCHEDULE_HOUR_PARAM) not in (None, False, "")
        for record in self:
            if not 0 <= record.deployment_schedule_hour <= 23:
                continue  # the constraint says so
            shown = self.new({})
            if stored and record.deployment_schedule_hour == shown.deployment_schedule_hour:
                # Saved unchanged (Settings saves every field): the hour keeps the zone it was set in,
                # rather than moving to the clock of whoever saved something else.
                continue
            params.set_param(SCHEDULE_HOUR_PARAM, str(record.deployment_schedule_hour))
            params.set_param(SCHEDULE_TZ_PARAM, setter_tz(self.env))

    def set_values(self):
        result = super().set_values()
        self._schedule_cron_nextcall()
        return result

    @api.model
    def _schedule_cron_nextcall(self):
        """The cron's next call (UTC) at the schedule's next hour, so that the snapshot starts on the hour
        rather than up to an hour later; a snapshot due now and not taken yet is asked at once."""
        cron = self.env.ref("deployment_rollback.ir_cron_deployment_scheduled_snapshot", raise_if_not_found=False)
        snapshots = self.env["deployment.snapshot"]
        if not cron or not str2bool(self.env["ir.config_parameter"].sudo().get_param(SCHEDULE_ENABLED_PARAM, "False")):
            return False
        now = fields.Datetime.now().replace(microsecond=0)
        hour, tz_name, days = snapshots._schedule()
        nextcall = now if snapshots._schedule_due() else next_run_utc(now, hour, tz_name, days)
        cron.sudo().write({"nextcall": nextcall})
        return nextcall

    # The settings form computes on its first onchange only what depends on a field it fills in.
    @api.depends("company_id")
    def _compute_deployment_helper_config(self):
        helper = self.env["deployment.rollback.helper"]
        view, problem = {}, False
        if not helper._configured():
            problem = _("not configured yet: set %s in the Odoo configuration file", SECRET_OPTION)
        else:
            try:
                view = helper._config()
            except UserError as exc:
                problem = exc.args[0]
        rto = view.get("rto") or {}
        models_by_table = self.env["deployment.snapshot.count"]._models_by_table()
        tables = (view.get("counts") or {}).get("tables") or []
        retention = view.get("retention")
        for record in self:
            record.deployment_helper_config = problem or view.get("source") or _("the helper's configuration")
            record.deployment_rto_target_minutes = int(rto.get("target_minutes") or 0)
            record.deployment_rto_max_minutes = int(rto.get("max_minutes") or 0)
            # The records by their name ("Journal Entry"), as the snapshot's counts show them.
            record.deployment_tracked_models = ", ".join(
                self.env["ir.model"]._get(models_by_table[table]).name if table in models_by_table else table
                for table in tables
            )
            record.deployment_retention = self._retention_text(retention) if isinstance(retention, dict) else False

    @api.model
    def _retention_text(self, retention):
        """The helper's [retention] in one line: each rule's own text when the helper gives one."""
        labels = {"snapshots": _("Snapshots"), "kept": _("Databases kept aside")}
        parts = []
        for key in ("snapshots", "kept"):
            rule = retention.get(key)
            if not isinstance(rule, dict):
                continue
            text = rule.get("text")
            if not text:
                limits = []
                if rule.get("keep_last"):
                    limits.append(_("the last %s", rule["keep_last"]))
                if rule.get("max_days"):
                    limits.append(_("at most %s days old", rule["max_days"]))
                text = _("keep %s", ", ".join(limits)) if limits else _("all kept")
            parts.append(f"{labels[key]}: {text}")
        return "; ".join(parts) or False

    def _compute_deployment_stakeholder_ids(self):
        partners = self._stakeholders()
        for record in self:
            record.deployment_stakeholder_ids = partners

    def _inverse_deployment_stakeholder_ids(self):
        for record in self:
            self.env["ir.config_parameter"].sudo().set_param(
                STAKEHOLDERS_PARAM, ",".join(str(i) for i in record.deployment_stakeholder_ids.ids)
            )

    def action_deployment_test_connection(self):
        health = self.env["deployment.rollback.helper"]._request("GET", "/v1/health")
        services = ", ".join(f"{k}: {v}" for k, v in (health.get("services") or {}).items())
        addon = self.env["ir.module.module"].sudo().search([("name", "=", "deployment_rollback")]).installed_version
        message = _(
            "Helper %(version)s answers for database %(db)s; services: %(services)s; free storage: %(free)s MiB.",
            version=health.get("version"),
            db=health.get("database"),
            services=services or _("not managed"),
            free=(health.get("storage_free_bytes") or 0) // 2**20,
        )
        problem = version_problem(health.get("version"), addon)
        message = f"{message} {self._version_text(problem, health.get('version'), addon)}"
        failing = self.env["deployment.rollback.helper"]._health_problems(health)
        if failing:
            message = f"{message} {failing}"
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": _("Rollback helper"),
                "message": message,
                "type": "success" if health.get("ok") and not problem else "warning",
                "sticky": bool(problem or failing),
            },
        }

    @api.model
    def _version_text(self, problem, helper, addon):
        """One sentence on the versions: why they fit, or what to do."""
        if problem is None:
            return _(
                "Helper %(helper)s works with this addon %(addon)s (they are versioned separately).",
                helper=helper,
                addon=addon,
            )
        kind, details = problem
        if kind == "series":
            return _(
                "The helper %(helper)s is made for Odoo %(helper_series)s, this addon %(addon)s for Odoo "
                "%(addon_series)s: install the helper of Odoo %(addon_series)s, or restores may not fit the "
                "database.",
                **details,
            )
        if kind == "old":
            return _(
                "The helper %(helper)s is older than this addon %(addon)s needs (%(minimum)s or later): upgrade it "
                "(pip install --upgrade odoo-rollback) and restart odoo-rollback serve.",
                **details,
            )
        return _(
            "The helper's version (%(helper)s) cannot be compared with this addon's (%(addon)s): check that "
            "odoo-rollback serve is the helper of this addon.",
            **details,
        )

    def action_deployment_capture_snapshot(self):
        if not self.env.user.has_group("deployment_rollback.group_deployment_rollback_manager"):
            raise AccessError(_("Only Deployment Rollback managers can capture snapshots."))
        return self.env["deployment.snapshot"].action_open_capture("pre_deploy")
