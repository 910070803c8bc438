# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from datetime import date, datetime, timedelta, timezone

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests.common import Form, TransactionCase, new_test_user

REPORT = "deployment_rollback.deployment_postmortem_report"


class TestDeploymentPostmortem(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(
            cls.env,
            login="pm_user",
            groups="base.group_user,deployment_rollback.group_deployment_rollback_user",
        )
        cls.owner = new_test_user(
            cls.env,
            login="pm_owner",
            groups="base.group_user,deployment_rollback.group_deployment_rollback_user",
        )
        cls.todo = cls.env.ref("mail.mail_activity_data_todo")

    def _postmortem(self, **vals):
        return (
            self.env["deployment.postmortem"]
            .with_user(self.user)
            .create({"name": "Rollback of 16.0.3", "root_cause": "A migration dropped a column.", **vals})
        )

    def _activities(self, postmortem):
        return self.env["mail.activity"].search(
            [("res_model", "=", "deployment.postmortem"), ("res_id", "=", postmortem.id)]
        )

    def test_states_draft_review_done(self):
        postmortem = self._postmortem()
        self.assertEqual(postmortem.state, "draft")
        with self.assertRaisesRegex(UserError, "submit it for review first"):
            postmortem.action_done()
        postmortem.action_submit_review()
        self.assertEqual(postmortem.state, "review")
        postmortem.action_done()
        self.assertEqual(postmortem.state, "done")
        postmortem.action_reset_draft()
        self.assertEqual(postmortem.state, "draft")

    def test_review_needs_a_root_cause(self):
        postmortem = self._postmortem(root_cause="  ")
        with self.assertRaisesRegex(UserError, "root cause"):
            postmortem.action_submit_review()
        self.assertEqual(postmortem.state, "draft")

    def test_done_with_an_open_action_item_needs_a_reason(self):
        postmortem = self._postmortem()
        with Form(postmortem.with_user(self.user)) as form, form.action_ids.new() as line:
            line.name = "Test migrations on a copy of production"
            line.owner_id = self.owner
            line.due_date = date(2026, 12, 15)
        postmortem.action_submit_review()
        with self.assertRaisesRegex(UserError, "1 action items are still open .Test migrations"):
            postmortem.action_done()
        self.assertEqual(postmortem.state, "review")

        with Form(postmortem.with_user(self.user)) as form:
            form.open_actions_reason = "Tracked in the platform team's backlog."
        postmortem.action_done()
        self.assertEqual(postmortem.state, "done")

    def test_created_with_an_action_item_of_its_author(self):
        # As the form saves a new post-mortem: the action item comes with it, owned by whoever writes it.
        form = Form(self.env["deployment.postmortem"].with_user(self.user))
        form.name = "Rollback of 16.0.4"
        with form.action_ids.new() as line:
            line.name = "Alert on failed migrations"
            line.due_date = date(2026, 12, 1)
        postmortem = form.save()
        self.assertEqual(postmortem.action_ids.owner_id, self.user)
        activity = self._activities(postmortem)
        self.assertEqual(activity, postmortem.action_ids.activity_id)
        self.assertEqual((activity.user_id, activity.summary), (self.user, "Alert on failed migrations"))
        self.assertEqual(postmortem.message_partner_ids, self.user.partner_id)

    def test_done_once_every_action_item_is_closed(self):
        postmortem = self._postmortem()
        actions = self.env["deployment.postmortem.action"].with_user(self.user)
        done = actions.create(
            {"postmortem_id": postmortem.id, "name": "Alert on failed migrations", "owner_id": self.owner.id,
             "due_date": date(2026, 12, 1)}
        )  # fmt: skip
        dropped = actions.create(
            {"postmortem_id": postmortem.id, "name": "Rewrite the deploy script", "owner_id": self.owner.id,
             "due_date": date(2026, 12, 1)}
        )  # fmt: skip
        postmortem.action_submit_review()
        done.action_mark_done()
        with self.assertRaisesRegex(UserError, "Rewrite the deploy script"):
            postmortem.action_done()
        dropped.action_cancel()
        postmortem.action_done()
        self.assertEqual(postmortem.state, "done")

    def test_action_item_is_a_todo_of_its_owner(self):
        postmortem = self._postmortem()
        action = (
            self.env["deployment.postmortem.action"]
            .with_user(self.user)
            .create(
                {
                    "postmortem_id": postmortem.id,
                    "name": "Add a pre-deploy check",
                    "owner_id": self.owner.id,
                    "due_date": date(2026, 12, 20),
                }
            )
        )
        activity = self._activities(postmortem)
        self.assertEqual(len(activity), 1)
        self.assertEqual(activity, action.activity_id)
        self.assertEqual(activity.user_id, self.owner)
        self.assertEqual(activity.activity_type_id, self.todo)
        self.assertEqual(activity.date_deadline, date(2026, 12, 20))
        self.assertEqual(activity.summary, "Add a pre-deploy check")

        action.write({"owner_id": self.user.id, "due_date": date(2027, 1, 10)})
        activity = self._activities(postmortem)
        self.assertEqual(len(activity), 1, "a new owner takes the To Do over, none is added")
        self.assertEqual(activity.user_id, self.user)
        self.assertEqual(activity.date_deadline, date(2027, 1, 10))

        action.with_user(self.user).action_mark_done()
        self.assertEqual(action.state, "done")
        self.assertFalse(self._activities(postmortem))
        self.assertIn("Action item done: Add a pre-deploy check", postmortem.message_ids[0].body)
        with self.assertRaisesRegex(UserError, "Only open action items"):
            action.action_mark_done()

        action.action_reopen()
        self.assertEqual(self._activities(postmortem).user_id, self.user)
        action.action_cancel()
        self.assertFalse(self._activities(postmortem))

    def test_users_cannot_delete_postmortems(self):
        postmortem = self._postmortem()
        with self.assertRaises(AccessError):
            postmortem.with_user(self.user).unlink()

    def test_incident_cannot_end_before_it_starts(self):
        with self.assertRaisesRegex(ValidationError, "cannot end before it starts"):
            self._postmortem(incident_start=datetime(2026, 11, 2, 10), incident_end=datetime(2026, 11, 2, 9))

    def test_prefill_from_a_rollback(self):
        utc = timezone.utc
        cet = timezone(timedelta(hours=1))
        data = {
            "name": "16.0.3 deploy",
            "started_at": datetime(2026, 11, 20, 21, 30, tzinfo=utc),
            "finished_at": datetime(2026, 11, 20, 22, 42, 10),
            "services": ["odoo", "odoo-worker"],
            "data_loss": True,
            "steps": [
                {
                    "name": "stop services",
                    "started_at": datetime(2026, 11, 20, 22, 31, tzinfo=cet),  # 21:31 UTC
                    "finished_at": datetime(2026, 11, 20, 21, 31, 20),
                    "result": "done",
                },
                {"name": "restore database", "started_at": datetime(2026, 11, 20, 21, 32), "result": "failed"},
            ],
        }
        vals = self.env["deployment.postmortem"]._prefill_vals(data)
        postmortem = self.env["deployment.postmortem"].create(vals)
        self.assertEqual(postmortem.name, "Rollback 16.0.3 deploy")
        self.assertEqual(postmortem.date, date(2026, 11, 20))
        self.assertEqual(postmortem.incident_start, datetime(2026, 11, 20, 21, 30))
        self.assertEqual(postmortem.duration_minutes, 72)
        self.assertEqual(postmortem.impact_minutes, 72)
        self.assertEqual(postmortem.services_affected, "odoo\nodoo-worker")
        self.assertTrue(postmortem.data_loss)
        self.assertEqual(
            [(line.time, line.event) for line in postmortem.timeline_ids],
            [
                (datetime(2026, 11, 20, 21, 31), "stop services: done (20 s)"),
                (datetime(2026, 11, 20, 21, 32), "restore database: failed"),
            ],
        )

    def test_prefill_with_little_known(self):
        vals = self.env["deployment.postmortem"]._prefill_vals({"name": "hotfix"})
        postmortem = self.env["deployment.postmortem"].create(vals)
        self.assertFalse(postmortem.incident_start)
        self.assertFalse(postmortem.timeline_ids)
        self.assertFalse(postmortem.data_loss)
        with self.assertRaisesRegex(UserError, "from a dictionary"):
            self.env["deployment.postmortem"]._prefill_vals(["not", "a", "dict"])
        with self.assertRaisesRegex(UserError, "is not a date and time"):
            self.env["deployment.postmortem"]._prefill_vals({"name": "x", "started_at": "yesterday"})

    def test_pdf_report_prints_the_postmortem(self):
        postmortem = self._postmortem(
            incident_start=datetime(2026, 11, 2, 9, 0),
            incident_end=datetime(2026, 11, 2, 9, 45),
            went_well="The snapshot was verified before the deploy.",
            timeline_ids=[(0, 0, {"time": datetime(2026, 11, 2, 9, 5), "event": "Rollback started"})],
        )
        self.env["deployment.postmortem.action"].create(
            {
                "postmortem_id": postmortem.id,
                "name": "Dry-run migrations in CI",
                "owner_id": self.owner.id,
                "due_date": date(2026, 12, 1),
            }
        )
        reports = self.env["ir.actions.report"]
        html, kind = reports._render_qweb_html(REPORT, postmortem.ids)
        self.assertEqual(kind, "html")
        text = html.decode()
        self.assertIn("A migration dropped a column.", text)
        self.assertIn("Dry-run migrations in CI", text)
        self.assertIn("Rollback started", text)
        self.assertIn("pm_owner", text)

        # Odoo renders HTML instead of a PDF in test mode unless forced.
        pdf, kind = reports.with_context(force_report_rendering=True)._render_qweb_pdf(REPORT, postmortem.ids)
        self.assertEqual(kind, "pdf")
        self.assertTrue(pdf.startswith(b"%PDF"), pdf[:20])
