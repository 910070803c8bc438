# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Deployments as the helper's journal reports them (``GET /v1/journal`` pages, in the helper's shape)."""

from odoo.tests.common import TransactionCase

SNAPSHOT = "20261125T100000Z-pre_deploy-d3d3d3"


def _page(outcome, restore=True):
    deploy = {
        "id": "deploy-20261125T100100Z-aaaaaa",
        "kind": "deploy",
        "state": {"rolled_back": "undone", "deployed": "done"}[outcome],
        "database": "prod",
        "started_at": "2026-11-25T10:01:00+00:00",
        "finished_at": "2026-11-25T10:09:00+00:00",
        "data": {
            "requested": "v2.4",
            "snapshot": SNAPSHOT,
            "from_revision": "1111111",
            "to_revision": "2222222",
            "modules": ["sale_custom", "stock_custom"],
            "outcome": outcome,
            "reason": "the module update failed: exited with status 255" if restore else "",
            "analysis": [
                {"name": "update", "ok": not restore, "detail": "ValueError: Invalid field 'x'"},
                {"name": "health", "ok": True, "detail": "services running"},
            ],
            "rollback_operation": "restore-20261125T100500Z-bbbbbb" if restore else None,
        },
    }
    operations = {deploy["id"]: deploy}
    events = [
        {"seq": 1, "operation_id": deploy["id"], "at": deploy["started_at"], "step": "preflight", "status": "start"}
    ]
    if restore:
        restore_op = {
            "id": "restore-20261125T100500Z-bbbbbb",
            "kind": "restore",
            "state": "done",
            "database": "prod",
            "started_at": "2026-11-25T10:05:00+00:00",
            "finished_at": "2026-11-25T10:08:00+00:00",
            "data": {"snapshot": SNAPSHOT, "result": {"kept_as": "prod__failed_x", "lost_rows_total": 0}},
        }
        operations[restore_op["id"]] = restore_op
        events += [
            {
                "seq": 2,
                "operation_id": restore_op["id"],
                "at": "2026-11-25T10:05:01+00:00",
                "step": "preflight",
                "status": "start",
            },
            {
                "seq": 3,
                "operation_id": restore_op["id"],
                "at": "2026-11-25T10:05:03+00:00",
                "step": "preflight",
                "status": "done",
            },
            {
                "seq": 4,
                "operation_id": restore_op["id"],
                "at": "2026-11-25T10:07:00+00:00",
                "step": "swap",
                "status": "done",
            },
        ]
    return {"events": events, "operations": operations, "next": len(events)}


class TestDeploymentImport(TransactionCase):
    def test_deployment_rolled_back_by_itself_gets_a_rollback_record(self):
        operations = self.env["deployment.operation"]
        operations._import_page(_page("rolled_back"))
        deploy = operations.search([("kind", "=", "deploy")])
        self.assertEqual(deploy.outcome, "rolled_back")
        self.assertEqual((deploy.from_revision, deploy.to_revision), ("1111111", "2222222"))
        self.assertEqual(deploy.modules, "sale_custom, stock_custom")
        self.assertIn("FAILED  update: ValueError", deploy.analysis)
        self.assertEqual(deploy.rollback_operation_id.kind, "restore")

        rollback = deploy.rollback_id
        self.assertEqual(rollback.state, "done")
        self.assertEqual(rollback.decision, "rollback")
        self.assertIn("Automatic rollback of the deployment of 2222222", rollback.reason)
        self.assertIn("exited with status 255", rollback.reason)
        self.assertEqual(rollback.snapshot_helper_id, SNAPSHOT)
        self.assertEqual(rollback.step_ids.mapped("name"), ["preflight", "swap"])
        self.assertTrue(rollback.postmortem_id)
        self.assertTrue(rollback.activity_ids)

        # The same page again (the cron runs every 5 minutes): nothing is doubled.
        operations._import_page(_page("rolled_back"))
        self.assertEqual(operations.search_count([("kind", "=", "deploy")]), 1)
        self.assertEqual(
            self.env["deployment.rollback"].search_count([("rollback_uid", "=", rollback.rollback_uid)]), 1
        )

    def test_good_deployment_has_no_rollback(self):
        operations = self.env["deployment.operation"]
        before = self.env["deployment.rollback"].search_count([])
        operations._import_page(_page("deployed", restore=False))
        deploy = operations.search([("kind", "=", "deploy")])
        self.assertEqual(deploy.outcome, "deployed")
        self.assertFalse(deploy.rollback_operation_id)
        self.assertFalse(deploy.rollback_id)
        self.assertEqual(self.env["deployment.rollback"].search_count([]), before)
