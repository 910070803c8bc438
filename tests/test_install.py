from odoo.tests.common import TransactionCase


class TestInstall(TransactionCase):
    def test_groups_exist_and_imply_each_other(self):
        manager = self.env.ref("deployment_rollback.group_deployment_rollback_manager")
        user = self.env.ref("deployment_rollback.group_deployment_rollback_user")
        self.assertIn(user, manager.implied_ids)
        self.assertIn(manager, self.env.ref("base.user_admin").groups_id)
