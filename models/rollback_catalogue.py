# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The runbook's rollback triggers and post-rollback task lists, as plain data.

Kept out of the models so that the rules read like the runbook and are tested on their own: the
wizard, the rollback record and the measurements only look codes up here.
"""

from collections import namedtuple
from datetime import timedelta


def _lt(source):
    """Marks a text for Odoo's translation export (it extracts ``_lt("...")`` calls); the models translate it
    with ``_()`` when they show it, in the reader's language."""
    return source


IMMEDIATE = "immediate"
TEAM = "team"

Trigger = namedtuple("Trigger", "code category name")

# Immediate triggers need no discussion: any one of them decides "rollback".
# Team triggers need a decision, who took it and who took part.
TRIGGERS = (
    Trigger("odoo_not_starting", IMMEDIATE, _lt("Odoo will not start after 3 attempts")),
    Trigger("database_corruption", IMMEDIATE, _lt("Database corruption")),
    Trigger("nginx_not_starting", IMMEDIATE, _lt("nginx will not start")),
    Trigger("migration_data_errors", IMMEDIATE, _lt("Migration errors affecting data")),
    Trigger("backup_validation_failed", IMMEDIATE, _lt("Backup restoration fails validation")),
    Trigger("db_transactions_failing", IMMEDIATE, _lt("Database rollback transactions failing")),
    Trigger("invoices_blocked", IMMEDIATE, _lt("Cannot create invoices")),
    Trigger("tax_submission_blocked", IMMEDIATE, _lt("Cannot submit to the tax authority")),
    Trigger("email_broken", IMMEDIATE, _lt("Email delivery completely broken")),
    Trigger("pos_broken", IMMEDIATE, _lt("POS completely non-functional")),
    Trigger("slow_response", TEAM, _lt("Response time over the threshold (over 5x normal)")),
    Trigger("cpu_high", TEAM, _lt("CPU over the threshold, sustained")),
    Trigger("memory_high", TEAM, _lt("Memory over the threshold")),
    Trigger("query_timeouts", TEAM, _lt("Database queries timing out")),
    Trigger("partial_loss", TEAM, _lt("Partial functionality loss")),
    Trigger("einvoice_failures", TEAM, _lt("Invoice submission failures over the threshold")),
    Trigger("email_failures", TEAM, _lt("Email delivery failures over the threshold")),
    Trigger("error_rate_rising", TEAM, _lt("Error rate rising")),
)
TRIGGERS_BY_CODE = {trigger.code: trigger for trigger in TRIGGERS}

DECISION_ROLLBACK = "rollback"

# The helper's restore steps (helper/src/odoo_rollback/restore.py STEPS) as people read them; a step the
# helper adds later shows its own name until it is listed here.
RESTORE_STEPS = {
    "preflight": _lt("Preflight checks"),
    "standby": _lt("Look for a ready standby of the snapshot"),
    "staging": _lt("Restore into a staging database"),
    "check": _lt("Compare the staging database with the snapshot"),
    "stop": _lt("Stop the services"),
    "standby_recheck": _lt("Prove the standby unchanged"),
    "lost_rows": _lt("Export the rows the restore replaces"),
    "swap": _lt("Put the restored database in place"),
    "code": _lt("Check out the snapshot's code"),
    "verify_live": _lt("Check the restored database"),
    "start": _lt("Start the services"),
    "undo": _lt("Put the previous database back"),
    "restore": _lt("The restore as a whole"),
    # What the helper journals beside the steps: the swap's rename, an undo's clean-up and restart, a resume.
    "swap_database": _lt("Rename the databases"),
    "cleanup": _lt("Remove the staging copy"),
    "restart": _lt("Start the services again"),
    "resume": _lt("Resume after an interruption"),
}


def required_decision(held_codes):
    """The decision the runbook imposes for the triggers that hold, or None when the team decides."""
    if any(TRIGGERS_BY_CODE[code].category == IMMEDIATE for code in held_codes):
        return DECISION_ROLLBACK
    return None


# What the team does after a rollback, by horizon: (key, label, due after, tasks).
POST_ROLLBACK_TASKS = (
    (
        "immediate",
        _lt("Immediate"),
        timedelta(hours=4),
        (
            _lt("Confirm with key users that they can log in, invoice and send e-mail"),
            _lt("Review the lost-rows export and re-enter the records created after the snapshot"),
            _lt("Watch the error log and response times of the restored deployment"),
            _lt("Keep the replaced database and filestore aside until the analysis is done"),
        ),
    ),
    (
        "short_term",
        _lt("Short-term"),
        timedelta(hours=24),
        (
            _lt("Find the root cause of the failed deployment"),
            _lt("Reproduce and fix the failure on a staging copy before any new attempt"),
            _lt("Write the post-mortem draft"),
        ),
    ),
    (
        "medium_term",
        _lt("Medium-term"),
        timedelta(days=7),
        (
            _lt("Hold the post-mortem review and assign its action items"),
            _lt("Add the missing test or monitoring that would have caught the failure"),
            _lt("Update the deployment runbook and drop the replaced database once it is no longer needed"),
        ),
    ),
)
