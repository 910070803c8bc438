# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
import io
import json
import os
import time
import zipfile
from datetime import datetime, timezone

import psycopg2
from freezegun import freeze_time
from odoo.exceptions import ValidationError
from odoo.tests import Form, HttpCase, tagged
from psycopg2 import sql

from .common import RealHelperMixin


def _pg(dbname="postgres"):
    conn = psycopg2.connect(
        dbname=dbname,
        host=os.environ.get("ROLLBACK_TEST_PGHOST", "127.0.0.1"),
        port=int(os.environ.get("ROLLBACK_TEST_PGPORT", "5432")),
        user=os.environ.get("ROLLBACK_TEST_PGUSER", "rollback_helper"),
        password=os.environ.get("ROLLBACK_TEST_PGPASSWORD", "rollback_helper"),
    )
    conn.autocommit = True
    return conn


@tagged("post_install", "-at_install")
class TestDeploymentBackup(RealHelperMixin, HttpCase):
    """Backups from Odoo against a real helper: the zip download, the kept databases, the schedule."""

    def _imported(self, snapshot_id):
        self.env["deployment.operation"]._import_journal()
        return self.env["deployment.snapshot"].search([("helper_id", "=", snapshot_id)])

    def test_a_manager_downloads_a_snapshot_as_an_odoo_zip(self):
        taken = self.helper.cli("snapshot", "--kind", "manual", "--verify")
        snapshot = self._imported(taken["id"])
        action = snapshot.action_download_odoo_zip()
        self.assertEqual(action["url"], f"/deployment_rollback/snapshot/{snapshot.id}/odoo-zip")

        self.authenticate("admin", "admin")
        response = self.url_open(action["url"], timeout=120)
        self.assertEqual(response.status_code, 200)
        self.assertIn(".zip", response.headers["Content-Disposition"])
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            self.assertEqual(archive.namelist()[0], "dump.sql")
            manifest = json.loads(archive.read("manifest.json"))
        self.assertEqual(manifest["db_name"], self.env.cr.dbname)
        self.assertIn("deployment_rollback", manifest["modules"])

    def test_an_imported_odoo_zip_is_a_verified_snapshot_in_odoo(self):
        taken = self.helper.cli("snapshot", "--kind", "manual")
        backup = self.helper.dir / "backup.zip"
        self.helper.cli("export", taken["id"], str(backup))
        imported = self.helper.cli("import", str(backup), "--label", "from the old server")
        snapshot = self._imported(imported["id"])
        self.assertEqual((snapshot.kind, snapshot.state), ("imported", "verified"))
        self.assertEqual(snapshot.label, "from the old server")

    def test_a_snapshot_the_retention_deletes_is_shown_deleted(self):
        older = self.helper.cli("snapshot", "--kind", "manual")
        newer = self.helper.cli("snapshot", "--kind", "manual")
        removed = self.helper.cli("prune", "--keep", "1")["removed"]  # the class's other snapshots may go too
        self.assertIn(older["id"], removed)
        self.assertNotIn(newer["id"], removed)
        self.assertEqual(self._imported(older["id"]).state, "deleted")
        self.assertEqual(self._imported(newer["id"]).state, "done")

    def test_kept_databases_are_listed_from_the_helper(self):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        name = f"{self.env.cr.dbname}__failed_{stamp}"
        conn = _pg()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            action = self.env["deployment.kept"].action_open()
            kept = self.env["deployment.kept"].search(action["domain"])
            self.assertEqual(kept.mapped("name"), [name])
            self.assertEqual(kept.purpose, "failed")
            self.assertTrue(kept.size_human.endswith("MiB"))
        finally:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.close()

    def test_the_scheduled_snapshot_is_due_on_its_days_after_its_hour(self):
        settings = Form(self.env["res.config.settings"])
        settings.deployment_schedule_enabled = True
        settings.deployment_schedule_hour = 3
        settings.deployment_schedule_days = "weekdays"
        settings.save().execute()
        snapshots = self.env["deployment.snapshot"]
        with freeze_time("2026-12-05 04:00:00"):  # a Saturday
            self.assertFalse(snapshots._schedule_due())
        with freeze_time("2026-12-07 02:59:00"):  # Monday, before the hour
            self.assertFalse(snapshots._schedule_due())
        with freeze_time("2026-12-07 03:10:00"):
            self.assertEqual(snapshots._schedule_due(), "2026-12-07")

    def test_the_scheduled_snapshot_is_asked_once_a_day_and_verified(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("deployment_rollback.schedule_enabled", "True")
        params.set_param("deployment_rollback.schedule_hour", "0")
        params.set_param("deployment_rollback.schedule_days", "daily")
        snapshots = self.env["deployment.snapshot"]
        self.assertTrue(snapshots._cron_scheduled_snapshot())
        self.assertFalse(snapshots._cron_scheduled_snapshot())  # once a day
        scheduled = snapshots.search([("kind", "=", "scheduled")])
        self.assertEqual(len(scheduled), 1)
        deadline = time.monotonic() + 120
        while scheduled.state in ("capturing", "done") and time.monotonic() < deadline:
            time.sleep(0.3)
            scheduled.action_refresh()
        self.assertEqual(scheduled.state, "verified", scheduled.job_error)

    def test_the_schedule_hour_is_checked(self):
        settings = Form(self.env["res.config.settings"])
        settings.deployment_schedule_enabled = True
        settings.deployment_schedule_hour = 24
        with self.assertRaisesRegex(ValidationError, "0 to 23"):
            settings.save()
