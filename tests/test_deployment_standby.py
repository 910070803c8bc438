# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""A snapshot's warm standby, as the helper's list and journal report it (in the helper's shape)."""

from odoo.tests.common import TransactionCase

SNAPSHOT = "20261203T100000Z-pre_deploy-e4e4e4"
STANDBY_DB = "prod__standby_20261203100000"


def _operation(kind, state, seq):
    return {
        "id": f"{kind}-20261203T1001{seq:02d}Z-cccccc",
        "kind": kind,
        "state": state,
        "database": "prod",
        "started_at": "2026-12-03T10:01:00+00:00",
        "finished_at": None if state == "running" else "2026-12-03T10:02:00+00:00",
        "data": {"snapshot": SNAPSHOT, "database": STANDBY_DB},
    }


def _page(*operations):
    return {"events": [], "operations": {op["id"]: op for op in operations}, "next": 0}


class TestDeploymentStandby(TransactionCase):
    def setUp(self):
        super().setUp()
        self.snapshot = self.env["deployment.snapshot"]._mirror(
            {
                "id": SNAPSHOT,
                "kind": "pre_deploy",
                "created_at": "2026-12-03T10:00:00+00:00",
                "verified_at": "2026-12-03T10:00:30+00:00",
                "database": self.env.cr.dbname,
                "counts": {},
                "size": 1000,
                "standby": None,
            }
        )

    def test_list_shows_a_ready_standby(self):
        self.assertEqual(self.snapshot.standby_state, "none")
        self.env["deployment.snapshot"]._mirror(
            {
                "id": SNAPSHOT,
                "database": self.env.cr.dbname,
                "verified_at": "2026-12-03T10:00:30+00:00",
                "standby": {"state": "ready", "ready": True, "database": STANDBY_DB},
            }
        )
        self.assertEqual(self.snapshot.standby_state, "ready")
        self.assertEqual(self.snapshot.standby_database, STANDBY_DB)

    def test_journal_follows_the_standby_from_build_to_drop(self):
        operations = self.env["deployment.operation"]
        operations._import_page(_page(_operation("standby", "running", 1)))
        self.assertEqual(self.snapshot.standby_state, "building")
        operations._import_page(_page(_operation("standby", "done", 1)))
        self.assertEqual((self.snapshot.standby_state, self.snapshot.standby_database), ("ready", STANDBY_DB))
        operations._import_page(_page(_operation("standby_drop", "done", 2)))
        self.assertEqual((self.snapshot.standby_state, self.snapshot.standby_database), ("none", False))

    def test_a_rollback_that_used_the_standby_leaves_none(self):
        operations = self.env["deployment.operation"]
        operations._import_page(_page(_operation("standby", "done", 1)))
        restore = dict(_operation("restore", "done", 3), data={"snapshot": SNAPSHOT, "standby_used": STANDBY_DB})
        operations._import_page(_page(restore))
        self.assertEqual(self.snapshot.standby_state, "none")

    def test_a_rollback_that_refused_the_standby_at_its_last_check_leaves_none(self):
        # Taken by the restore, then refused right before the swap and dropped: the restore staged.
        operations = self.env["deployment.operation"]
        operations._import_page(_page(_operation("standby", "done", 1)))
        data = {"snapshot": SNAPSHOT, "standby_taken": STANDBY_DB, "standby_used": None}
        operations._import_page(_page(dict(_operation("restore", "done", 3), data=data)))
        self.assertEqual((self.snapshot.standby_state, self.snapshot.standby_database), ("none", False))
