# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The records the README's screenshots show, made through Odoo's ORM in ``odoo-bin shell``.

Run by scripts/screenshots.py (stdin of ``odoo-bin shell``), after the helper took a verified pre-deploy
snapshot and ran a drill: the journal's snapshot and drill are imported as they would be in production. A
rollback cannot be started without replacing this very database, so the finished one is built the way the
addon builds it from the helper's journal: a running record from the checklist's values, then the restore's
step events and the end of the job, which runs the real validation against the helper and drafts the
post-mortem. Parameters come as JSON in SHOTS_DATA; the ids of what was made are printed on a SHOTS_IDS line.
"""

import json
import os
from datetime import date, datetime, timedelta, timezone

from odoo_rollback.restore import STEP_NAMES

env = globals()["env"]
data = json.loads(os.environ["SHOTS_DATA"])
admin = env.ref("base.user_admin")
env = env(user=admin.id, context=dict(env.context, tz="Europe/Brussels"))
admin.write({"tz": "Europe/Brussels", "email": "ops-lead@example.com"})

params = env["ir.config_parameter"].sudo()
params.set_param("deployment_rollback.helper_address", data["address"])
env["deployment.operation"]._import_journal()
snapshot = env["deployment.snapshot"].search([("helper_id", "=", data["snapshot"])], limit=1)
if not snapshot:
    raise SystemExit(f"the journal import did not bring the snapshot {data['snapshot']}")

users = env["res.users"].with_context(no_reset_password=True)
engineer = users.create(
    {
        "name": "Nadia Keller",
        "login": "nadia",
        "email": "nadia@example.com",
        "groups_id": [(4, env.ref("deployment_rollback.group_deployment_rollback_user").id)],
    }
)

# -- a finished rollback ----------------------------------------------------------------------------
wizard = env["deployment.rollback.wizard"].create({"reason": "Invoices lost their lines after the migration"})
for line in wizard.line_ids:
    if line.name in ("Migration errors affecting data", "Cannot create invoices"):
        line.write({"holds": True, "source": "support tickets #4411, #4415"})
wizard.write(
    {
        "snapshot_id": snapshot.id,
        "participant_ids": [(6, 0, [engineer.id])],
        "impact": "Invoicing stopped for every company; about 40 users.",
        "next_steps": "Replay the afternoon's invoices by hand once the rollback is validated.",
    }
)
vals = wizard._rollback_vals("running")
started = (datetime.now(timezone.utc) - timedelta(hours=3)).replace(microsecond=0)
vals["started_at"] = started.replace(tzinfo=None)
# The story in order: the snapshot before the deployment, the deployment, then the rollback.
snapshot._helper_sync().write({"taken_at": (started - timedelta(minutes=40)).replace(tzinfo=None)})
# The deployment it undoes, as the helper's journal records one: the post-mortem's incident starts there.
env["deployment.operation"]._helper_sync().create(
    {
        "helper_id": "shots-deploy-16.0.3",
        "kind": "deploy",
        "state": "done",
        "outcome": "deployed",
        "started_at": (started - timedelta(minutes=25)).replace(tzinfo=None),
        "finished_at": (started - timedelta(minutes=21)).replace(tzinfo=None),
        "from_revision": "16.0.2",
        "to_revision": "16.0.3",
        "modules": "account",
        "snapshot_id": snapshot.id,
    }
)
vals["escalation_level_id"] = env.ref("deployment_rollback.escalation_level_technical_lead").id
rollback = env["deployment.rollback"]._helper_sync().create(vals)

# The restore's steps, in the helper's own order (restore.STEPS), with the durations of a small
# production database; the standby's two steps are left out (this rollback staged).
SECONDS = {"preflight": 4, "staging": 96, "check": 12, "stop": 8, "swap": 3, "code": 21, "verify_live": 1}
SECONDS.update(start=11, lost_rows=6)
events, at = [], started
for step in (name for name in STEP_NAMES if name in SECONDS):
    seconds = SECONDS[step]
    events.append({"step": step, "status": "start", "at": at.isoformat()})
    at += timedelta(seconds=seconds)
    events.append({"step": step, "status": "done", "at": at.isoformat()})
rollback._apply_helper_state(
    "done",
    events,
    result={"kept_as": f"{env.cr.dbname}_replaced", "lost_rows_total": 14},
    finished_at=at.replace(tzinfo=None),
)
rollback.write({"root_cause": "The 16.0.3 migration dropped the lines of draft invoices with an archived tax."})
rollback.check_ids.filtered(lambda check: check.code == "users").write({"state": "ok", "detail": "Nadia invoiced"})

# -- its post-mortem, in review, with action items ------------------------------------------------------
postmortem = rollback.postmortem_id
postmortem.write(
    {
        "name": "Rollback of the 16.0.3 deployment",
        "root_cause": "The 16.0.3 migration script recomputed the invoice lines' taxes and dropped the lines "
        "of draft invoices whose tax had been archived.",
        "users_affected": 40,
        "revenue_impact": 0,
        "went_well": "The decision to roll back took 9 minutes; the snapshot was verified.",
        "went_wrong": "The migration was not tried on a copy of production.",
        "lessons_learned": "Migrations that rewrite accounting data need a dry run on production data.",
        "prevention": "A staging restore of the newest snapshot before every deployment.",
    }
)
today = date.today()
for name, owner, days in [
    ("Test migrations on a copy of production", admin, 14),
    ("Alert on invoices without lines", engineer, 21),
]:
    env["deployment.postmortem.action"].create(
        {"postmortem_id": postmortem.id, "name": name, "owner_id": owner.id, "due_date": today + timedelta(days)}
    )
postmortem.action_submit_review()

# -- drills: the helper's (this quarter) and two recorded by hand in earlier quarters -----------------
drills = env["deployment.drill"]
helper_drill = drills.search([("helper_id", "!=", False)], limit=1)
quarter_start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
for days_back, result, seconds, note in [
    (70, "ok", 734.0, "Staging restore of the September snapshot."),
    (160, "failed", 2210.0, "The restore outran the maximum RTO: the filestore copy was too slow."),
]:
    drill = drills.create(
        {
            "date": quarter_start - timedelta(days=days_back),
            "environment": "staging",
            "result": result,
            "seconds": seconds,
            "rto_met": result == "ok",
            "notes": note,
        }
    )
    drill.action_record_result()

env.cr.commit()
print(
    "SHOTS_IDS "
    + json.dumps(
        {
            "snapshot": snapshot.id,
            "rollback": rollback.id,
            "postmortem": postmortem.id,
            "drill": helper_drill.id,
            "menu": env.ref("deployment_rollback.deployment_rollback_menu_root").id,
        }
    )
)
