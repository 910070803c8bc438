# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Who may make the helper act, asked as each kind of user over real XML-RPC, against a real helper.

A call is *refused* when Odoo answers with an AccessError and the helper's log shows no new request; it
is *allowed* when the helper was asked (its answer may still be an error, such as an unknown job).
"""

import json
import re
import xmlrpc.client

from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, new_test_user, tagged
from odoo.tests.common import TransactionCase

from .common import RealHelper

ACCESS_ERROR = 4  # odoo/addons/base/controllers/rpc.py, RPC_FAULT_CODE_ACCESS_ERROR
REQUEST_LINE = re.compile(r'"(GET|POST) /v1/')
UNKNOWN_SNAPSHOT = "20990101T000000Z-pre_deploy-abcdef"
GROUP_USER = "deployment_rollback.group_deployment_rollback_user"
GROUP_MANAGER = "deployment_rollback.group_deployment_rollback_manager"


@tagged("post_install", "-at_install")
class TestWhoMayMakeTheHelperAct(HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.helper = RealHelper(cls.env.cr.dbname)
        cls.addClassCleanup(cls.helper.stop)
        cls.users = {
            "portal": new_test_user(cls.env, login="rb_rpc_portal", groups="base.group_portal", password="portal-pw-1"),
            "internal": new_test_user(
                cls.env, login="rb_rpc_internal", groups="base.group_user", password="internal-pw-1"
            ),
            "deployment user": new_test_user(
                cls.env, login="rb_rpc_user", groups=f"base.group_user,{GROUP_USER}", password="user-pw-1"
            ),
            "deployment manager": new_test_user(
                cls.env, login="rb_rpc_manager", groups=f"base.group_user,{GROUP_MANAGER}", password="manager-pw-1"
            ),
        }
        snapshots = cls.env["deployment.snapshot"]._helper_sync()
        cls.snapshot = snapshots.create(
            {"kind": "pre_deploy", "state": "verified", "helper_id": UNKNOWN_SNAPSHOT, "database": cls.env.cr.dbname}
        )
        cls.capturing = snapshots.create({"kind": "manual", "state": "capturing", "helper_job_id": "job-unknown"})
        drills = cls.env["deployment.drill"]._helper_sync()
        cls.planned_drill = drills.create({"snapshot_id": cls.snapshot.id})
        cls.running_drill = drills.create({"state": "running", "helper_job_id": "job-unknown"})
        cls.running_rollback = (
            cls.env["deployment.rollback"]
            ._helper_sync()
            .create({"reason": "test", "decision": "rollback", "state": "running", "helper_job_id": "job-unknown"})
        )

    def setUp(self):
        super().setUp()
        patcher = self.helper.patch_odoo(self.env)
        patcher.start()
        self.addCleanup(patcher.stop)

    def _requests_seen(self):
        return len(REQUEST_LINE.findall(self.helper.log.read_text()))

    def _call(self, who, model, method, args):
        """(fault code or None, whether the helper was asked) of one XML-RPC call as *who*."""
        user = self.users[who]
        password = {"portal": "portal-pw-1", "internal": "internal-pw-1"}.get(who) or (
            "user-pw-1" if who == "deployment user" else "manager-pw-1"
        )
        before = self._requests_seen()
        try:
            self.xmlrpc_object.execute_kw(self.env.cr.dbname, user.id, password, model, method, args)
            fault = None
        except xmlrpc.client.Fault as exc:
            fault = exc.faultCode
        return fault, self._requests_seen() > before

    def _calls(self):
        """(what, model, method, args, the helper's verb, starts a real job)."""
        return [
            ("test connection", "res.config.settings", "action_deployment_test_connection", [[]], "GET", False),
            ("journal import", "deployment.operation", "action_import_journal", [], "GET", False),
            ("snapshot refresh", "deployment.snapshot", "action_refresh", [[self.capturing.id]], "GET", False),
            ("drill refresh", "deployment.drill", "action_refresh", [[self.running_drill.id]], "GET", False),
            ("rollback refresh", "deployment.rollback", "action_refresh", [[self.running_rollback.id]], "GET", False),
            # The checklist measures the helper's health and log as it opens.
            ("rollback checklist", "deployment.rollback.wizard", "create", [{}], "GET", False),
            ("verify", "deployment.snapshot", "action_verify", [[self.snapshot.id]], "POST", False),
            ("drill", "deployment.drill", "action_run_now", [[self.planned_drill.id]], "POST", False),
            ("capture", "deployment.snapshot", "action_capture", [], "POST", True),
            ("capture from settings", "res.config.settings", "action_deployment_capture_snapshot", [[]], "POST", True),
            ("capture from the overview", "deployment.overview", "action_capture_snapshot", [[]], "POST", True),
            ("drill from the overview", "deployment.drill.overview", "action_run_now", [[]], "POST", True),
        ]

    def test_portal_and_internal_users_can_make_the_helper_do_nothing(self):
        for who in ("portal", "internal"):
            for what, model, method, args, _verb, _job in self._calls():
                with self.subTest(who=who, call=what):
                    fault, asked = self._call(who, model, method, args)
                    self.assertEqual(fault, ACCESS_ERROR)
                    self.assertFalse(asked, "the helper was asked")

    def test_deployment_users_read_and_only_managers_make_it_act(self):
        for what, model, method, args, verb, _job in self._calls():
            with self.subTest(who="deployment user", call=what):
                fault, asked = self._call("deployment user", model, method, args)
                if verb == "GET":
                    self.assertNotEqual(fault, ACCESS_ERROR)
                    self.assertTrue(asked, "the helper was not asked")
                else:
                    self.assertEqual(fault, ACCESS_ERROR)
                    self.assertFalse(asked, "the helper was asked")
        for what, model, method, args, _verb, starts_job in self._calls():
            if starts_job:
                continue  # a manager's capture is the integration tests' subject (test_helper_integration)
            with self.subTest(who="deployment manager", call=what):
                fault, asked = self._call("deployment manager", model, method, args)
                self.assertNotEqual(fault, ACCESS_ERROR)
                self.assertTrue(asked, "the helper was not asked")

    def test_only_deployment_users_compare_a_snapshot_with_live_data(self):
        for who, refused in (("portal", True), ("internal", True), ("deployment user", False)):
            with self.subTest(who=who):
                fault, _asked = self._call(who, "deployment.snapshot", "action_compare_live", [[self.snapshot.id]])
                self.assertEqual(fault, ACCESS_ERROR if refused else None)

    def test_json_rpc_of_the_web_client_is_refused_the_same_way(self):
        for who, password in (("portal", "portal-pw-1"), ("internal", "internal-pw-1")):
            self.authenticate(self.users[who].login, password)
            for model, method, args in (
                ("res.config.settings", "action_deployment_test_connection", [[]]),
                ("deployment.operation", "action_import_journal", []),
            ):
                with self.subTest(who=who, method=method):
                    before = self._requests_seen()
                    payload = {
                        "jsonrpc": "2.0",
                        "method": "call",
                        "params": {"model": model, "method": method, "args": args, "kwargs": {}},
                    }
                    reply = self.url_open(
                        "/web/dataset/call_kw", data=json.dumps(payload), headers={"Content-Type": "application/json"}
                    ).json()
                    self.assertEqual(reply["error"]["data"]["name"], "odoo.exceptions.AccessError")
                    self.assertEqual(self._requests_seen(), before, "the helper was asked")

    def test_nobody_calls_the_client_directly(self):
        fault, asked = self._call(
            "deployment manager", "deployment.rollback.helper", "_request", ["POST", "/v1/drills"]
        )
        self.assertEqual(fault, ACCESS_ERROR)
        self.assertFalse(asked)

    def test_a_rollback_out_of_draft_is_evidence_even_over_rpc(self):
        for who in ("deployment user", "deployment manager"):
            with self.subTest(who=who):
                fault, _asked = self._call(
                    who, "deployment.rollback", "write", [[self.running_rollback.id], {"reason": "rewritten"}]
                )
                self.assertIsNotNone(fault)
        self.assertEqual(self.running_rollback.reason, "test")


class TestDecisionRecord(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, login="rb_evidence_user", groups=f"base.group_user,{GROUP_USER}")
        cls.manager = new_test_user(cls.env, login="rb_evidence_manager", groups=f"base.group_user,{GROUP_MANAGER}")
        cls.other = new_test_user(cls.env, login="rb_evidence_other", groups=f"base.group_user,{GROUP_USER}")

    def _rollback(self, state):
        """A rollback in *state*, in this test's environment (the privileged path's token left behind)."""
        return (
            self.env["deployment.rollback"]
            ._helper_sync()
            .create(
                {
                    "reason": "invoices fail",
                    "decision": "rollback",
                    "decided_by_id": self.manager.id,
                    "participant_ids": [(6, 0, [self.manager.id])],
                    "requested_by_id": self.manager.id,
                    "rto_target_minutes": 15,
                    "rto_max_minutes": 30,
                    "state": state,
                }
            )
            .with_env(self.env)
        )

    def test_decision_fields_are_read_only_once_out_of_draft_even_for_the_helper_path(self):
        for state in ("running", "done", "failed", "cancelled"):
            rollback = self._rollback(state)
            for vals in (
                {"reason": "something nicer"},
                {"decided_by_id": self.user.id},
                {"requested_by_id": self.user.id},
                {"participant_ids": [(4, self.user.id)]},
                {"rto_target_minutes": 60},
                {"rto_max_minutes": 90},
                {"snapshot_helper_id": "another"},
                {"decision": "monitor"},
            ):
                for env in (rollback.with_user(self.manager), rollback.sudo(), rollback._helper_sync()):
                    with (
                        self.subTest(state=state, vals=vals, su=env.env.su),
                        self.assertRaisesRegex(UserError, "Post a correction in its chatter"),
                    ):
                        env.write(vals)
            self.assertEqual(rollback.reason, "invoices fail")
            self.assertEqual(rollback.participant_ids, self.manager)
            # The chatter stays open for the correction.
            rollback.with_user(self.manager).message_post(body="Correction: the reason was the bank sync.")

    def test_every_change_in_draft_is_tracked(self):
        rollback = self._rollback("draft")
        # As if created in an earlier transaction: Odoo tracks nothing in the transaction that creates.
        self.env.flush_all()
        self.env.cr.precommit.run()
        rollback.with_user(self.manager).write(
            {
                "reason": "bank sync fails",
                "requested_by_id": self.user.id,
                "rto_target_minutes": 20,
                "participant_ids": [(4, self.other.id)],
            }
        )
        self.env.flush_all()
        self.env.cr.precommit.run()  # tracking values are written when the transaction commits
        rollback.invalidate_recordset(["message_ids"])
        tracked = rollback.message_ids.tracking_value_ids.mapped("field.name")
        for name in ("reason", "requested_by_id", "rto_target_minutes"):
            self.assertIn(name, tracked)
        self.assertTrue(any(self.other.name in (m.body or "") for m in rollback.message_ids))

    def test_only_managers_cancel(self):
        rollback = self._rollback("draft")
        with self.assertRaises(AccessError):
            rollback.with_user(self.user).action_cancel()
        self.assertEqual(rollback.state, "draft")
        rollback.with_user(self.manager).action_cancel()
        self.assertEqual(rollback.state, "cancelled")

    def test_protected_fields_hold_under_sudo(self):
        snapshot = (
            self.env["deployment.snapshot"]
            ._helper_sync()
            .create({"kind": "manual", "state": "verified", "helper_id": UNKNOWN_SNAPSHOT})
            .with_env(self.env)
        )
        rollback = self._rollback("running")
        for record, vals in (
            (snapshot, {"state": "failed"}),
            (snapshot, {"helper_id": "forged"}),
            (rollback, {"state": "done"}),
            (rollback, {"lost_rows_total": 0}),
        ):
            with self.subTest(model=record._name, vals=vals), self.assertRaises(AccessError):
                record.sudo().write(vals)
        with self.assertRaises(AccessError):
            self.env["deployment.snapshot"].sudo().create({"kind": "manual", "state": "verified"})
        with self.assertRaises(AccessError):
            self.env["deployment.operation"].sudo().create({"helper_id": "forged", "kind": "restore"})
        self.assertEqual(snapshot.state, "verified")
        self.assertEqual(rollback.state, "running")
