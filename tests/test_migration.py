# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""16.0.3.1.0 drops the settings the helper's configuration replaced, and nothing else."""

import importlib.util
from pathlib import Path

from odoo.modules.module import get_module_path
from odoo.tests.common import TransactionCase

KEPT = {
    # Still read: the schedule, the triggers, the progress updates, the journal's cursor.
    "deployment_rollback.schedule_hour": "2",
    "deployment_rollback.trigger_window_minutes": "45",
    "deployment_rollback.progress_minutes": "15",
    # Names that merely look like the obsolete ones.
    "deployment_rollback.retention_note": "keep",
    "other_module.rto_target_minutes": "30",
}
OBSOLETE = {
    "deployment_rollback.rto_target_minutes": "30",
    "deployment_rollback.rto_max_minutes": "60",
    "deployment_rollback.tracked_models": "res.partner,account.move",
    "deployment_rollback.retention": "7",
}


def load_migration():
    path = Path(get_module_path("deployment_rollback")) / "migrations" / "16.0.3.1.0" / "post-migrate.py"
    spec = importlib.util.spec_from_file_location("deployment_rollback_migrate_16_0_3_1_0", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestMigration1603010(TransactionCase):
    def test_manifest_version_runs_the_migration(self):
        manifest = self.env["ir.module.module"].get_module_info("deployment_rollback")
        # Odoo runs a migration for every version above the installed one, up to the manifest's.
        version = tuple(int(part) for part in manifest["version"].split("."))
        self.assertGreaterEqual(version, (16, 0, 3, 1, 0))

    def test_removes_exactly_the_obsolete_settings(self):
        params = self.env["ir.config_parameter"].sudo()
        for key, value in {**KEPT, **OBSOLETE}.items():
            params.set_param(key, value)
        # Read once, so that a cache left stale by the migration would show.
        self.assertEqual(params.get_param("deployment_rollback.retention"), "7")
        before = {p.key: p.value for p in params.search([])}

        migration = load_migration()
        migration.migrate(self.env.cr, "16.0.3.0.0")

        after = {p.key: p.value for p in params.search([])}
        self.assertEqual(
            after, {key: value for key, value in before.items() if key not in OBSOLETE}, "nothing else changed"
        )
        for key in OBSOLETE:
            self.assertFalse(params.get_param(key), key)
        for key, value in KEPT.items():
            self.assertEqual(params.get_param(key), value, key)

        # Run twice (an update that stops and restarts): nothing more goes.
        self.assertEqual(migration.remove_obsolete_settings(self.env), {})
        self.assertEqual({p.key: p.value for p in params.search([])}, after)
