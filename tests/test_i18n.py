# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""What a Spanish user reads once Spanish is loaded the way Settings > Languages loads it."""

from pathlib import Path

import polib
from lxml import etree
from odoo.addons.deployment_rollback.models.rollback_catalogue import POST_ROLLBACK_TASKS, TRIGGERS
from odoo.exceptions import UserError
from odoo.tests.common import TransactionCase, new_test_user
from odoo.tools.safe_eval import safe_eval

SPANISH = "es_ES"


class TestSpanishTranslation(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang(SPANISH)
        cls.env["ir.module.module"].search([("name", "=", "deployment_rollback")])._update_translations([SPANISH])
        cls.es = cls.env(context=dict(cls.env.context, lang=SPANISH))

    def test_root_menu_is_spanish_and_english_is_kept(self):
        menu = self.env.ref("deployment_rollback.deployment_rollback_menu_root")
        self.assertEqual(menu.with_env(self.es).name, "Despliegues")
        self.assertEqual(menu.with_context(lang="en_US").name, "Deployments")

    def test_rollback_field_labels_and_selection_values_are_spanish(self):
        fields = self.es["deployment.rollback"].fields_get(["reason", "decision", "state"], ["string", "selection"])
        self.assertEqual(fields["reason"]["string"], "Motivo")
        self.assertEqual(fields["decision"]["string"], "Decisión")
        self.assertEqual(
            dict(fields["decision"]["selection"]),
            {"rollback": "Revertir", "fix_forward": "Corregir sin revertir", "monitor": "Seguir vigilando"},
        )
        self.assertEqual(dict(fields["state"]["selection"])["draft"], "Borrador")

    def test_rollback_notice_template_is_spanish_with_its_placeholders(self):
        template = self.env.ref("deployment_rollback.mail_template_rollback_notice").with_env(self.es)
        self.assertEqual(template.subject, "[Reversión iniciada] {{ object.name }} en {{ object.database }}")
        # The body is one translated block: its QWeb must survive untouched or the e-mail breaks.
        self.assertIn("Se ha iniciado una reversión de", template.body_html)
        self.assertIn("t-out=\"object.database or ''\"", template.body_html)

        rollback = (
            self.env["deployment.rollback"]
            ._helper_sync()
            .create({"reason": "No se pueden validar facturas", "decision": "rollback", "database": "prod"})
        )
        rendered = template._render_field("subject", rollback.ids)[rollback.id]
        self.assertEqual(rendered, f"[Reversión iniciada] {rollback.name} en prod")
        body = template._render_field("body_html", rollback.ids)[rollback.id]
        self.assertIn("<strong>Motivo:</strong> No se pueden validar facturas", body)
        self.assertIn("<strong>Estado:</strong> Borrador", body)

    def test_error_raised_in_code_is_spanish(self):
        postmortem = self.env["deployment.postmortem"].create({"name": "Reversión de la 16.0.3"})
        with self.assertRaisesRegex(UserError, "^Escriba la causa raíz antes de enviar el análisis post-mortem"):
            postmortem.with_env(self.es).action_submit_review()

    def test_every_window_of_the_module_opens_in_spanish(self):
        # Translated view terms carry markup; a broken one would stop the view from opening.
        actions = self.env["ir.actions.act_window"].search([("res_model", "like", "deployment.%")])
        self.assertTrue(actions)
        for action in actions:
            views = [(False, mode) for mode in action.view_mode.split(",")] + [(False, "search")]
            for view_type, view in self.es[action.res_model].get_views(views)["views"].items():
                with self.subTest(action=action.name, view_type=view_type):
                    etree.fromstring(view["arch"])
        settings = self.es["res.config.settings"].get_views([(False, "form")])["views"]["form"]["arch"]
        self.assertIn('<span class="o_form_label">Comunicación y escalado</span>', settings)
        self.assertIn("Reversión de despliegues", settings)

    def test_postmortem_report_and_its_file_name_are_spanish(self):
        postmortem = self.env["deployment.postmortem"].create(
            {"name": "Reversión de la 16.0.3", "root_cause": "Una migración borró una columna."}
        )
        report = self.es["ir.actions.report"]._get_report("deployment_rollback.deployment_postmortem_report")
        html, _kind = report._render_qweb_html(report.report_name, postmortem.ids)
        self.assertIn("Causa raíz", html.decode())
        self.assertIn("Una migración borró una columna.", html.decode())
        file_name = safe_eval(report.print_report_name, {"object": postmortem})
        self.assertEqual(file_name, "Análisis post-mortem - Reversión de la 16.0.3")


class TestCostaRicanSpanish(TransactionCase):
    """The runbook's own users are in Costa Rica: es_CR reads the es translations (Odoo's fallback)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("es_CR")
        cls.env["ir.module.module"].search([("name", "=", "deployment_rollback")])._update_translations(["es_CR"])
        cls.user = new_test_user(
            cls.env,
            login="rb_tica",
            groups="base.group_user,deployment_rollback.group_deployment_rollback_manager",
            context={"lang": "es_CR"},
        )
        cls.user.lang = "es_CR"

    def test_every_message_of_the_module_is_translated(self):
        # OCA's po-pretty-format empties a translation equal to its source: these read the same in Spanish.
        same_in_spanish = {
            "%(event)s (%(seconds)s s)",
            "CPU (%)",
            "Error",
            "ID",
            "Manual",
            "No",
            "RTO",
            "Total",
            "min",
            "min,",
        }
        po = Path(__file__).resolve().parent.parent / "i18n" / "es.po"
        untranslated = [
            entry.msgid
            for entry in polib.pofile(str(po))
            if entry.msgid and not entry.obsolete and not entry.msgstr and entry.msgid not in same_in_spanish
        ]
        self.assertEqual(untranslated, [])

    def test_checklist_triggers_and_menus_are_spanish(self):
        env = self.env(user=self.user, context={"lang": "es_CR"})
        menu = env.ref("deployment_rollback.deployment_rollback_menu_root")
        self.assertEqual(menu.name, "Despliegues")
        wizard = env["deployment.rollback.wizard"].create({})
        names = dict(zip(wizard.line_ids.mapped("code"), wizard.line_ids.mapped("name"), strict=True))
        self.assertEqual(len(names), 18)
        self.assertEqual(names["migration_data_errors"], "Errores de migración que afectan los datos")
        self.assertEqual(names["nginx_not_starting"], "nginx no arranca")
        english = {trigger.name for trigger in TRIGGERS}
        self.assertFalse(english & set(names.values()), "every trigger name is Spanish")

    def test_follow_up_activities_are_in_the_deciders_language(self):
        rollback = (
            self.env["deployment.rollback"]
            ._helper_sync()
            .create({"reason": "Facturas sin líneas", "decision": "rollback", "decided_by_id": self.user.id})
        )
        rollback._schedule_follow_up()
        summaries = rollback.activity_ids.mapped("summary")
        self.assertIn("Corto plazo: Redactar el borrador del análisis post-mortem", summaries)
        english = {task for _key, _label, _due, tasks in POST_ROLLBACK_TASKS for task in tasks}
        self.assertFalse([s for s in summaries if s.split(": ", 1)[1] in english])

    def test_the_helpers_limits_of_lost_changes_read_in_spanish(self):
        # The helper writes them in English (it never imports Odoo); the Lost changes tab shows them translated.
        rollback = (
            self.env["deployment.rollback"]
            ._helper_sync()
            .create(
                {
                    "reason": "Facturas sin líneas",
                    "decision": "rollback",
                    "lost_rows_mode": "fallback",
                    "lost_limits": "the snapshot's replication slot rb_slot_7 is gone (dropped past the WAL ceiling?)\n"
                    "the values before a change are not known",
                }
            )
        )
        self.assertEqual(
            rollback.with_context(lang="es_CR").lost_limits_text,
            "la ranura de replicación rb_slot_7 de la instantánea ya no existe "
            "(¿se eliminó al superar el límite de WAL?)\nno se conocen los valores anteriores a un cambio",
        )
