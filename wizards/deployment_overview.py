# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The on-call overview: what a person needs to know before deciding anything, on one screen."""

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError

from ..models.deployment_drill import quarter_label, quarter_of
from ..models.helper_client import HelperRefusal
from ..models.texts import human_size

# A pre-deploy snapshot older than this is probably not the one taken before today's deployment.
STALE_HOURS = 24
QUARTER_STATES = [("done", "Done"), ("failed", "Failed"), ("missing", "Missing"), ("upcoming", "Upcoming")]


class DeploymentOverview(models.TransientModel):
    _name = "deployment.overview"
    _description = "Deployment Rollback Overview"

    snapshot_id = fields.Many2one(
        "deployment.snapshot", string="Newest Verified Pre-deploy Snapshot", compute="_compute_overview"
    )
    snapshot_age = fields.Char(related="snapshot_id.age_display")
    snapshot_taken_at = fields.Datetime(related="snapshot_id.taken_at")
    snapshot_stale = fields.Boolean(compute="_compute_overview")
    rollback_id = fields.Many2one("deployment.rollback", string="Running Rollback", compute="_compute_overview")
    rollback_elapsed_minutes = fields.Float(related="rollback_id.elapsed_minutes")
    rollback_rto_target_minutes = fields.Integer(related="rollback_id.rto_target_minutes")
    rollback_rto_status = fields.Selection(related="rollback_id.rto_status")
    rollback_step = fields.Char(related="rollback_id.progress_step")
    last_rollback_id = fields.Many2one("deployment.rollback", compute="_compute_overview")
    open_action_ids = fields.Many2many(
        "deployment.postmortem.action", string="Open Action Items", compute="_compute_overview"
    )
    open_action_count = fields.Integer(compute="_compute_overview")
    overdue_action_count = fields.Integer(compute="_compute_overview")
    quarter = fields.Char(compute="_compute_overview")
    quarter_state = fields.Selection(QUARTER_STATES, string="This Quarter's Drill", compute="_compute_overview")
    quarter_drill_ids = fields.Many2many("deployment.drill", compute="_compute_overview")
    # The helper's health, asked once when the overview opens.
    helper_reachable = fields.Boolean(compute="_compute_helper_health")
    helper_status = fields.Char(string="Helper", compute="_compute_helper_health")
    helper_storage_free = fields.Char(string="Free Storage", compute="_compute_helper_health")
    helper_next_snapshot = fields.Char(string="Next Snapshot Needs", compute="_compute_helper_health")
    helper_storage_short = fields.Boolean(compute="_compute_helper_health")
    helper_kept_databases = fields.Char(string="Kept Databases", compute="_compute_helper_health")
    last_snapshot_age = fields.Char(string="Last Snapshot", compute="_compute_helper_health")

    @api.depends_context("uid")
    def _compute_overview(self):
        today = fields.Date.context_today(self)
        snapshot = self.env["deployment.snapshot"]._newest_verified_pre_deploy()
        rollbacks = self.env["deployment.rollback"]
        running = rollbacks.search([("state", "=", "running")], limit=1)
        last = rollbacks.search([("state", "in", ("done", "failed"))], order="finished_at desc, id desc", limit=1)
        actions = self.env["deployment.postmortem.action"].search([("state", "=", "open")])
        year, number = quarter_of(today)
        row = next(
            r
            for r in self.env["deployment.drill"]._quarter_overview([year], today=today)
            if r["quarter_number"] == number
        )
        for overview in self:
            overview.snapshot_id = snapshot
            overview.snapshot_stale = not snapshot or snapshot.age_hours > STALE_HOURS
            overview.rollback_id = running
            overview.last_rollback_id = last
            overview.open_action_ids = actions
            overview.open_action_count = len(actions)
            overview.overdue_action_count = len(actions.filtered(lambda a: a.due_date and a.due_date < today))
            overview.quarter = quarter_label(year, number)
            overview.quarter_state = row["state"]
            overview.quarter_drill_ids = [(6, 0, row["drill_ids"])]

    @api.depends_context("uid")
    def _compute_helper_health(self):
        snapshot = self.env["deployment.snapshot"].search([("state", "in", ("done", "verified"))], limit=1)
        values = {
            "helper_reachable": False,
            "helper_storage_free": "",
            "helper_next_snapshot": "",
            "helper_storage_short": False,
            "helper_kept_databases": "",
            "last_snapshot_age": _("%s ago", snapshot.age_display) if snapshot.age_display else _("none yet"),
        }
        try:
            health = self.env["deployment.rollback.helper"]._request("GET", "/v1/health")
        except HelperRefusal as exc:
            # It answers, but refuses (another database's helper, another secret): none of its state is shown.
            values["helper_status"] = _("Reachable, but refused the request: %s", exc.args[0])
        except UserError as exc:
            values["helper_status"] = _("Not reachable: %s", exc.args[0])
        else:
            free = health.get("storage_free_bytes") or 0
            needs = health.get("next_snapshot_needs_bytes")
            kept = health.get("kept_databases") or []
            failing = self.env["deployment.rollback.helper"]._health_problems(health)
            values.update(
                helper_reachable=True,
                helper_status=". ".join(filter(None, [_("Reachable, version %s", health.get("version")), failing])),
                helper_storage_free=human_size(free),
                helper_next_snapshot=human_size(needs) if needs is not None else _("unknown"),
                helper_storage_short=needs is not None and free < needs,
                helper_kept_databases=_(
                    "%(count)s (%(size)s): drop them once the analysis is done",
                    count=len(kept),
                    size=human_size(sum(db.get("size") or 0 for db in kept)),
                )
                if kept
                else _("none"),
            )
        for overview in self:
            overview.update(values)

    def name_get(self):
        return [(overview.id, _("Overview")) for overview in self]

    @api.model
    def action_open(self):
        """The menu's action: a saved overview, so that the form reads every answer fresh."""
        if not self.env.user.has_group("deployment_rollback.group_deployment_rollback_user"):
            # Said before create(), whose refusal would read "not allowed to modify" a model nobody knows.
            raise AccessError(
                _(
                    "The Deployments overview needs the access right Deployment Rollback: User. "
                    "Ask an administrator to set it on your user (Settings > Users)."
                )
            )
        overview = self.create({})
        return {
            "type": "ir.actions.act_window",
            "name": _("Overview"),
            "res_model": self._name,
            "res_id": overview.id,
            "view_mode": "form",
            "target": "current",
        }

    def _open(self, model, res_id=None, domain=None, name=None, target="current"):
        action = {"type": "ir.actions.act_window", "res_model": model, "target": target}
        if res_id:
            action.update(res_id=res_id, view_mode="form")
        else:
            action.update(view_mode="tree,form", domain=domain or [], name=name)
        return action

    def action_capture_snapshot(self):
        return self.env["deployment.snapshot"].action_open_capture("pre_deploy")

    def action_open_checklist(self):
        return self.env["ir.actions.actions"]._for_xml_id("deployment_rollback.deployment_rollback_wizard_action")

    def action_open_rollback(self):
        self.ensure_one()
        return self._open("deployment.rollback", res_id=(self.rollback_id or self.last_rollback_id).id)

    def action_open_actions(self):
        return self._open("deployment.postmortem.action", domain=[("state", "=", "open")], name=_("Open Action Items"))

    def action_open_drills(self):
        return self.env["deployment.drill.overview"].action_open()
