# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""What a new admin walking every screen read: names, not technical ids; numbers in words; times that fit."""

from datetime import datetime, timedelta

from odoo.addons.deployment_rollback.models.helper_version import version_problem
from odoo.exceptions import AccessError
from odoo.tests.common import TransactionCase, new_test_user

from .common import ROLLBACK_STARTED, RealHelperMixin, running_rollback

STARTED = ROLLBACK_STARTED


class TestOperatorWalk(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.decider = new_test_user(
            cls.env, login="rb_walker", groups="base.group_user,deployment_rollback.group_deployment_rollback_user"
        )

    def _rollback(self, **vals):
        return running_rollback(self.env, self.decider, **vals)

    def test_escalation_level_and_drills_by_quarter_show_their_names(self):
        level = self.env.ref("deployment_rollback.escalation_level_technical_lead")
        rollback = self._rollback(escalation_level_id=level.id)
        self.assertEqual(rollback.escalation_level_id.display_name, level.role)
        overview = self.env["deployment.drill.overview"].create({})
        self.assertEqual(overview.display_name, "Drills by Quarter")

    def test_minutes_are_counted_in_words(self):
        rollback = self._rollback().with_context(deployment_rollback_now=STARTED + timedelta(minutes=1))
        self.assertEqual(rollback.progress_elapsed, "1 minute")
        rollback = rollback.with_context(deployment_rollback_now=STARTED + timedelta(minutes=3))
        self.assertEqual(rollback.progress_elapsed, "3 minutes")
        snapshot = (
            self.env["deployment.snapshot"]
            ._helper_sync()
            .create({"kind": "manual", "state": "done", "taken_at": datetime.now() - timedelta(seconds=90)})
        )
        self.assertEqual(snapshot.age_display, "1 minute")

    def test_a_finished_rollback_has_no_eta(self):
        rollback = self._rollback()
        self.assertEqual(rollback.eta, STARTED + timedelta(minutes=15))
        rollback._helper_sync().write({"state": "done", "finished_at": STARTED + timedelta(minutes=4)})
        self.assertFalse(rollback.eta)
        arch = self.env["deployment.rollback"].get_views([(False, "form")])["views"]["form"]["arch"]
        self.assertIn('name="eta"', arch)
        self.assertRegex(arch, r'name="eta"[^>]*invisible[^>]*state')

    def test_postmortem_starts_with_the_deployment_and_has_one_title(self):
        deploy_at = STARTED - timedelta(minutes=40)
        self.env["deployment.operation"]._helper_sync().create(
            {
                "helper_id": "op-deploy-1",
                "kind": "deploy",
                "state": "done",
                "started_at": deploy_at,
                "to_revision": "v2.3",
            }
        )
        rollback = self._rollback(name="RB/2026/0042")
        rollback._helper_sync().write({"state": "done", "finished_at": STARTED + timedelta(minutes=4)})
        rollback._after_done()
        postmortem = rollback.postmortem_id
        self.assertEqual(postmortem.incident_start, deploy_at)
        self.assertEqual(postmortem.duration_minutes, 44)
        self.assertEqual(postmortem.timeline_ids[0].time, deploy_at)
        self.assertEqual(postmortem.timeline_ids[0].event, "Deployment v2.3")
        # The person corrects it: the duration follows.
        postmortem.with_user(self.decider).incident_start = deploy_at + timedelta(minutes=10)
        self.assertEqual(postmortem.duration_minutes, 34)

        report = self.env["ir.actions.report"]._get_report("deployment_rollback.deployment_postmortem_report")
        html = report._render_qweb_html(report.report_name, postmortem.ids)[0].decode()
        self.assertEqual(html.count("Post-mortem"), 1, "one 'Post-mortem' above the title")
        self.assertIn("Rollback RB/2026/0042", html)
        self.assertIn("34 minutes", html)

    def test_the_overview_says_which_access_is_missing(self):
        stranger = new_test_user(self.env, login="rb_stranger", groups="base.group_user")
        action = self.env.ref("deployment_rollback.deployment_overview_action_open").with_user(stranger)
        with self.assertRaisesRegex(AccessError, "Deployment Rollback: User"):
            action.run()
        menus = self.env["ir.ui.menu"].with_user(stranger)._visible_menu_ids()
        self.assertNotIn(self.env.ref("deployment_rollback.deployment_overview_menu").id, menus)

    def test_versions_that_matter(self):
        self.assertIsNone(version_problem("16.0.2.5.0", "16.0.3.2.0"))
        self.assertIsNone(version_problem("16.0.2.6.1", "16.0.3.2.0"))
        # Before 16.0.2.5.0 a helper did not sign requests for a database: it refuses this addon's.
        self.assertEqual(version_problem("16.0.2.4.1", "16.0.3.2.0")[0], "old")
        self.assertEqual(version_problem("17.0.1.0.0", "16.0.2.0.0")[0], "series")
        self.assertEqual(version_problem("16.0.1.0.0", "16.0.3.0.0")[0], "old")
        self.assertEqual(version_problem("", "16.0.2.0.0")[0], "unknown")
        settings = self.env["res.config.settings"]
        text = settings._version_text(version_problem("17.0.1.0.0", "16.0.2.0.0"), "17.0.1.0.0", "16.0.2.0.0")
        self.assertIn("install the helper of Odoo 16.0", text)


class TestOverviewHelperHealth(RealHelperMixin, TransactionCase):
    def test_overview_shows_the_helpers_health(self):
        overview = self.env["deployment.overview"].create({})
        self.assertTrue(overview.helper_reachable)
        self.assertIn("Reachable, version", overview.helper_status)
        self.assertNotIn("Failing", overview.helper_status)
        self.assertRegex(overview.helper_storage_free, r"^\d+\.\d (B|KiB|MiB|GiB|TiB)$")
        self.assertRegex(overview.helper_next_snapshot, r"^\d+\.\d (B|KiB|MiB|GiB|TiB)$")
        self.assertEqual(overview.helper_kept_databases, "none")
        self.assertEqual(overview.last_snapshot_age, "none yet")

    def test_test_connection_explains_the_versions(self):
        notification = self.env["res.config.settings"].create({}).action_deployment_test_connection()
        self.assertIn("works with this addon", notification["params"]["message"])

    def test_unreachable_helper_is_said_on_the_overview(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "deployment_rollback.helper_address", "unix:/nonexistent/odoo-rollback.sock"
        )
        overview = self.env["deployment.overview"].create({})
        self.assertFalse(overview.helper_reachable)
        self.assertIn("Not reachable", overview.helper_status)


class TestUnhealthyHelperSaysWhy(RealHelperMixin, TransactionCase):
    """A helper that answers but fails a check: both screens that show its health say which, with the
    helper's own words, not only a warning colour."""

    @classmethod
    def _helper_toml(cls):
        return '[health]\nurl = "http://127.0.0.1:9/web/login"\nattempts = 1\ntimeout = 1\n'

    def test_the_overview_and_test_connection_name_the_failing_check(self):
        overview = self.env["deployment.overview"].create({})
        notification = self.env["res.config.settings"].create({}).action_deployment_test_connection()

        self.assertRegex(overview.helper_status, r"^Reachable, version [\d.]+\. Failing: http: http://127\.0\.0\.1:9/")
        self.assertIn("Failing: http: http://127.0.0.1:9/web/login", notification["params"]["message"])
        self.assertEqual(notification["params"]["type"], "warning")
        self.assertTrue(notification["params"]["sticky"])
