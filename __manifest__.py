# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
{
    "name": "Deployment Rollback",
    "summary": "Pre-deploy snapshots, safe rollbacks, drills and post-mortems for Odoo deployments",
    "version": "16.0.1.0.0",
    "category": "Administration",
    "website": "https://github.com/deployment-rollback/deployment_rollback",
    "author": "deployment_rollback authors",
    "license": "LGPL-3",
    "application": True,
    "installable": True,
    "depends": ["base_setup", "mail"],
    "external_dependencies": {"python": []},
    "data": [
        "security/deployment_rollback_security.xml",
        "security/ir.model.access.csv",
        "views/deployment_snapshot_views.xml",
        "views/deployment_operation_views.xml",
        "views/deployment_postmortem_views.xml",
        "views/deployment_drill_views.xml",
        "views/res_config_settings_views.xml",
        "wizards/deployment_snapshot_compare.xml",
        "wizards/deployment_drill_overview.xml",
        "report/deployment_postmortem_report.xml",
        "views/deployment_rollback_menus.xml",
        "data/ir_cron_data.xml",
    ],
}
