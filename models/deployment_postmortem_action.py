# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Action items of a post-mortem; each one is a To Do activity of its owner on the post-mortem."""

from odoo import _, api, fields, models
from odoo.exceptions import UserError

TODO = "mail.mail_activity_data_todo"


class DeploymentPostmortemAction(models.Model):
    _name = "deployment.postmortem.action"
    _description = "Deployment Post-mortem Action Item"
    _order = "due_date, id"

    postmortem_id = fields.Many2one("deployment.postmortem", required=True, ondelete="cascade", index=True)
    name = fields.Char(string="Action", required=True)
    owner_id = fields.Many2one(
        "res.users", required=True, default=lambda self: self.env.user, domain=[("share", "=", False)]
    )
    due_date = fields.Date(required=True)
    state = fields.Selection(
        [("open", "Open"), ("done", "Done"), ("cancelled", "Cancelled")],
        default="open",
        required=True,
        readonly=True,
        copy=False,
    )
    activity_id = fields.Many2one("mail.activity", readonly=True, copy=False, ondelete="set null")

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        if not self.env.context.get("deployment_postmortem_defer_activities"):
            records.filtered(lambda a: a.state == "open")._schedule_activity()
        return records

    def write(self, vals):
        result = super().write(vals)
        if {"owner_id", "due_date", "name"} & set(vals):
            for record in self.filtered(lambda a: a.state == "open"):
                if record.activity_id:
                    record.activity_id.write(
                        {"user_id": record.owner_id.id, "date_deadline": record.due_date, "summary": record.name}
                    )
                else:
                    record._schedule_activity()
        return result

    def unlink(self):
        self.activity_id.unlink()
        return super().unlink()

    def _schedule_activity(self):
        for record in self:
            activity = record.postmortem_id.activity_schedule(
                TODO,
                date_deadline=record.due_date,
                summary=record.name,
                note=_("Action item of the post-mortem %s.", record.postmortem_id.name),
                user_id=record.owner_id.id,
            )
            record.activity_id = activity

    def action_mark_done(self):
        for record in self:
            if record.state != "open":
                raise UserError(_("Only open action items can be marked done."))
            record.write({"state": "done"})
            if record.activity_id:
                record.activity_id.action_feedback(feedback=_("Action item done: %s", record.name))
        return True

    def action_cancel(self):
        for record in self:
            if record.state != "open":
                raise UserError(_("Only open action items can be cancelled."))
            record.write({"state": "cancelled"})
            record.activity_id.unlink()
        return True

    def action_reopen(self):
        for record in self:
            if record.state == "open":
                continue
            record.write({"state": "open"})
            record._schedule_activity()
        return True
