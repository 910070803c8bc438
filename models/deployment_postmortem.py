# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Post-mortems: every section of the runbook's root cause analysis template, reviewed before done."""

from datetime import datetime, timezone

from odoo import Command, _, api, fields, models
from odoo.exceptions import UserError, ValidationError

from .texts import minutes_text


def _naive_utc(value):
    """Odoo keeps naive UTC datetimes; the caller may hand over aware ones or Odoo strings."""
    if not value:
        return False
    moment = value
    if isinstance(value, str):
        try:
            moment = fields.Datetime.to_datetime(value)
        except ValueError:
            moment = None
    if not isinstance(moment, datetime):
        raise UserError(_("%r is not a date and time.", value))
    if moment.tzinfo:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.replace(microsecond=0)


class DeploymentPostmortem(models.Model):
    _name = "deployment.postmortem"
    _inherit = ["mail.thread", "mail.activity.mixin"]
    _description = "Deployment Post-mortem"
    _order = "date desc, id desc"

    name = fields.Char(string="Title", required=True, tracking=True)
    state = fields.Selection(
        [("draft", "Draft"), ("review", "In Review"), ("done", "Done")],
        default="draft",
        required=True,
        readonly=True,
        copy=False,
        tracking=True,
    )
    company_id = fields.Many2one("res.company", required=True, default=lambda self: self.env.company)
    currency_id = fields.Many2one(related="company_id.currency_id")
    date = fields.Date(required=True, default=fields.Date.context_today)
    incident_start = fields.Datetime(tracking=True)
    incident_end = fields.Datetime(tracking=True)
    duration_minutes = fields.Integer(string="Duration (minutes)", compute="_compute_duration_minutes", store=True)
    rollback_id = fields.Many2one("deployment.rollback", readonly=True, ondelete="set null", index=True)
    services_affected = fields.Text(help="One service a line.")
    timeline_ids = fields.One2many("deployment.postmortem.timeline", "postmortem_id", string="What Happened", copy=True)
    root_cause = fields.Text()
    users_affected = fields.Integer()
    impact_minutes = fields.Integer(
        string="Impact (minutes)",
        compute="_compute_impact_minutes",
        store=True,
        readonly=False,
        help="How long users were affected; the incident's duration unless changed.",
    )
    data_loss = fields.Boolean(help="Data written after the snapshot was lost, or the integrity check failed.")
    revenue_impact = fields.Monetary(currency_field="currency_id")
    went_well = fields.Text(string="What Went Well")
    went_wrong = fields.Text(string="What Went Wrong")
    action_ids = fields.One2many("deployment.postmortem.action", "postmortem_id", string="Action Items")
    open_action_count = fields.Integer(compute="_compute_open_action_count")
    open_actions_reason = fields.Text(
        string="Reason to Close with Open Actions",
        tracking=True,
        help="Required to mark the post-mortem done while action items are still open.",
    )
    lessons_learned = fields.Text()
    prevention = fields.Text()

    @api.model_create_multi
    def create(self, vals_list):
        # mail.thread subscribes the creator after creating, assuming a new record has no follower yet;
        # an action item's activity would subscribe its owner first, and the creator twice when they are
        # the owner. The action items created with the post-mortem get their activities afterwards.
        records = super(DeploymentPostmortem, self.with_context(deployment_postmortem_defer_activities=True)).create(
            vals_list
        )
        records = records.with_env(self.env)
        records.action_ids.filtered(lambda a: a.state == "open" and not a.activity_id)._schedule_activity()
        return records

    @api.constrains("incident_start", "incident_end")
    def _check_incident_times(self):
        for record in self:
            if record.incident_start and record.incident_end and record.incident_end < record.incident_start:
                raise ValidationError(_("The incident cannot end before it starts."))

    @api.constrains("users_affected", "impact_minutes", "revenue_impact")
    def _check_impact_not_negative(self):
        for record in self:
            if min(record.users_affected, record.impact_minutes, record.revenue_impact) < 0:
                raise ValidationError(_("Users affected, impact minutes and revenue impact cannot be negative."))

    @api.depends("incident_start", "incident_end")
    def _compute_duration_minutes(self):
        for record in self:
            if record.incident_start and record.incident_end:
                seconds = (record.incident_end - record.incident_start).total_seconds()
                record.duration_minutes = round(seconds / 60)
            else:
                record.duration_minutes = 0

    @api.depends("duration_minutes")
    def _compute_impact_minutes(self):
        for record in self:
            record.impact_minutes = record.duration_minutes

    @api.depends("action_ids.state")
    def _compute_open_action_count(self):
        for record in self:
            record.open_action_count = len(record.action_ids.filtered(lambda a: a.state == "open"))

    def _duration_text(self):
        """The incident's duration in words, for the report."""
        self.ensure_one()
        return minutes_text(self.env, self.duration_minutes) if self.incident_start and self.incident_end else ""

    # -- states -----------------------------------------------------------------------------------
    def action_submit_review(self):
        for record in self:
            if record.state != "draft":
                raise UserError(_("Only a draft post-mortem can be submitted for review."))
            if not (record.root_cause or "").strip():
                raise UserError(_("Write the root cause before submitting the post-mortem for review."))
        self.write({"state": "review"})
        return True

    def action_done(self):
        for record in self:
            if record.state != "review":
                raise UserError(_("A post-mortem is reviewed before it is done: submit it for review first."))
            open_actions = record.action_ids.filtered(lambda a: a.state == "open")
            if open_actions and not (record.open_actions_reason or "").strip():
                raise UserError(
                    _(
                        "%(count)s action items are still open (%(names)s): close them, "
                        "or write why the post-mortem is done anyway.",
                        count=len(open_actions),
                        names=", ".join(open_actions.mapped("name")),
                    )
                )
        self.write({"state": "done"})
        return True

    def action_reset_draft(self):
        self.write({"state": "draft"})
        return True

    # -- filled in from a rollback ----------------------------------------------------------------
    @api.model
    def _prefill_vals(self, data):
        """Create values from what a rollback knows; the caller adds its own link and fields.

        ``data``: {"name": str, "incident_start": datetime, "started_at": datetime, "finished_at": datetime,
        "services": [str], "data_loss": bool, "events": [{"time", "event"}], "steps": [{"name", "started_at",
        "finished_at", "result"}]}; every key may be missing; the incident starts with the rollback unless
        ``incident_start`` says otherwise. Times may be naive UTC (Odoo's) or aware datetimes.
        """
        if not isinstance(data, dict):
            raise UserError(_("A post-mortem is filled in from a dictionary, not from %s.", type(data).__name__))
        started_at = _naive_utc(data.get("started_at"))
        finished_at = _naive_utc(data.get("finished_at"))
        # The incident began before the rollback did: with the deployment, when the caller knows it.
        incident_start = _naive_utc(data.get("incident_start")) or started_at
        vals = {
            "name": _("Rollback %s", data.get("name") or _("rollback")),
            "incident_start": incident_start,
            "incident_end": finished_at,
            "services_affected": "\n".join(str(s) for s in data.get("services") or []),
            "data_loss": bool(data.get("data_loss")),
        }
        if incident_start:
            vals["date"] = incident_start.date()
        lines = []
        for event in data.get("events") or []:
            at = _naive_utc(event.get("time"))
            if at and event.get("event"):
                lines.append(Command.create({"time": at, "event": event["event"]}))
        for step in data.get("steps") or []:
            at = _naive_utc(step.get("started_at")) or _naive_utc(step.get("finished_at"))
            if not at:
                continue
            event = step.get("name") or _("step")
            if step.get("result"):
                event = f"{event}: {step['result']}"
            finished = _naive_utc(step.get("finished_at"))
            if finished and finished > at:
                event = _("%(event)s (%(seconds)s s)", event=event, seconds=int((finished - at).total_seconds()))
            lines.append(Command.create({"time": at, "event": event}))
        if lines:
            vals["timeline_ids"] = lines
        return vals
