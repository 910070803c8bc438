# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import json
import socket
import tempfile
from pathlib import Path
from unittest.mock import patch

from odoo.addons.deployment_rollback.models.helper_client import (
    ADDRESS_PARAM,
    SECRET_OPTION,
    sign,
)
from odoo.exceptions import AccessError, UserError
from odoo.tests.common import Form, TransactionCase, new_test_user
from odoo.tools import config

VECTORS = Path(__file__).resolve().parent.parent / "helper" / "tests" / "data" / "signing_vectors.json"


class TestDeploymentSnapshot(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(
            cls.env,
            login="rb_manager",
            groups="base.group_user,base.group_system,deployment_rollback.group_deployment_rollback_manager",
        )
        cls.user = new_test_user(
            cls.env,
            login="rb_user",
            groups="base.group_user,deployment_rollback.group_deployment_rollback_user",
        )
        cls.summary = {
            "id": "20261124T213000Z-pre_deploy-a1b2c3",
            "kind": "pre_deploy",
            "label": "before v2",
            "path": "/var/backups/x",
            "created_at": "2026-11-24T21:30:00.123456+00:00",
            "database": cls.env.cr.dbname,
            "counts": {"res_partner": 12, "account_move": None},
            "size": 4096,
            "verified_at": "2026-11-24T21:31:00+00:00",
            "code_revision": "abc123",
            "modules": {"base": "16.0.1.3", "mail": "16.0.1.10"},
        }

    def test_signing_matches_the_helper_vectors(self):
        for vector in json.loads(VECTORS.read_text(encoding="utf-8")):
            self.assertEqual(
                sign(
                    vector["secret"].encode(),
                    vector["method"],
                    vector["path"],
                    vector["timestamp"],
                    vector["nonce"],
                    vector["database"],
                    vector["body"].encode(),
                ),
                vector["signature"],
            )

    def test_settings_form_stores_the_address_and_shows_the_helper_settings_read_only(self):
        settings = Form(self.env["res.config.settings"])
        settings.deployment_helper_address = "http://127.0.0.1:8765"
        # The helper's file is the truth for what it does: no second copy to edit here.
        for name, value in (
            ("deployment_rto_target_minutes", 10),
            ("deployment_tracked_models", "res.partner"),
            ("deployment_retention", "5"),
        ):
            with self.assertRaises(AssertionError):
                setattr(settings, name, value)
        self.assertIn("not configured yet", settings.deployment_helper_config)
        settings.save().execute()
        params = self.env["ir.config_parameter"].sudo()
        self.assertEqual(params.get_param(ADDRESS_PARAM), "http://127.0.0.1:8765")

    def test_mirror_fills_counts_modules_and_is_idempotent(self):
        snapshot = self.env["deployment.snapshot"]._mirror(self.summary)
        again = self.env["deployment.snapshot"]._mirror(self.summary)
        self.assertEqual(snapshot, again)
        self.assertEqual(snapshot.state, "verified")
        counts = {c.table_name: (c.model, c.count, c.absent) for c in snapshot.count_ids}
        self.assertEqual(counts["res_partner"], ("res.partner", 12, False))
        self.assertTrue(counts["account_move"][2])
        self.assertEqual(snapshot.module_ids.mapped("name"), ["base", "mail"])
        self.assertEqual(str(snapshot.taken_at), "2026-11-24 21:30:00")

    def test_snapshot_of_another_database_is_marked_failed(self):
        snapshot = self.env["deployment.snapshot"]._mirror(dict(self.summary, database="other_db"))
        self.assertEqual(snapshot.state, "failed")
        self.assertIn("other_db", snapshot.job_error)

    def test_mirrored_fields_cannot_be_written_over_rpc(self):
        snapshot = self.env["deployment.snapshot"]._mirror(self.summary)
        as_manager = snapshot.with_user(self.manager)
        with self.assertRaises(AccessError):
            as_manager.write({"state": "verified", "helper_id": "forged"})
        with self.assertRaises(AccessError):
            self.env["deployment.snapshot"].with_user(self.manager).create({"kind": "manual"})
        # A client cannot forge the privileged path through the context either.
        forged = as_manager.with_context(_deployment_rollback_helper_sync=True)
        with self.assertRaises(AccessError):
            forged.write({"state": "failed"})
        as_manager.write({"label": "renamed"})
        self.assertEqual(snapshot.label, "renamed")

    def test_users_without_the_manager_group_cannot_start_anything(self):
        snapshot = self.env["deployment.snapshot"]._mirror(self.summary)
        with self.assertRaises(AccessError):
            self.env["deployment.snapshot"].with_user(self.user).action_capture()
        with self.assertRaises(AccessError):
            snapshot.with_user(self.user).action_verify()
        settings = self.env["res.config.settings"].with_user(self.user)
        with self.assertRaises(AccessError):
            settings.action_deployment_capture_snapshot()
        self.assertEqual(self.env["deployment.snapshot"].search_count([]), 1)

    def test_helper_unreachable_is_a_clear_error_and_creates_nothing(self):
        self.env["ir.config_parameter"].sudo().set_param(ADDRESS_PARAM, "unix:/nonexistent/odoo-rollback.sock")
        with (
            patch.dict(config.options, {SECRET_OPTION: str(VECTORS)}),
            self.assertRaisesRegex(UserError, "cannot be reached"),
        ):
            self.env["deployment.snapshot"].with_user(self.manager).action_capture()
        self.assertFalse(self.env["deployment.snapshot"].search([]))

    def test_a_helper_that_does_not_answer_in_time_is_not_called_unreachable(self):
        # A real socket that accepts and never answers: a helper still busy with a long preview.
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "api.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
                server.bind(path)
                server.listen(1)
                self.env["ir.config_parameter"].sudo().set_param(ADDRESS_PARAM, f"unix:{path}")
                with (
                    patch.dict(config.options, {SECRET_OPTION: str(VECTORS)}),
                    self.assertRaisesRegex(UserError, "did not answer within 1 seconds"),
                ):
                    self.env["deployment.rollback.helper"]._request("GET", "/v1/health", timeout=1)

    def test_missing_secret_option_is_a_clear_error(self):
        with patch.dict(config.options, {SECRET_OPTION: ""}), self.assertRaisesRegex(UserError, SECRET_OPTION):
            self.env["deployment.rollback.helper"]._request("GET", "/v1/health")

    def test_compare_with_live_data(self):
        live = self.env["res.partner"].with_context(active_test=False).search_count([])
        snapshot = self.env["deployment.snapshot"]._mirror(
            dict(self.summary, counts={"res_partner": live - 2, "einvoice_document": None})
        )
        action = snapshot.action_compare_live()
        wizard = self.env[action["res_model"]].browse(action["res_id"])
        lines = {line.table_name: line for line in wizard.line_ids}
        self.assertEqual(lines["res_partner"].live_count, live)
        self.assertEqual(lines["res_partner"].difference, 2)
        self.assertTrue(lines["einvoice_document"].absent)
