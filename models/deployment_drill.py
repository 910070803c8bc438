# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Rollback drills: a restore of a snapshot into a scratch database, timed against the RTO, each quarter.

Drills run by the helper (from Odoo, or from the shell and imported from the journal) are mirrored here by
the helper's operation id; a drill done by other means can be recorded by hand.
"""

from datetime import date, timedelta

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import format_date

from .deployment_snapshot import parse_helper_time

TODO = "mail.mail_activity_data_todo"
MANAGER_GROUP = "deployment_rollback.group_deployment_rollback_manager"
REMINDER_DAYS_PARAM = "deployment_rollback.drill_reminder_days"
DEFAULT_REMINDER_DAYS = 14


def quarter_of(day):
    """(year, quarter number 1-4) of a date."""
    return day.year, (day.month - 1) // 3 + 1


def quarter_bounds(year, quarter):
    """First and last day of a quarter."""
    first = date(year, 3 * quarter - 2, 1)
    following = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return first, following - timedelta(days=1)


def quarter_label(year, quarter):
    return f"{year}-Q{quarter}"


class DeploymentDrill(models.Model):
    _name = "deployment.drill"
    _inherit = ["deployment.helper.mirror.mixin", "mail.thread", "mail.activity.mixin"]
    _description = "Deployment Rollback Drill"
    _order = "date desc, id desc"
    _protected_fields = ["helper_id", "helper_job_id", "problems"]

    name = fields.Char(compute="_compute_name", store=True)
    date = fields.Date(required=True, default=fields.Date.context_today, tracking=True)
    quarter = fields.Char(compute="_compute_quarter", store=True, index=True)
    year = fields.Integer(compute="_compute_quarter", store=True, group_operator=False)
    quarter_number = fields.Integer(compute="_compute_quarter", store=True)
    environment = fields.Selection(
        [("production", "Production"), ("staging", "Staging"), ("other", "Other")],
        required=True,
        default="production",
        help="Whose snapshot was restored: drills through the helper restore this database's snapshots.",
    )
    snapshot_id = fields.Many2one(
        "deployment.snapshot",
        ondelete="set null",
        domain=[("helper_id", "!=", False), ("state", "in", ("done", "verified"))],
        help="Empty: the helper restores its newest verified pre-deploy snapshot.",
    )
    snapshot_helper_id = fields.Char(string="Helper Snapshot ID", readonly=True)
    state = fields.Selection(
        [("planned", "Planned"), ("running", "Running"), ("done", "Done")],
        default="planned",
        required=True,
        readonly=True,
        tracking=True,
    )
    result = fields.Selection([("ok", "Passed"), ("failed", "Failed")], tracking=True)
    seconds = fields.Float(digits=(16, 3))
    rto_met = fields.Boolean(string="RTO Met", tracking=True)
    problems = fields.Text(readonly=True)
    notes = fields.Text()
    helper_job_id = fields.Char(readonly=True, copy=False)
    helper_id = fields.Char(string="Helper Operation ID", readonly=True, copy=False, index=True)

    _sql_constraints = [
        ("helper_id_unique", "unique(helper_id)", "A helper drill is recorded once."),
        ("seconds_not_negative", "CHECK(seconds >= 0)", "A drill cannot take negative time."),
    ]

    @api.depends("date")
    def _compute_quarter(self):
        for record in self:
            if record.date:
                record.year, record.quarter_number = quarter_of(record.date)
                record.quarter = quarter_label(record.year, record.quarter_number)
            else:
                record.year = record.quarter_number = 0
                record.quarter = False

    def name_get(self):
        # The stored name was written in the language of whoever created the drill (often the cron): people
        # read it in theirs, with the date as they write dates.
        return [
            (
                record.id,
                _("%(quarter)s drill of %(date)s", quarter=record.quarter, date=format_date(self.env, record.date))
                if record.date
                else record.name,
            )
            for record in self
        ]

    @api.depends("quarter", "date")
    def _compute_name(self):
        for record in self:
            if record.date:
                record.name = _("%(quarter)s drill of %(date)s", quarter=record.quarter, date=record.date)
            else:
                record.name = _("Drill")

    # -- running ----------------------------------------------------------------------------------
    def _check_manager(self):
        if not self.env.user.has_group(MANAGER_GROUP):
            raise AccessError(_("Only Deployment Rollback managers can run or record drills."))

    def action_run_now(self):
        """Start ``odoo-rollback drill`` through the helper's API; on an empty recordset, a new drill."""
        self._check_manager()
        if len(self) > 1:
            raise UserError(_("Run one drill at a time."))
        if self and self.state != "planned":
            raise UserError(_("This drill has already run; start a new one."))
        body = {}
        if self.snapshot_id:
            if not self.snapshot_id.helper_id:
                raise UserError(_("The snapshot %s is not complete yet.", self.snapshot_id.display_name))
            body["snapshot"] = self.snapshot_id.helper_id
        reply = self.env["deployment.rollback.helper"]._request("POST", "/v1/drills", body)
        drill = self or self.create({})
        drill._helper_sync().write(
            {"state": "running", "helper_job_id": reply["job"]["id"], "date": fields.Date.context_today(self)}
        )
        drill.message_post(body=_("Drill started by the helper (job %s).", reply["job"]["id"]))
        return drill._open_action()

    def action_refresh(self):
        """Follow the helper: its journal holds every drill's outcome."""
        self.env["deployment.operation"]._import_journal()
        return True

    def action_record_result(self):
        """Close a drill done without the helper (staging, by hand) with the result typed in."""
        self._check_manager()
        for record in self:
            if record.state != "planned":
                raise UserError(_("Only a planned drill can be recorded by hand."))
            if not record.result:
                raise UserError(_("Set the result of the drill before recording it."))
        self.write({"state": "done"})
        self.filtered(lambda r: r.result == "ok")._close_reminders()
        return True

    def _apply_helper_result(self, result, error=None):
        """Record the helper's drill result ({"id", "snapshot", "seconds", "rto_met", "ok", "problems"})."""
        self.ensure_one()
        if isinstance(result, dict) and "ok" in result:
            snapshot_ref = result.get("snapshot") or self.snapshot_helper_id
            vals = {
                "state": "done",
                "result": "ok" if result["ok"] else "failed",
                "seconds": float(result.get("seconds") or 0.0),
                "rto_met": bool(result.get("rto_met")),
                "problems": "\n".join(result.get("problems") or []) or False,
                "snapshot_helper_id": snapshot_ref,
            }
            if result.get("id"):
                vals["helper_id"] = result["id"]
            snapshot = self.env["deployment.snapshot"].sudo().search([("helper_id", "=", snapshot_ref)], limit=1)
            if snapshot:
                vals["snapshot_id"] = snapshot.id
        else:
            vals = {
                "state": "done",
                "result": "failed",
                "rto_met": False,
                "problems": error or _("The helper's drill job failed without a result."),
            }
        self._helper_sync().write(vals)
        # Users who only read drills may refresh one: the helper's verdict is posted on their behalf.
        thread = self.sudo()
        if vals["result"] == "ok":
            thread.message_post(body=_("Drill passed in %s seconds.", round(vals["seconds"], 1)))
            self._close_reminders()
        else:
            thread.message_post(body=_("Drill failed: %s", vals["problems"] or ""))

    @api.model
    def _import_helper_operation(self, operation):
        """Mirror a drill of the helper's journal (idempotent by its operation id, or its job)."""
        data = operation.get("data") or {}
        drills = self.sudo()
        record = drills.search([("helper_id", "=", operation["id"])], limit=1)
        if not record and data.get("job_id"):
            record = drills.search([("helper_job_id", "=", data["job_id"])], limit=1)
        started_at = parse_helper_time(operation.get("started_at"))
        if not record:
            record = drills._helper_sync().create(
                {
                    "helper_id": operation["id"],
                    "helper_job_id": data.get("job_id"),
                    "date": started_at.date() if started_at else fields.Date.context_today(self),
                    "state": "running",
                    "snapshot_helper_id": data.get("snapshot"),
                }
            )
        elif not record.helper_id:
            record._helper_sync().write({"helper_id": operation["id"]})
        if record.state == "running" and operation["state"] in ("done", "failed"):
            record._apply_helper_result(data.get("result"), operation.get("error") or data.get("error"))
        return record

    # -- the quarters -----------------------------------------------------------------------------
    @api.model
    def _quarter_overview(self, years, today=None):
        """One row per quarter of *years*: done (a drill passed), failed (drills, none passed), missing,
        or upcoming (the quarter has not started)."""
        today = today or fields.Date.context_today(self)
        finished = self.search([("year", "in", list(years)), ("state", "=", "done")])
        rows = []
        for year in sorted(years):
            for number in range(1, 5):
                drills = finished.filtered(lambda d, y=year, q=number: d.year == y and d.quarter_number == q)
                if drills.filtered(lambda d: d.result == "ok"):
                    state = "done"
                elif drills:
                    state = "failed"
                elif quarter_bounds(year, number)[0] > today:
                    state = "upcoming"
                else:
                    state = "missing"
                rows.append(
                    {
                        "year": year,
                        "quarter_number": number,
                        "quarter": quarter_label(year, number),
                        "state": state,
                        "drill_ids": drills.ids,
                    }
                )
        return rows

    # -- the reminder -----------------------------------------------------------------------------
    @api.model
    def _reminders(self, year, number):
        """The open reminders of a quarter, found by what the cron sets rather than by their translated
        summary: an automated To Do on a drill of the quarter, due on its last day."""
        first, last = quarter_bounds(year, number)
        drills = self.sudo().search([("date", ">=", first), ("date", "<=", last)])
        return (
            self.env["mail.activity"]
            .sudo()
            .search(
                [
                    ("res_model", "=", self._name),
                    ("res_id", "in", drills.ids),
                    ("activity_type_id", "=", self.env.ref(TODO).id),
                    ("automated", "=", True),
                    ("date_deadline", "=", last),
                ]
            )
        )

    def _close_reminders(self):
        """A passed drill answers its quarter's reminders, wherever the cron put them."""
        for record in self:
            activities = self._reminders(record.year, record.quarter_number)
            if activities:
                activities.action_feedback(feedback=_("%s passed.", record.name))

    @api.model
    def _reminder_days(self):
        raw = self.env["ir.config_parameter"].sudo().get_param(REMINDER_DAYS_PARAM, DEFAULT_REMINDER_DAYS)
        try:
            return int(raw)
        except (TypeError, ValueError):
            return DEFAULT_REMINDER_DAYS

    @api.model
    def _cron_drill_reminder(self, today=None):
        """Near the end of a quarter without a passed drill, a To Do for every manager (once)."""
        today = today or fields.Date.context_today(self)
        year, number = quarter_of(today)
        first, last = quarter_bounds(year, number)
        days = self._reminder_days()
        if (last - today).days > days:
            return self.browse()
        drills = self.sudo()
        in_quarter = [("date", ">=", first), ("date", "<=", last)]
        if drills.search_count([*in_quarter, ("state", "=", "done"), ("result", "=", "ok")]):
            return self.browse()
        managers = self.env.ref(MANAGER_GROUP).users.filtered(lambda u: u.active and not u.share)
        waiting = managers - self._reminders(year, number).mapped("user_id")
        if not waiting:
            return self.browse()
        drill = drills.search([*in_quarter, ("state", "=", "planned")], order="date, id", limit=1)
        if not drill:
            drill = drills.create({"date": today})
        for manager in waiting:
            drill.activity_schedule(
                TODO,
                date_deadline=last,
                summary=_("Run the rollback drill of %s", quarter_label(year, number)),
                note=_("No rollback drill has passed this quarter; it ends on %s.", last),
                user_id=manager.id,
            )
        return drill
