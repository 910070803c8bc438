# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Drop the settings no code reads any more.

Up to 16.0.2 Odoo stored what the helper does; since 16.0.3 the helper's configuration file is the one
source of truth and Settings shows it read-only from GET /v1/config: the RTO target and maximum
([rto]), the tracked tables ([counts] tables) and the retention ([retention]). Their old keys stayed in
ir.config_parameter, where an administrator would take them for settings that still act.
"""

import logging

from odoo import SUPERUSER_ID, api

_logger = logging.getLogger(__name__)

OBSOLETE_KEYS = (
    "deployment_rollback.rto_target_minutes",
    "deployment_rollback.rto_max_minutes",
    "deployment_rollback.tracked_models",
    "deployment_rollback.retention",
)


def remove_obsolete_settings(env):
    """Delete exactly OBSOLETE_KEYS; return {key: value} of what was deleted, for the log and the tests."""
    # Through the ORM: unlink() also empties get_param's cache, which a DELETE would leave stale.
    params = env["ir.config_parameter"].sudo().search([("key", "in", OBSOLETE_KEYS)])
    removed = {param.key: param.value for param in params}
    params.unlink()
    for key in sorted(removed):
        # The value is logged so that an operator who still wants it knows what it was.
        _logger.info("Removed the obsolete setting %s (it was %r)", key, removed[key])
    return removed


def migrate(cr, version):
    if not version:
        return
    remove_obsolete_settings(api.Environment(cr, SUPERUSER_ID, {}))
