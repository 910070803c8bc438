# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""What a rollback lost: the changes made after its snapshot, per model and record.

The helper reads them from the replaced database after the restore and keeps, in its journal's
operation, a per-model summary (``lost_summary``) and the export as a zip (``lost_export``);
:meth:`DeploymentRollback._sync_lost_changes` turns them into these lines and an attachment.
"""

import re

from odoo import _, api, fields, models

from .deployment_rollback import DeploymentRollback as BaseRollback

KINDS = [
    ("inserted", "Created"),
    ("updated", "Changed"),
    ("deleted", "Deleted"),
    ("written", "Created or changed"),
    ("truncated", "Emptied"),
]
MODES = [
    ("exact", "Exact (every table, every change)"),
    ("fallback", "Fallback (no logical decoding on the server)"),
    ("timestamps", "Timestamps (tracked tables only)"),
]


def lost_change_lines(summary):
    """(per-model values, per-record values) from the helper's ``lost_summary``, the worst first:
    an e-invoice the tax authority accepted, then any with an authority state, then the rest."""
    changes, records = [], []
    for sequence, entry in enumerate(summary or []):
        if not isinstance(entry, dict):
            continue
        counts = entry.get("counts") or {}
        model = entry.get("model") or entry.get("table") or ""
        changes.append(
            {
                "sequence": sequence,
                "model_name": model,
                "table_name": entry.get("table") or "",
                **{f"{kind}_count": int(counts.get(kind) or 0) for kind, _label in KINDS},
                "total_count": int(entry.get("total") or sum(counts.values())),
            }
        )
        for record in entry.get("records") or []:
            state = record.get("authority_state") or False
            records.append(
                {
                    "model_name": model,
                    "kind": record.get("kind") if record.get("kind") in dict(KINDS) else "written",
                    "res_id": record.get("res_id") or 0,
                    "name": record.get("display_name") or "",
                    "partner_name": record.get("partner") or False,
                    "amount": float(record.get("amount") or 0.0),
                    "authority_state": state,
                    "priority": _priority(state),
                }
            )
    records.sort(key=lambda r: r["priority"])
    for sequence, record in enumerate(records):
        record["sequence"] = sequence
    return changes, records


def _priority(state):
    if not state:
        return 2
    lowered = state.lower()
    return 0 if any(word in lowered for word in ("accept", "aceptad", "sent", "valid")) else 1


class DeploymentRollbackLostChange(models.Model):
    """The changes one model lost, counted by kind."""

    _name = "deployment.rollback.lost.change"
    _description = "Deployment Rollback Lost Changes of a Model"
    _order = "sequence, id"

    rollback_id = fields.Many2one("deployment.rollback", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer()
    model_name = fields.Char(string="Model", required=True)
    table_name = fields.Char(string="Table")
    inserted_count = fields.Integer(string="Created")
    updated_count = fields.Integer(string="Changed")
    deleted_count = fields.Integer(string="Deleted")
    written_count = fields.Integer(string="Created or Changed")
    truncated_count = fields.Integer(string="Emptied")
    total_count = fields.Integer(string="Total")


class DeploymentRollbackLostRecord(models.Model):
    """One record the rollback lost a change of, by its name (an invoice by number, partner, amount)."""

    _name = "deployment.rollback.lost.record"
    _description = "Deployment Rollback Lost Record"
    _order = "sequence, id"

    rollback_id = fields.Many2one("deployment.rollback", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer()
    model_name = fields.Char(string="Model", required=True)
    kind = fields.Selection(KINDS, required=True)
    res_id = fields.Integer(string="Record ID")
    name = fields.Char()
    partner_name = fields.Char(string="Partner")
    amount = fields.Float()
    authority_state = fields.Char(string="Tax Authority State")
    priority = fields.Integer(help="0: accepted by the tax authority; 1: another authority state; 2: none.")


class DeploymentRollback(models.Model):
    _inherit = "deployment.rollback"
    _protected_fields = [
        *BaseRollback._protected_fields,
        "lost_change_ids",
        "lost_record_ids",
        "lost_rows_mode",
        "lost_limits",
        "lost_export_id",
    ]

    lost_change_ids = fields.One2many(
        "deployment.rollback.lost.change", "rollback_id", string="Lost Changes", readonly=True
    )
    lost_record_ids = fields.One2many(
        "deployment.rollback.lost.record", "rollback_id", string="Lost Records", readonly=True
    )
    lost_rows_mode = fields.Selection(MODES, string="Found By", readonly=True)
    lost_limits = fields.Text(string="What This Mode Cannot See", readonly=True)
    lost_limits_text = fields.Text(string="Limits in the Reader's Language", compute="_compute_lost_limits_text")
    lost_export_id = fields.Many2one("ir.attachment", string="Export", readonly=True, ondelete="set null")
    lost_authority_count = fields.Integer(
        string="E-invoices Known to the Tax Authority", compute="_compute_lost_authority_count"
    )

    @api.depends("lost_limits")
    @api.depends_context("lang")
    def _compute_lost_limits_text(self):
        # The helper never imports Odoo and writes its limits in English (lost_rows.LIMITS): read here,
        # in a loop rather than a comprehension so that _() finds this method's env.
        known = {
            "DDL is not in the change stream: new or dropped tables and columns are listed from a comparison "
            "with the snapshot's schema": _(
                "DDL is not in the change stream: new or dropped tables and columns are listed from a comparison "
                "with the snapshot's schema"
            ),
            "a TRUNCATE is reported per table, without its rows": _(
                "a TRUNCATE is reported per table, without its rows"
            ),
            "the values before an update or a delete are the snapshot's, restored; the export holds the key only": _(
                "the values before an update or a delete are the snapshot's, restored; the export holds the key only"
            ),
            "deletions are seen only in the tracked tables (counts.tables)": _(
                "deletions are seen only in the tracked tables (counts.tables)"
            ),
            "outside the tracked tables an insert and an update are not told apart (kind 'written')": _(
                "outside the tracked tables an insert and an update are not told apart (kind 'written')"
            ),
            "the values before a change are not known": _("the values before a change are not known"),
            "this database is not the one the snapshot was taken of: only rows of the tracked tables whose "
            "create_date or write_date is later than the snapshot are seen; deletions, other tables and "
            "transactions that began before the snapshot are not": _(
                "this database is not the one the snapshot was taken of: only rows of the tracked tables whose "
                "create_date or write_date is later than the snapshot are seen; deletions, other tables and "
                "transactions that began before the snapshot are not"
            ),
            "before the restore, deletions are not counted and inserts are not told from updates": _(
                "before the restore, deletions are not counted and inserts are not told from updates"
            ),
            "this snapshot does not record its primary keys (taken by an older helper): deletions are not counted "
            "and inserts are not told from updates": _(
                "this snapshot does not record its primary keys (taken by an older helper): deletions are not "
                "counted and inserts are not told from updates"
            ),
        }
        slot = re.compile(r"the snapshot's replication slot (\S+) is gone \(dropped past the WAL ceiling\?\)")
        for record in self:
            lines = []
            for line in (record.lost_limits or "").splitlines():
                match = slot.fullmatch(line)
                if match:
                    shown = _(
                        "the snapshot's replication slot %s is gone (dropped past the WAL ceiling?)", match.group(1)
                    )
                else:
                    shown = known.get(line, line)
                lines.append(shown)
            record.lost_limits_text = "\n".join(lines) or False

    @api.depends("lost_record_ids.priority")
    def _compute_lost_authority_count(self):
        for record in self:
            record.lost_authority_count = len(record.lost_record_ids.filtered(lambda r: r.priority < 2))

    @api.model
    def _sync_from_operation(self, operation, events):
        record = super()._sync_from_operation(operation, events)
        if record:
            record._sync_lost_changes((operation or {}).get("data") or {})
        return record

    def _sync_lost_changes(self, data):
        """Lines and attachment from the journal operation's data, once (the journal is append-only)."""
        self.ensure_one()
        summary = data.get("lost_summary")
        if not isinstance(summary, list) or self.lost_rows_mode:
            return
        changes, records = lost_change_lines(summary)
        result = data.get("result") if isinstance(data.get("result"), dict) else {}
        vals = {
            "lost_rows_mode": data.get("lost_rows_mode") or result.get("lost_rows_mode") or False,
            "lost_limits": "\n".join(data.get("lost_rows_limits") or []) or False,
            "lost_change_ids": [(0, 0, line) for line in changes],
            "lost_record_ids": [(0, 0, line) for line in records],
        }
        export = data.get("lost_export")
        if isinstance(export, dict) and export.get("data"):
            vals["lost_export_id"] = (
                self.env["ir.attachment"]
                .sudo()
                .create(
                    {
                        "name": export.get("name") or "lost_changes.zip",
                        "datas": export["data"],
                        "res_model": self._name,
                        "res_id": self.id,
                        "mimetype": "application/zip",
                    }
                )
                .id
            )
        self._helper_sync().write(vals)
        if records and records[0]["priority"] == 0:
            self.message_post(
                body=_(
                    "This rollback removed e-invoices the tax authority had already accepted: see the Lost changes tab."
                )
            )
