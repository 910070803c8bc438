# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The runbook's rollback triggers and post-rollback task lists, as plain data.

Kept out of the models so that the rules read like the runbook and are tested on their own: the
wizard, the rollback record and the measurements only look codes up here.
"""

from collections import namedtuple
from datetime import timedelta

IMMEDIATE = "immediate"
TEAM = "team"

Trigger = namedtuple("Trigger", "code category name")

# Immediate triggers need no discussion: any one of them decides "rollback".
# Team triggers need a decision, who took it and who took part.
TRIGGERS = (
    Trigger("odoo_not_starting", IMMEDIATE, "Odoo will not start after 3 attempts"),
    Trigger("database_corruption", IMMEDIATE, "Database corruption"),
    Trigger("nginx_not_starting", IMMEDIATE, "nginx will not start"),
    Trigger("migration_data_errors", IMMEDIATE, "Migration errors affecting data"),
    Trigger("backup_validation_failed", IMMEDIATE, "Backup restoration fails validation"),
    Trigger("db_transactions_failing", IMMEDIATE, "Database rollback transactions failing"),
    Trigger("invoices_blocked", IMMEDIATE, "Cannot create invoices"),
    Trigger("tax_submission_blocked", IMMEDIATE, "Cannot submit to the tax authority"),
    Trigger("email_broken", IMMEDIATE, "Email delivery completely broken"),
    Trigger("pos_broken", IMMEDIATE, "POS completely non-functional"),
    Trigger("slow_response", TEAM, "Response time over the threshold (over 5x normal)"),
    Trigger("cpu_high", TEAM, "CPU over the threshold, sustained"),
    Trigger("memory_high", TEAM, "Memory over the threshold"),
    Trigger("query_timeouts", TEAM, "Database queries timing out"),
    Trigger("partial_loss", TEAM, "Partial functionality loss"),
    Trigger("einvoice_failures", TEAM, "Invoice submission failures over the threshold"),
    Trigger("email_failures", TEAM, "Email delivery failures over the threshold"),
    Trigger("error_rate_rising", TEAM, "Error rate rising"),
)
TRIGGERS_BY_CODE = {trigger.code: trigger for trigger in TRIGGERS}

DECISION_ROLLBACK = "rollback"


def required_decision(held_codes):
    """The decision the runbook imposes for the triggers that hold, or None when the team decides."""
    if any(TRIGGERS_BY_CODE[code].category == IMMEDIATE for code in held_codes):
        return DECISION_ROLLBACK
    return None


# What the team does after a rollback, by horizon: (key, label, due after, tasks).
POST_ROLLBACK_TASKS = (
    (
        "immediate",
        "Immediate",
        timedelta(hours=4),
        (
            "Confirm with key users that they can log in, invoice and send e-mail",
            "Review the lost-rows export and re-enter the records created after the snapshot",
            "Watch the error log and response times of the restored deployment",
            "Keep the replaced database and filestore aside until the analysis is done",
        ),
    ),
    (
        "short_term",
        "Short-term",
        timedelta(hours=24),
        (
            "Find the root cause of the failed deployment",
            "Reproduce and fix the failure on a staging copy before any new attempt",
            "Write the post-mortem draft",
        ),
    ),
    (
        "medium_term",
        "Medium-term",
        timedelta(days=7),
        (
            "Hold the post-mortem review and assign its action items",
            "Add the missing test or monitoring that would have caught the failure",
            "Update the deployment runbook and drop the replaced database once it is no longer needed",
        ),
    ),
)
