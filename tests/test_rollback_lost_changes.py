# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The Lost changes tab, from the helper's journal: per model, by kind, the worst first."""

import base64
import io
import zipfile

from odoo.exceptions import AccessError
from odoo.tests.common import TransactionCase

from ..models.deployment_rollback_lost_change import lost_change_lines


def _zip():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("lost_changes.jsonl", '{"table": "account_move", "kind": "inserted"}\n')
    return base64.b64encode(buffer.getvalue()).decode()


SUMMARY = [
    {
        "model": "res.partner",
        "table": "res_partner",
        "counts": {"inserted": 2, "updated": 1},
        "total": 3,
        "records": [
            {"kind": "inserted", "res_id": 51, "display_name": "Ana Mora"},
            {"kind": "inserted", "res_id": 52, "display_name": "Luis Vega"},
            {"kind": "updated", "res_id": 3, "display_name": "Partner 3"},
        ],
    },
    {
        "model": "account.move",
        "table": "account_move",
        "counts": {"inserted": 2, "deleted": 1},
        "total": 3,
        "records": [
            {
                "kind": "inserted",
                "res_id": 9,
                "display_name": "INV/2026/0009",
                "partner": "Ana Mora",
                "amount": "120.00",
            },
            {
                "kind": "inserted",
                "res_id": 10,
                "display_name": "INV/2026/0010",
                "partner": "Luis Vega",
                "amount": "99.50",
                "authority_state": "aceptado",
            },
            {"kind": "deleted", "res_id": 4, "display_name": "INV/2026/0004", "authority_state": "procesando"},
        ],
    },
]


def _operation(uid):
    return {
        "id": "restore-20261203T130000Z-cccccc",
        "kind": "restore",
        "state": "running",
        "database": "prod",
        "started_at": "2026-12-03T13:00:00+00:00",
        "data": {
            "snapshot": "20261203T120000Z-pre_deploy-aaaaaa",
            "rollback": {"uid": uid, "reason": "invoices posted twice", "decision": "rollback"},
            "lost_rows_mode": "exact",
            "lost_rows_limits": [],
            "lost_summary": SUMMARY,
            "lost_export": {"name": "lost_changes.zip", "data": _zip()},
        },
    }


class TestRollbackLostChanges(TransactionCase):
    def test_lines_by_model_and_records_with_the_accepted_e_invoice_first(self):
        changes, records = lost_change_lines(SUMMARY)
        self.assertEqual([c["model_name"] for c in changes], ["res.partner", "account.move"])
        self.assertEqual(changes[1]["deleted_count"], 1)
        self.assertEqual([r["name"] for r in records[:2]], ["INV/2026/0010", "INV/2026/0004"])

    def test_the_journal_import_fills_the_tab_and_attaches_the_export(self):
        rollback = self.env["deployment.rollback"]._sync_from_operation(_operation("lost-1"), [])
        self.assertEqual(rollback.lost_rows_mode, "exact")
        self.assertEqual(
            rollback.lost_change_ids.mapped("total_count"),
            [3, 3],
        )
        first = rollback.lost_record_ids[0]
        self.assertEqual((first.name, first.partner_name, first.amount), ("INV/2026/0010", "Luis Vega", 99.5))
        self.assertEqual(rollback.lost_authority_count, 2)
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(rollback.lost_export_id.datas))) as archive:
            self.assertEqual(archive.namelist(), ["lost_changes.jsonl"])
        self.assertIn("tax authority", rollback.message_ids[0].body)
        # The journal is read again and again: the lines are made once.
        rollback._sync_from_operation(_operation("lost-1"), [])
        self.assertEqual(len(rollback.lost_record_ids), 6)

    def test_the_lines_mirror_the_helper_and_cannot_be_written_by_hand(self):
        rollback = self.env["deployment.rollback"]._sync_from_operation(_operation("lost-2"), [])
        user = self.env["res.users"].create(
            {
                "name": "Lost changes reader",
                "login": "lost_reader",
                "groups_id": [(6, 0, [self.env.ref("deployment_rollback.group_deployment_rollback_user").id])],
            }
        )
        as_user = self.env["deployment.rollback"].with_user(user).browse(rollback.id)
        with self.assertRaises(AccessError):
            as_user.write({"lost_rows_mode": "fallback"})
        self.assertEqual(as_user.lost_record_ids[0].name, "INV/2026/0010")
