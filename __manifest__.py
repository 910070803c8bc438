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
    ],
}
