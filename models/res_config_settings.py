# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import _, api, fields, models
from odoo.exceptions import AccessError, ValidationError

from .helper_client import ADDRESS_PARAM, DEFAULT_ADDRESS

TRACKED_PARAM = "deployment_rollback.tracked_models"
DEFAULT_TRACKED = "account.move,res.partner,einvoice.document"
STAKEHOLDERS_PARAM = "deployment_rollback.stakeholder_ids"


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    deployment_helper_address = fields.Char(
        string="Helper Address",
        config_parameter=ADDRESS_PARAM,
        default=DEFAULT_ADDRESS,
        help="unix:/path/to/api.sock, or http://127.0.0.1:PORT for docker set-ups.",
    )
    deployment_tracked_models = fields.Char(
        string="Tracked Models",
        config_parameter=TRACKED_PARAM,
        default=DEFAULT_TRACKED,
        help="Comma-separated models whose record counts are compared; models that are not installed are skipped.",
    )
    deployment_rto_target_minutes = fields.Integer(
        string="RTO Target (minutes)",
        config_parameter="deployment_rollback.rto_target_minutes",
        default=15,
    )
    deployment_rto_max_minutes = fields.Integer(
        string="RTO Maximum (minutes)",
        config_parameter="deployment_rollback.rto_max_minutes",
        default=30,
    )
    deployment_retention = fields.Integer(
        string="Snapshots Kept per Kind",
        config_parameter="deployment_rollback.retention",
        default=5,
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

    @api.model
    def _tracked_models(self):
        """The tracked models that are installed here, in the configured order."""
        value = self.env["ir.config_parameter"].sudo().get_param(TRACKED_PARAM, DEFAULT_TRACKED) or ""
        names = [name.strip() for name in value.split(",") if name.strip()]
        return [name for name in names if name in self.env.registry.models]

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
        message = _(
            "Helper %(version)s answers for database %(db)s; services: %(services)s; free storage: %(free)s MiB.",
            version=health.get("version"),
            db=health.get("database"),
            services=services or _("not managed"),
            free=(health.get("storage_free_bytes") or 0) // 2**20,
        )
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "title": _("Rollback helper"),
                "message": message,
                "type": "success" if health.get("ok") else "warning",
                "sticky": False,
            },
        }

    def action_deployment_capture_snapshot(self):
        if not self.env.user.has_group("deployment_rollback.group_deployment_rollback_manager"):
            raise AccessError(_("Only Deployment Rollback managers can capture snapshots."))
        return self.env["deployment.snapshot"].action_capture("pre_deploy", _("Captured from Settings"))
