# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import _, api, fields, models

from .rollback_catalogue import RESTORE_STEPS


class DeploymentRollbackStep(models.Model):
    """One step of the helper's restore, as its journal reports it."""

    _name = "deployment.rollback.step"
    _description = "Deployment Rollback Step"
    _order = "started_at, id"

    rollback_id = fields.Many2one("deployment.rollback", required=True, ondelete="cascade", index=True)
    name = fields.Char(string="Step Code", required=True)
    label = fields.Char(string="Step", compute="_compute_label")
    started_at = fields.Datetime(string="Start")
    finished_at = fields.Datetime(string="End")
    seconds = fields.Float(compute="_compute_seconds", digits=(16, 2))
    # skipped: not needed in this run (staging and check, when a ready standby takes the staging's place).
    result = fields.Selection(
        [("running", "Running"), ("ok", "Done"), ("skipped", "Skipped"), ("failed", "Failed")], default="running"
    )
    message = fields.Char()

    @api.depends("name")
    @api.depends_context("lang")
    def _compute_label(self):
        for step in self:
            known = RESTORE_STEPS.get(step.name)
            step.label = _(known) if known else step.name

    @api.depends("started_at", "finished_at")
    def _compute_seconds(self):
        for step in self:
            if step.started_at and step.finished_at:
                step.seconds = (step.finished_at - step.started_at).total_seconds()
            else:
                step.seconds = 0.0
