# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The rollback checklist: triggers and decision, snapshot and its loss preview, typed confirmation."""

import uuid

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

from ..models.deployment_rollback import DECISIONS, MANAGER_GROUP
from ..models.deployment_rollback_trigger import CATEGORIES
from ..models.helper_client import PREVIEW_TIMEOUT
from ..models.rollback_catalogue import DECISION_ROLLBACK, IMMEDIATE, TEAM, TRIGGERS, required_decision

STEPS = [("triggers", "Triggers and decision"), ("snapshot", "Snapshot"), ("confirm", "Confirmation")]


class DeploymentRollbackWizard(models.TransientModel):
    _name = "deployment.rollback.wizard"
    _description = "Rollback Checklist"

    step = fields.Selection(STEPS, default="triggers", required=True, readonly=True)
    line_ids = fields.One2many(
        "deployment.rollback.wizard.trigger", "wizard_id", string="Triggers", default=lambda self: self._default_lines()
    )
    immediate_held = fields.Boolean(compute="_compute_held")
    team_held = fields.Boolean(compute="_compute_held")
    decision = fields.Selection(DECISIONS, compute="_compute_decision", store=True, readonly=False)
    decided_by_id = fields.Many2one("res.users", default=lambda self: self.env.user)
    participant_ids = fields.Many2many(
        "res.users", "deployment_rollback_wizard_participant_rel", "wizard_id", "user_id", string="Taken Part"
    )
    reason = fields.Text()
    impact = fields.Text(help="Who and what is affected; sent with the notifications.")
    next_steps = fields.Text()
    snapshot_id = fields.Many2one(
        "deployment.snapshot",
        domain=[("state", "=", "verified")],
        default=lambda self: self.env["deployment.snapshot"]._newest_verified_pre_deploy(),
    )
    snapshot_age = fields.Char(related="snapshot_id.age_display")
    snapshot_taken_at = fields.Datetime(related="snapshot_id.taken_at")
    snapshot_verified_at = fields.Datetime(related="snapshot_id.verified_at")
    snapshot_code_revision = fields.Char(related="snapshot_id.code_revision")
    snapshot_count_ids = fields.One2many(related="snapshot_id.count_ids")
    preview_line_ids = fields.One2many("deployment.rollback.wizard.preview", "wizard_id", readonly=True)
    preview_total = fields.Integer(readonly=True)
    database_name = fields.Char(compute="_compute_database_name")
    confirm_database = fields.Char(string="Type the Database Name")
    is_manager = fields.Boolean(compute="_compute_is_manager")

    @api.model
    def _default_lines(self):
        measured = self.env["deployment.rollback.measure"]._measure_all()
        lines = []
        for sequence, trigger in enumerate(TRIGGERS):
            measure = measured.get(trigger.code, {})
            lines.append(
                (
                    0,
                    0,
                    {
                        "sequence": sequence,
                        "code": trigger.code,
                        "name": _(trigger.name),
                        "category": trigger.category,
                        "holds": bool(measure.get("holds")),
                        "measured_value": measure.get("value"),
                        "source": measure.get("source"),
                    },
                )
            )
        return lines

    @api.depends("line_ids.holds", "line_ids.category")
    def _compute_held(self):
        for wizard in self:
            held = wizard.line_ids.filtered("holds")
            wizard.immediate_held = any(line.category == IMMEDIATE for line in held)
            wizard.team_held = any(line.category == TEAM for line in held)

    @api.depends("line_ids.holds")
    def _compute_decision(self):
        for wizard in self:
            imposed = required_decision(wizard.line_ids.filtered("holds").mapped("code"))
            wizard.decision = imposed or wizard.decision

    def _compute_database_name(self):
        for wizard in self:
            wizard.database_name = self.env.cr.dbname

    def _compute_is_manager(self):
        for wizard in self:
            wizard.is_manager = self.env.user.has_group(MANAGER_GROUP)

    # -- checks --------------------------------------------------------------------------------------
    def _check_decision(self):
        """The runbook's rule: an immediate trigger decides; otherwise the team decides, on the record."""
        self.ensure_one()
        if self.immediate_held:
            if self.decision != DECISION_ROLLBACK:
                raise UserError(_("An immediate trigger holds: the decision is to roll back."))
            if not self.decided_by_id:
                raise UserError(_("Say who decided the rollback."))
            return
        missing = []
        if not self.decision:
            missing.append(_("Decision: roll back, fix forward or keep monitoring"))
        if not self.decided_by_id:
            missing.append(_("Decided by: who took the decision"))
        if not self.participant_ids:
            missing.append(_("Taken Part: who took part in the decision"))
        if not self.team_held and not (self.reason or "").strip():
            missing.append(_("Reason: why roll back when no trigger holds"))
        if missing:
            raise UserError(
                _(
                    "No immediate trigger holds, so the team decides and the checklist records it. Still to fill "
                    "in:\n%s",
                    "\n".join(f"- {item}" for item in missing),
                )
            )

    def _check_manager(self):
        if not self.env.user.has_group(MANAGER_GROUP):
            raise AccessError(_("Only Deployment Rollback managers can confirm and start a rollback."))

    def _check_snapshot(self):
        self.ensure_one()
        snapshot = self.snapshot_id
        if not snapshot:
            raise UserError(
                _("There is no verified snapshot to roll back to: capture a pre-deploy snapshot and verify it first.")
            )
        if snapshot.state != "verified" or not snapshot.helper_id:
            raise UserError(
                _("Snapshot %s is not verified: only a verified snapshot can be restored.", snapshot.display_name)
            )
        if snapshot.database and snapshot.database != self.env.cr.dbname:
            raise UserError(
                _(
                    "Snapshot %(snapshot)s is of database %(other)s, not of %(this)s.",
                    snapshot=snapshot.display_name,
                    other=snapshot.database,
                    this=self.env.cr.dbname,
                )
            )

    def _reason_text(self):
        held = self.line_ids.filtered("holds")
        text = (self.reason or "").strip()
        if held:
            listed = "\n".join(
                f"- {line.name}" + (f" ({line.measured_value})" if line.measured_value else "") for line in held
            )
            text = f"{text}\n\n{_('Triggers:')}\n{listed}".strip()
        return text

    # -- navigation ----------------------------------------------------------------------------------
    def _reopen(self):
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
            "name": _("Rollback Checklist"),
        }

    def action_next(self):
        self.ensure_one()
        if self.step == "triggers":
            self._check_decision()
            if self.decision != DECISION_ROLLBACK:
                raise UserError(_("The decision is not to roll back: record it instead."))
            self._check_snapshot()
            self._load_preview()
            self.step = "snapshot"
        elif self.step == "snapshot":
            self._check_snapshot()
            self._check_manager()
            self.step = "confirm"
        return self._reopen()

    def action_back(self):
        self.ensure_one()
        previous = {"snapshot": "triggers", "confirm": "snapshot"}
        self.step = previous.get(self.step, "triggers")
        return self._reopen()

    def action_load_preview(self):
        self.ensure_one()
        self._check_snapshot()
        self._load_preview()
        return self._reopen()

    def _load_preview(self):
        """The helper's count of rows created or changed since the snapshot, per table."""
        preview = self.env["deployment.rollback.helper"]._request(
            "GET", f"/v1/snapshots/{self.snapshot_id.helper_id}/preview", timeout=PREVIEW_TIMEOUT
        )
        models_by_table = self.env["deployment.snapshot.count"]._models_by_table()
        lost = preview.get("lost_rows") or {}
        self.preview_line_ids = [(5, 0, 0)] + [
            (0, 0, {"table_name": table, "model": models_by_table.get(table), "rows": rows or 0})
            for table, rows in sorted(lost.items())
        ]
        self.preview_total = preview.get("total") or 0

    # -- outcomes ------------------------------------------------------------------------------------
    def _rollback_vals(self, state, rto=(0, 0)):
        """The rollback record's values, through its payload: the one shape the helper journals."""
        payload = {
            "uid": uuid.uuid4().hex,
            "name": self.env["ir.sequence"].next_by_code("deployment.rollback"),
            "reason": self._reason_text() or _("(no reason given)"),
            "impact": self.impact,
            "next_steps": self.next_steps,
            "decision": self.decision,
            "decided_by": self.decided_by_id.login,
            "participants": self.participant_ids.mapped("login"),
            "requested_by": self.env.user.login,
            "snapshot": self.snapshot_id.helper_id,
            "started_at": fields.Datetime.to_string(fields.Datetime.now()) if state == "running" else False,
            "rto_target_minutes": rto[0],
            "rto_max_minutes": rto[1],
            "triggers": [
                {"code": line.code, "holds": line.holds, "measured_value": line.measured_value, "source": line.source}
                for line in self.line_ids.sorted("sequence")
            ],
        }
        return self.env["deployment.rollback"]._vals_from_payload(payload, state=state)

    def action_record_decision(self):
        """Record a decision not to roll back (fix forward, keep monitoring)."""
        self.ensure_one()
        self._check_decision()
        if self.decision == DECISION_ROLLBACK:
            raise UserError(_("The decision is to roll back: go on to the snapshot."))
        rollback = self.env["deployment.rollback"]._helper_sync().create(self._rollback_vals("cancelled"))
        rollback.message_post(body=_("Decision recorded: no rollback."))
        return rollback._open_action()

    def action_start(self):
        """Ask the helper for the restore; the record is created only once the helper accepted it."""
        self.ensure_one()
        self._check_manager()
        if self.step != "confirm":
            raise UserError(_("Go through the checklist's steps before starting the rollback."))
        self._check_decision()
        self._check_snapshot()
        if (self.confirm_database or "").strip() != self.env.cr.dbname:
            raise UserError(
                _("The typed name does not match the database %s: nothing was started.", self.env.cr.dbname)
            )
        rollback_model = self.env["deployment.rollback"]
        rollback_model._check_none_running()
        # The helper measures the restore against its own [rto]: the record shows the same numbers.
        vals = self._rollback_vals("running", self.env["deployment.rollback.helper"]._rto())
        # The record is needed to render the payload and the texts; if the helper refuses, the savepoint
        # takes it back and nothing is left.
        with self.env.cr.savepoint():
            rollback = rollback_model._helper_sync().create(vals)
            subject, body = rollback._helper_texts()
            reply = self.env["deployment.rollback.helper"]._request(
                "POST",
                "/v1/restores",
                {
                    "snapshot": self.snapshot_id.helper_id,
                    "confirm_database": self.env.cr.dbname,
                    "rollback": rollback._helper_payload(),
                    "notify": {
                        "recipients": [p.email for p in rollback_model._stakeholders() if p.email],
                        "subject": subject,
                        "body": body,
                        "escalation": rollback._escalation_payload(),
                    },
                },
            )
            rollback._helper_sync().write(
                {"helper_job_id": reply["job"]["id"], "helper_operation_id": reply["job"].get("operation_id")}
            )
        # Sent now, while Odoo still runs: the restore replaces this database, and its mail queue with it.
        rollback._send_template("deployment_rollback.mail_template_rollback_notice", rollback._stakeholders())
        rollback._escalate()
        return rollback._open_action()


class DeploymentRollbackWizardTrigger(models.TransientModel):
    _name = "deployment.rollback.wizard.trigger"
    _description = "Rollback Checklist Trigger"
    _order = "sequence, id"

    wizard_id = fields.Many2one("deployment.rollback.wizard", ondelete="cascade")
    sequence = fields.Integer()
    code = fields.Char(required=True)
    name = fields.Char(string="Trigger", required=True)
    category = fields.Selection(CATEGORIES, required=True)
    holds = fields.Boolean()
    measured_value = fields.Char(string="Measured")
    source = fields.Char()


class DeploymentRollbackWizardPreview(models.TransientModel):
    _name = "deployment.rollback.wizard.preview"
    _inherit = ["deployment.model.label.mixin"]
    _description = "Rollback Checklist Loss Preview"
    _order = "table_name"

    wizard_id = fields.Many2one("deployment.rollback.wizard", ondelete="cascade")
    table_name = fields.Char(string="Table")
    model = fields.Char()
    rows = fields.Integer(string="Rows Created or Changed Since")
