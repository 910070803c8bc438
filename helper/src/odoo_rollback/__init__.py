"""odoo-rollback: the privileged helper of the deployment_rollback Odoo addon.

It never imports Odoo: it must work when Odoo will not start.
"""

__version__ = "16.0.2.5.0"
