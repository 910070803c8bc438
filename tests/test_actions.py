# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Every menu and action of the addon opens titled by its own name: none opens an unsaved form titled "New"."""

from odoo.exceptions import UserError
from odoo.tests.common import TransactionCase, new_test_user, tagged


@tagged("post_install", "-at_install")
class TestActionsTitled(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = new_test_user(
            cls.env,
            login="rb_titles",
            groups="base.group_user,base.group_system,deployment_rollback.group_deployment_rollback_manager",
        )

    def _module_records(self, model):
        data = self.env["ir.model.data"].search([("module", "=", "deployment_rollback"), ("model", "=", model)])
        return self.env[model].browse(data.mapped("res_id")).exists()

    def _assert_titled(self, action, where):
        """An action dict or record opens with a title: its name, and a saved record when it opens a form."""
        self.assertTrue(action["name"], f"{where} has no name")
        modes = (action.get("view_mode") or "").split(",")
        if modes[0] == "form" and action.get("target") != "new":
            # A full-screen form on no record is a new one: Odoo titles it "New".
            self.assertTrue(action.get("res_id"), f"{where} opens an unsaved {action['res_model']} titled 'New'")
            record = self.env[action["res_model"]].browse(action["res_id"])
            self.assertNotIn(
                action["res_model"], record.display_name, f"{where} is titled by the model's technical name"
            )

    def test_every_window_action_has_a_title_and_no_new_record(self):
        actions = self._module_records("ir.actions.act_window")
        self.assertTrue(actions)
        for action in actions:
            self._assert_titled(action.read()[0], f"action {action.xml_id}")

    def test_every_menu_opens_titled(self):
        menus = self._module_records("ir.ui.menu").filtered("action")
        self.assertIn(self.env.ref("deployment_rollback.deployment_drill_overview_menu"), menus)
        opened = []
        for menu in menus:
            action = menu.action
            if action._name == "ir.actions.server":
                try:
                    with self.cr.savepoint():
                        result = action.with_user(self.manager).with_context(active_model=action.model_name).run()
                except UserError:
                    # The menus that ask the helper (kept databases, journal import, a drill) need one running:
                    # test_helper_integration walks them.
                    continue
                if not result:
                    continue
                self._assert_titled(result, f"menu {menu.complete_name}")
            else:
                self._assert_titled(action.read()[0], f"menu {menu.complete_name}")
            opened.append(menu)
        self.assertIn(self.env.ref("deployment_rollback.deployment_drill_overview_menu"), opened)

    def test_drills_by_quarter_open_titled_with_every_quarter(self):
        menu = self.env.ref("deployment_rollback.deployment_drill_overview_menu")
        result = menu.action.with_user(self.manager).run()
        self.assertEqual(result["name"], "Drills by Quarter")
        self.assertEqual(result["res_model"], "deployment.drill.overview")
        overview = self.env["deployment.drill.overview"].browse(result["res_id"])
        self.assertTrue(overview.exists(), "the overview opened is a saved record")
        self.assertEqual(overview.display_name, "Drills by Quarter")
        # Eight quarters (this year and the last), a quarter without a drill listed as missing or upcoming.
        self.assertEqual(len(overview.line_ids), 8)
        states = overview.line_ids.mapped("state")
        self.assertLessEqual(set(states), {"done", "failed", "missing", "upcoming"})
        self.assertIn("missing", states, "last year's quarters had no drill in this database")
        # No "New" button on it either: a second overview would be an unsaved one, titled "New".
        arch = self.env["deployment.drill.overview"].get_view(view_type="form")["arch"]
        self.assertIn('create="0"', arch)
        # The dashboard's card opens the same screen.
        from_dashboard = self.env["deployment.overview"].with_user(self.manager).create({}).action_open_drills()
        self.assertEqual(from_dashboard["name"], "Drills by Quarter")
        self.assertTrue(from_dashboard["res_id"])
