# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A rollback: why it was decided, what the helper did, how long it took, and what was checked after.

The record is written in the live database, which the restore replaces by the snapshot's copy. The
wizard therefore sends everything the record holds to the helper with the restore request; the helper
keeps it in its journal, and the journal import re-creates the record in the restored database
(``_sync_from_operation``), where the validation, the completion notice and the follow-up run.
"""

import logging
from datetime import timedelta

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import html2plaintext

from .deployment_snapshot import parse_helper_time
from .rollback_catalogue import POST_ROLLBACK_TASKS, TRIGGERS_BY_CODE
from .texts import minutes_text

_logger = logging.getLogger(__name__)

DECISIONS = [
    ("rollback", "Roll back"),
    ("fix_forward", "Fix forward"),
    ("monitor", "Keep monitoring"),
]
STATES = [
    ("draft", "Draft"),
    ("running", "Running"),
    ("done", "Done"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
]
# The journal's operation states, as rollback states.
OPERATION_STATES = {"running": "running", "done": "done", "failed": "failed", "undone": "failed"}
# Journal steps that are not part of the procedure shown to people.
HIDDEN_STEPS = {"notify"}
# The rollback record as the helper journals it ("rollback" of POST /v1/restores) and gives it back in
# its journal: one shape, both directions (``_helper_payload`` and ``_vals_from_payload``), and the
# checklist fills it too. (payload key, record field, how the value travels)
PAYLOAD_FIELDS = (
    ("uid", "rollback_uid", "text"),
    ("name", "name", "text"),
    ("reason", "reason", "text"),
    ("impact", "impact", "text"),
    ("next_steps", "next_steps", "text"),
    ("decision", "decision", "text"),
    ("decided_by", "decided_by_id", "login"),
    ("participants", "participant_ids", "logins"),
    ("requested_by", "requested_by_id", "login"),
    ("snapshot", "snapshot_helper_id", "text"),
    ("started_at", "started_at", "datetime"),
    ("rto_target_minutes", "rto_target_minutes", "minutes"),
    ("rto_max_minutes", "rto_max_minutes", "minutes"),
    ("triggers", "trigger_ids", "triggers"),
)
TRIGGER_PAYLOAD_FIELDS = ("code", "holds", "measured_value", "source")
PLACEHOLDERS = "deployment_rollback_placeholders"
PROGRESS_PARAM = "deployment_rollback.progress_minutes"
MANAGER_GROUP = "deployment_rollback.group_deployment_rollback_manager"
SEQUENCE_CODE = "deployment.rollback"
# The record of the decision: once the rollback leaves draft, nobody changes these (not the helper's path,
# not sudo); a correction is a message in the chatter, where it is dated and signed.
EVIDENCE_FIELDS = (
    "reason",
    "decision",
    "decided_by_id",
    "participant_ids",
    "requested_by_id",
    "trigger_ids",
    "snapshot_id",
    "snapshot_helper_id",
    "rto_target_minutes",
    "rto_max_minutes",
)


class DeploymentRollback(models.Model):
    _name = "deployment.rollback"
    _inherit = ["deployment.helper.mirror.mixin", "mail.thread", "mail.activity.mixin"]
    _description = "Deployment Rollback"
    _order = "id desc"
    _protected_fields = [
        "name",
        "rollback_uid",
        "state",
        "started_at",
        "finished_at",
        "helper_job_id",
        "helper_operation_id",
        "step_ids",
        "integrity_ids",
        "escalation_level_id",
        "last_progress_at",
        "kept_as",
        "lost_rows_total",
        "error",
        "postmortem_id",
    ]

    name = fields.Char(required=True, readonly=True, copy=False, default=lambda self: _("New"))
    rollback_uid = fields.Char(string="Rollback UID", readonly=True, copy=False, index=True)
    database = fields.Char(readonly=True)
    # Editable in draft only: afterwards it is evidence (see write()).
    reason = fields.Text(required=True, tracking=True, readonly=True, states={"draft": [("readonly", False)]})
    impact = fields.Text(help="Who and what is affected; sent with the notifications.")
    root_cause = fields.Text(help="When known; sent with the completion notice.")
    next_steps = fields.Text(help="Sent with the progress updates and the completion notice.")
    trigger_ids = fields.One2many("deployment.rollback.trigger", "rollback_id", string="Triggers", readonly=True)
    held_trigger_count = fields.Integer(compute="_compute_held_trigger_count")
    decision = fields.Selection(DECISIONS, required=True, readonly=True, tracking=True)
    decided_by_id = fields.Many2one("res.users", readonly=True, tracking=True)
    participant_ids = fields.Many2many(
        "res.users",
        "deployment_rollback_participant_rel",
        "rollback_id",
        "user_id",
        string="Taken Part",
        readonly=True,
    )
    requested_by_id = fields.Many2one("res.users", readonly=True, tracking=True)
    snapshot_id = fields.Many2one("deployment.snapshot", readonly=True, ondelete="set null", tracking=True)
    snapshot_helper_id = fields.Char(string="Snapshot ID", readonly=True, tracking=True)
    state = fields.Selection(STATES, default="draft", required=True, readonly=True, tracking=True)
    started_at = fields.Datetime(readonly=True)
    finished_at = fields.Datetime(readonly=True)
    helper_job_id = fields.Char(readonly=True, copy=False)
    helper_operation_id = fields.Char(readonly=True, copy=False, index=True)
    step_ids = fields.One2many("deployment.rollback.step", "rollback_id", string="Steps", readonly=True)
    check_ids = fields.One2many("deployment.rollback.check", "rollback_id", string="Critical Checks")
    integrity_ids = fields.One2many(
        "deployment.rollback.integrity", "rollback_id", string="Data Integrity", readonly=True
    )
    integrity_ok = fields.Boolean(compute="_compute_integrity_ok")
    rto_target_minutes = fields.Integer(string="RTO Target (minutes)", readonly=True, tracking=True)
    rto_max_minutes = fields.Integer(string="RTO Maximum (minutes)", readonly=True, tracking=True)
    elapsed_minutes = fields.Float(compute="_compute_timing", digits=(16, 1))
    rto_status = fields.Selection(
        [("within", "Within target"), ("over_target", "Over target"), ("over_max", "Over maximum")],
        string="RTO",
        compute="_compute_timing",
    )
    eta = fields.Datetime(string="ETA", compute="_compute_timing")
    escalation_level_id = fields.Many2one("deployment.escalation.level", readonly=True, tracking=True)
    last_progress_at = fields.Datetime(readonly=True)
    kept_as = fields.Char(string="Replaced Database Kept As", readonly=True)
    lost_rows_total = fields.Integer(string="Rows Not in the Snapshot", readonly=True)
    error = fields.Text(readonly=True)
    postmortem_id = fields.Many2one("deployment.postmortem", string="Post-mortem", readonly=True, copy=False)
    # What the notifications say. With the placeholders context they hold the helper's placeholders
    # instead, so that the helper can send the same texts while Odoo is stopped.
    progress_status = fields.Char(compute="_compute_progress_texts")
    progress_step = fields.Char(compute="_compute_progress_texts")
    progress_elapsed = fields.Char(compute="_compute_progress_texts")
    progress_eta = fields.Char(compute="_compute_progress_texts")
    progress_issues = fields.Text(compute="_compute_progress_texts")

    _sql_constraints = [
        # The journal import finds a rollback by it: two imports at once must not make two records.
        ("rollback_uid_unique", "unique(rollback_uid)", "A rollback is recorded once."),
    ]

    @api.depends("trigger_ids.holds")
    def _compute_held_trigger_count(self):
        for record in self:
            record.held_trigger_count = len(record.trigger_ids.filtered("holds"))

    @api.depends("integrity_ids.match")
    def _compute_integrity_ok(self):
        for record in self:
            record.integrity_ok = bool(record.integrity_ids) and all(record.integrity_ids.mapped("match"))

    @api.depends("state", "started_at", "finished_at", "rto_target_minutes", "rto_max_minutes")
    @api.depends_context("deployment_rollback_now")
    def _compute_timing(self):
        for record in self:
            record.elapsed_minutes = record._elapsed_minutes()
            if not record.rto_target_minutes:
                # No RTO known (the helper could not say it): nothing to measure against.
                record.eta = False
                record.rto_status = False
                continue
            # An ETA only means something while the rollback runs.
            running = record.state == "running" and record.started_at
            record.eta = running and record.started_at + timedelta(minutes=record.rto_target_minutes)
            if record.elapsed_minutes > record.rto_max_minutes:
                record.rto_status = "over_max"
            elif record.elapsed_minutes > record.rto_target_minutes:
                record.rto_status = "over_target"
            else:
                record.rto_status = "within"

    @api.depends("state", "step_ids.result", "started_at", "finished_at")
    @api.depends_context(PLACEHOLDERS, "deployment_rollback_now")
    def _compute_progress_texts(self):
        states = dict(self._fields["state"]._description_selection(self.env))
        placeholders = self.env.context.get(PLACEHOLDERS)
        for record in self:
            if placeholders:
                record.progress_status = "$status"
                record.progress_step = "$step"
                record.progress_elapsed = _("$elapsed_minutes minutes")
                record.progress_eta = _("$eta_minutes minutes")
                record.progress_issues = "$issues"
                continue
            steps = record.step_ids.filtered(lambda s: s.name not in HIDDEN_STEPS)
            current = steps.filtered(lambda s: s.result == "running")[-1:] or steps[-1:]
            failed = steps.filtered(lambda s: s.result == "failed")
            remaining = max(0, record.rto_target_minutes - record._elapsed_minutes())
            record.progress_status = states.get(record.state)
            record.progress_step = current.label or _("preparing")
            record.progress_elapsed = minutes_text(self.env, record._elapsed_minutes())
            record.progress_eta = minutes_text(self.env, remaining)
            failed_word = _("failed")
            issues = "\n".join(f"{step.label}: {step.message or failed_word}" for step in failed)
            record.progress_issues = issues or _("none")

    # -- CRUD ----------------------------------------------------------------------------------------
    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("name", _("New")) == _("New"):
                vals["name"] = self.env["ir.sequence"].next_by_code(SEQUENCE_CODE) or _("New")
        records = super().create(vals_list)
        records._move_sequence_past()
        return records

    def _move_sequence_past(self):
        """A record re-created from the journal keeps its number (RB/2026/0001) in a database whose
        sequence was restored from before it: move the sequence past it, or the next rollback repeats it."""
        sequence = self.env["ir.sequence"].sudo().search([("code", "=", SEQUENCE_CODE)], limit=1)
        if not sequence or sequence.use_date_range:
            return
        prefix, suffix = sequence._get_prefix_suffix()
        numbers = [
            int(name[len(prefix) : len(name) - len(suffix)])
            for name in self.mapped("name")
            if name
            and name.startswith(prefix)
            and name.endswith(suffix)
            and name[len(prefix) : len(name) - len(suffix)].isdigit()
        ]
        if numbers and max(numbers) >= sequence.number_next_actual:
            sequence.write({"number_next": max(numbers) + 1})

    def write(self, vals):
        touched = sorted(set(vals) & set(EVIDENCE_FIELDS))
        if touched:
            decided = self.filtered(lambda r: r.state != "draft")
            if decided:
                labels = ", ".join(self._fields[name].get_description(self.env)["string"] for name in touched)
                raise UserError(
                    _(
                        "%(name)s is no longer a draft: its decision record (%(fields)s) cannot be changed. "
                        "Post a correction in its chatter instead.",
                        name=", ".join(decided.mapped("name")),
                        fields=labels,
                    )
                )
        # Mail tracking leaves out many2many fields in Odoo 16: who took part is tracked here.
        before = {record: record.participant_ids for record in self} if "participant_ids" in vals else {}
        result = super().write(vals)
        for record, old in before.items():
            if record.participant_ids != old:
                record.message_post(
                    body=_(
                        "Taken part: %(old)s → %(new)s",
                        old=", ".join(old.mapped("name")) or "-",
                        new=", ".join(record.participant_ids.mapped("name")) or "-",
                    )
                )
        return result

    # -- helpers -------------------------------------------------------------------------------------
    def _now(self):
        """The current time; tests and the cron pass theirs through the context."""
        return self.env.context.get("deployment_rollback_now") or fields.Datetime.now()

    def _elapsed_minutes(self):
        self.ensure_one()
        if not self.started_at:
            return 0.0
        end = self.finished_at or self._now()
        return max(0.0, (end - self.started_at).total_seconds() / 60)

    @api.model
    def _check_none_running(self):
        running = self.sudo().search([("state", "=", "running")], limit=1)
        if running:
            raise UserError(
                _(
                    "Rollback %(name)s is still running (started %(start)s): wait for it to end before "
                    "starting another.",
                    name=running.name,
                    start=running.started_at,
                )
            )

    @api.model
    def _stakeholders(self):
        return self.env["res.config.settings"]._stakeholders()

    # -- communication -------------------------------------------------------------------------------
    def _send_template(self, xmlid, partners):
        """Post the template's text on the record and e-mail it to *partners*."""
        self.ensure_one()
        template = self.env.ref(xmlid)
        subject = template._render_field("subject", self.ids)[self.id]
        body = template._render_field("body_html", self.ids, compute_lang=True)[self.id]
        self.message_post(
            subject=subject,
            body=body,
            partner_ids=partners.ids,
            subtype_xmlid="mail.mt_comment",
            email_layout_xmlid="mail.mail_notification_light",
        )

    def _helper_texts(self):
        """The progress template's subject and plain-text body with the helper's placeholders."""
        self.ensure_one()
        # The template renders the record in its own environment: the context switches the texts.
        template = self.env.ref("deployment_rollback.mail_template_rollback_progress").with_context(
            **{PLACEHOLDERS: True}
        )
        subject = template._render_field("subject", self.ids)[self.id]
        body = template._render_field("body_html", self.ids)[self.id]
        return subject, html2plaintext(body)

    def _escalation_payload(self):
        return [
            {"minutes": level.minutes, "role": level.role, "name": partner.name, "email": partner.email}
            for level in self.env["deployment.escalation.level"].sudo().search([])
            for partner in level.partner_ids
            if partner.email
        ]

    def _escalate(self):
        """Call every escalation level whose time has come and that was not called yet."""
        levels = self.env["deployment.escalation.level"].sudo()
        for record in self:
            reached = levels._reached(record._elapsed_minutes())
            current = record.escalation_level_id
            new = reached.filtered(lambda level, current=current: not current or level.minutes > current.minutes)
            for level in new:
                record._helper_sync().escalation_level_id = level
                record._send_template("deployment_rollback.mail_template_rollback_escalation", level.partner_ids)

    def _send_progress_if_due(self):
        minutes = float(self.env["ir.config_parameter"].sudo().get_param(PROGRESS_PARAM, "15") or 15)
        for record in self:
            last = record.last_progress_at or record.started_at
            if last and (record._now() - last) >= timedelta(minutes=minutes):
                record._send_template(
                    "deployment_rollback.mail_template_rollback_progress",
                    record._stakeholders() | record.escalation_level_id._reached_partners(),
                )
                record._helper_sync().last_progress_at = record._now()

    @api.model
    def _cron_progress(self):
        """Every minute: follow what waits for the helper, send the progress updates and escalate."""
        waiting = (
            self.sudo().search_count([("state", "=", "running")])
            or self.env["deployment.snapshot"].sudo().search_count([("state", "=", "capturing")])
            or self.env["deployment.drill"].sudo().search_count([("state", "=", "running")])
        )
        if waiting and self.env["deployment.rollback.helper"]._configured():
            try:
                self.env["deployment.operation"]._import_journal()
            except UserError as exc:
                # The helper may be busy restarting Odoo's services: the next run catches up.
                _logger.info("helper's journal not imported (%s)", exc)
        running = self.sudo().search([("state", "=", "running")])
        running._escalate()
        running._send_progress_if_due()

    # -- following the helper ------------------------------------------------------------------------
    def action_refresh(self):
        """Follow the helper: its journal holds every job's steps and outcome."""
        self.env["deployment.operation"]._import_journal()
        return True

    def _apply_helper_state(self, state, events, operation_id=None, result=None, error=None, finished_at=None):
        self.ensure_one()
        sync = self._helper_sync()
        sync._apply_steps(events)
        vals = {}
        if operation_id and not self.helper_operation_id:
            vals["helper_operation_id"] = operation_id
        if isinstance(result, dict):
            vals["kept_as"] = result.get("kept_as") or self.kept_as
            vals["lost_rows_total"] = result.get("lost_rows_total") or 0
        finished = state in ("done", "failed") and self.state == "running"
        if finished:
            vals.update(state=state, finished_at=finished_at or fields.Datetime.now(), error=error or False)
        if vals:
            sync.write(vals)
        if finished:
            self._on_finished()

    def _apply_steps(self, events):
        """Upsert the step lines from journal events ({step, status, at, message})."""
        self.ensure_one()
        lines = {line.name: line for line in self.step_ids}
        for event in events:
            name = event.get("step")
            if not name or name in HIDDEN_STEPS:
                continue
            at = parse_helper_time(event.get("at"))
            line = lines.get(name)
            if not line:
                line = lines[name] = self.step_ids.create({"rollback_id": self.id, "name": name, "started_at": at})
            status = event.get("status")
            if status == "done":
                line.write({"finished_at": at, "result": "ok"})
            elif status == "skipped":  # journaled once: it neither starts nor ends
                line.write({"finished_at": at, "result": "skipped", "message": (event.get("message") or "")[:250]})
            elif status == "failed":
                line.write({"finished_at": at, "result": "failed", "message": (event.get("message") or "")[:250]})

    @api.model
    def _sync_from_operation(self, operation, events):
        """Create or update the rollback of a journal restore operation that carries one."""
        data = operation.get("data") or {}
        payload = data.get("rollback")
        if isinstance(payload, dict) and payload.get("uid"):
            record = self.sudo().search([("rollback_uid", "=", payload["uid"])], limit=1)
            if not record:
                record = self._helper_sync().create(self._vals_from_payload(payload, operation))
                # Either the restore replaced the database this record was written in, or the restore was
                # started outside the checklist (a deployment that rolled itself back).
                record.message_post(body=_("Recorded from the helper's journal."))
        elif data.get("job_id"):
            # A restore job that failed before journaling its request: the record waits for its job.
            record = self.sudo().search([("helper_job_id", "=", data["job_id"])], limit=1)
        else:
            record = self.browse()
        if not record:
            return record
        result = data.get("result")
        error = result.get("error") if isinstance(result, dict) else None
        record._apply_helper_state(
            OPERATION_STATES.get(operation.get("state"), "running"),
            events,
            operation_id=operation.get("id"),
            result=result,
            error=error or operation.get("error"),
            finished_at=parse_helper_time(operation.get("finished_at")),
        )
        return record

    @api.model
    def _vals_from_payload(self, payload, operation=None, state="running"):
        """The record's values from its payload (PAYLOAD_FIELDS), as the checklist fills it or as the
        helper's journal gives it back."""
        users = self.env["res.users"].sudo().with_context(active_test=False)

        def user(login):
            return users.search([("login", "=", login)], limit=1).id if login else False

        operation = operation or {}
        vals = {"state": state, "database": operation.get("database") or self.env.cr.dbname}
        for key, field, kind in PAYLOAD_FIELDS:
            value = payload.get(key)
            if kind == "text":
                vals[field] = value or False
            elif kind == "login":
                vals[field] = user(value)
            elif kind == "logins":
                vals[field] = [(6, 0, [uid for uid in map(user, value or []) if uid])]
            elif kind == "datetime":
                vals[field] = parse_helper_time(value or operation.get("started_at"))
            elif kind == "minutes":
                vals[field] = int(value or 0)
            elif kind == "triggers":
                vals[field] = self._trigger_vals(value or [])
        vals["name"] = vals["name"] or _("New")
        vals["reason"] = vals["reason"] or _("(not recorded)")
        if vals["decision"] not in dict(DECISIONS):
            vals["decision"] = "rollback"
        snapshot = self.env["deployment.snapshot"].sudo().search([("helper_id", "=", payload.get("snapshot"))], limit=1)
        vals["snapshot_id"] = snapshot.id or False
        return vals

    @api.model
    def _trigger_vals(self, triggers):
        lines = []
        for index, trigger in enumerate(triggers):
            known = TRIGGERS_BY_CODE.get(trigger.get("code"))
            if not known:
                continue
            lines.append(
                (
                    0,
                    0,
                    {
                        "sequence": index,
                        "code": known.code,
                        "name": _(known.name),
                        "category": known.category,
                        "holds": bool(trigger.get("holds")),
                        "measured_value": trigger.get("measured_value") or False,
                        "source": trigger.get("source") or False,
                    },
                )
            )
        return lines

    def _helper_payload(self):
        """What the helper keeps in its journal so that this record can be re-created (PAYLOAD_FIELDS)."""
        self.ensure_one()
        payload = {}
        for key, field, kind in PAYLOAD_FIELDS:
            value = self[field]
            if kind == "text":
                payload[key] = value or ""
            elif kind == "login":
                payload[key] = value.login or ""
            elif kind == "logins":
                payload[key] = value.mapped("login")
            elif kind == "datetime":
                payload[key] = fields.Datetime.to_string(value) if value else ""
            elif kind == "minutes":
                payload[key] = value
            elif kind == "triggers":
                payload[key] = [
                    {name: trigger[name] if name == "holds" else trigger[name] or "" for name in TRIGGER_PAYLOAD_FIELDS}
                    for trigger in value.sorted("sequence")
                ]
        return payload

    # -- after the restore ---------------------------------------------------------------------------
    def _on_finished(self):
        self.ensure_one()
        if self.state == "done":
            self._validate()
            self._schedule_follow_up()
            self._after_done()
        else:
            self.message_post(body=_("The rollback failed: %s", self.error or _("see the steps")))
        self._send_template(
            "deployment_rollback.mail_template_rollback_completion",
            self._stakeholders() | self.escalation_level_id._reached_partners(),
        )

    def _after_done(self):
        """A draft post-mortem, filled in with what the rollback knows."""
        self.ensure_one()
        services_check = self.check_ids.filtered(lambda check: check.code == "services" and check.automatic)
        services = [part.split(":")[0] for part in (services_check.detail or "").split(", ") if ":" in part]
        steps = self.step_ids.sorted("started_at")
        postmortems = self.env["deployment.postmortem"].sudo()
        deployment = self._incident_deployment()
        vals = postmortems._prefill_vals(
            {
                "name": self.name,
                "incident_start": deployment.started_at or self.started_at,
                "events": [
                    {
                        "time": deployment.started_at,
                        "event": _("Deployment %s", deployment.to_revision or deployment.helper_id),
                    }
                ]
                if deployment
                else [],
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "services": services or [_("Odoo (database %s)", self.database)],
                "data_loss": bool(self.lost_rows_total) or not self.integrity_ok,
                "steps": [
                    {
                        "name": step.label,
                        "started_at": step.started_at,
                        "finished_at": step.finished_at,
                        "result": dict(step._fields["result"]._description_selection(self.env)).get(step.result),
                    }
                    for step in steps
                ],
            }
        )
        vals.update(rollback_id=self.id, root_cause=self.root_cause or False)
        self._helper_sync().postmortem_id = postmortems.create(vals)

    def _incident_deployment(self):
        """The deployment this rollback undoes: the last one started after its snapshot and before it."""
        self.ensure_one()
        if not self.started_at:
            return self.env["deployment.operation"]
        domain = [("kind", "=", "deploy"), ("started_at", "<=", self.started_at)]
        if self.snapshot_id.taken_at:
            domain.append(("started_at", ">=", self.snapshot_id.taken_at))
        return self.env["deployment.operation"].sudo().search(domain, order="started_at desc, id desc", limit=1)

    def _validate(self):
        """The critical checks (automatic where Odoo or the helper can tell) and the data integrity."""
        self.ensure_one()
        sync = self._helper_sync()
        checks = [(5, 0, 0)]
        for sequence, (code, name, state, detail) in enumerate(self._critical_checks()):
            checks.append(
                (
                    0,
                    0,
                    {
                        "sequence": sequence,
                        "code": code,
                        "name": name,
                        "automatic": state != "pending",
                        "state": state,
                        "detail": detail,
                    },
                )
            )
        counter = self.env["deployment.snapshot.compare"]
        integrity = [(5, 0, 0)]
        for count in self.snapshot_id.count_ids.filtered(lambda c: not c.absent):
            try:
                with self.env.cr.savepoint():
                    live = counter._live_count(count.table_name)
            except Exception:  # a table a bad migration broke: it does not match, the rest is checked
                live = None
            integrity.append(
                (
                    0,
                    0,
                    {
                        "table_name": count.table_name,
                        "model": count.model,
                        "snapshot_count": count.count,
                        "restored_count": live or 0,
                    },
                )
            )
        sync.write({"check_ids": checks, "integrity_ids": integrity})

    def _critical_checks(self):
        """(code, name, state, detail) of each check; state "pending" asks a person to tick it.

        Each check reads in a savepoint: a failing read (exactly what a bad migration causes) fails its
        own check, not the transaction that records them all and imports the rest of the journal.
        """
        names = {
            "services": _("Services up"),
            "login": _("Login page answers"),
            "invoices": _("Invoices readable"),
            "queries": _("Database queries work"),
            "log": _("No errors in the log"),
        }
        results = []
        for codes, read in (
            (("services", "login"), self._health_checks),
            (("invoices",), self._invoice_check),
            (("queries",), self._query_check),
            (("log",), self._log_check),
        ):
            try:
                with self.env.cr.savepoint():
                    found = read()
            except Exception as exc:  # any failure of the read is what its check reports
                found = [(code, names[code], "failed", str(exc)[:250]) for code in codes]
            results += found if isinstance(found, list) else [found]
        results.append(("users", _("Users can log in and work"), "pending", ""))
        results.append(("email", _("E-mail is sent and received"), "pending", ""))
        return results

    def _health_checks(self):
        """The services and the login page, from the helper's health check."""
        try:
            health = self.env["deployment.rollback.helper"]._request("GET", "/v1/health")
        except UserError as exc:
            return [
                ("services", _("Services up"), "pending", _("helper not reachable: %s", exc.args[0])),
                ("login", _("Login page answers"), "pending", _("helper not reachable")),
            ]
        results = []
        services = health.get("services") or {}
        down = {name: state for name, state in services.items() if state not in ("running", "active")}
        if "error" in services or not services:
            results.append(("services", _("Services up"), "pending", services.get("error") or _("not managed")))
        else:
            results.append(
                (
                    "services",
                    _("Services up"),
                    "failed" if down else "ok",
                    ", ".join(f"{name}: {state}" for name, state in sorted(services.items())),
                )
            )
        http = health.get("http")
        if http:
            results.append(
                (
                    "login",
                    _("Login page answers"),
                    "ok" if http.get("ok") else "failed",
                    f"{http.get('url')}: {http.get('status') or http.get('error')}",
                )
            )
        else:
            results.append(("login", _("Login page answers"), "pending", _("no health URL configured")))
        return results

    def _invoice_check(self):
        if "account.move" not in self.env:
            return ("invoices", _("Invoices readable"), "pending", _("Invoicing is not installed"))
        moves = self.env["account.move"].search([("move_type", "=", "out_invoice")], limit=5, order="id desc")
        moves.read(["name", "amount_total", "state"])
        return ("invoices", _("Invoices readable"), "ok", _("%s newest invoices read", len(moves)))

    def _query_check(self):
        partners = self.env["res.partner"].sudo().search_count([])
        return ("queries", _("Database queries work"), "ok", _("%s partners counted", partners))

    def _log_check(self):
        name = _("No errors in the log")
        since = fields.Datetime.to_string(self.finished_at or self.started_at or fields.Datetime.now())
        try:
            reply = self.env["deployment.rollback.helper"]._request(
                "GET", f"/v1/logs/errors?since={since.replace(' ', 'T')}"
            )
        except UserError as exc:
            return ("log", name, "pending", _("not read by the helper: %s", exc.args[0])[:250])
        if not reply.get("checked", True):
            return ("log", name, "pending", _("the helper has no service log to read"))
        errors = reply.get("errors") or []
        if errors:
            first = errors[0]
            summary = (first.get("cause") or first.get("message")) if isinstance(first, dict) else first
            return (
                "log",
                name,
                "failed",
                _("%(count)s errors, first: %(first)s", count=len(errors), first=summary)[:250],
            )
        return (
            "log",
            name,
            "ok",
            # Not "source": it is the name of _()'s own first argument.
            _(
                "%(lines)s lines of %(log)s read",
                lines=reply.get("lines_read", 0),
                log=reply.get("source") or _("the log"),
            ),
        )

    def _schedule_follow_up(self):
        """The runbook's post-rollback lists as activities: within 4 hours, 24 hours and 7 days."""
        self.ensure_one()
        user = self.decided_by_id or self.requested_by_id or self.env.user
        finished = self.finished_at or fields.Datetime.now()
        # In the language of the person who gets the activities: _() reads it from this local.
        context = dict(self.env.context, lang=user.lang or self.env.lang)  # noqa: F841
        for _key, label, due_after, tasks in POST_ROLLBACK_TASKS:
            for task in tasks:
                self.activity_schedule(
                    "mail.mail_activity_data_todo",
                    date_deadline=(finished + due_after).date(),
                    summary=f"{_(label)}: {_(task)}",
                    user_id=user.id,
                )

    # -- actions -------------------------------------------------------------------------------------
    def action_cancel(self):
        if not self.env.user.has_group(MANAGER_GROUP):
            raise AccessError(_("Only Deployment Rollback managers can cancel a rollback."))
        for record in self:
            if record.state != "draft":
                raise UserError(_("Only a draft rollback can be cancelled; %s is not a draft.", record.name))
        self._helper_sync().write({"state": "cancelled"})
        return True
