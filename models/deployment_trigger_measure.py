# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The rollback triggers Odoo can measure itself, with the measured value and where it came from."""

from datetime import timedelta

from odoo import _, api, fields, models
from odoo.exceptions import UserError

PARAM = "deployment_rollback.%s"
# "Completely broken" needs a few attempts in the window: one bounced mail is not an outage.
BROKEN_MIN_ATTEMPTS = 5
DEFAULTS = {
    "trigger_window_minutes": 60,
    "email_failure_percent": 20,
    "einvoice_failure_percent": 10,
    "response_seconds": 10,
    "cpu_percent": 90,
    "memory_percent": 95,
    "query_seconds": 30,
}
# "Error rate rising" wants a few errors: one traceback more than in the previous window is noise.
RISING_MIN_ERRORS = 5


class DeploymentRollbackMeasure(models.AbstractModel):
    _name = "deployment.rollback.measure"
    _description = "Deployment Rollback Trigger Measurements"

    @api.model
    def _setting(self, key):
        value = self.env["ir.config_parameter"].sudo().get_param(PARAM % key)
        try:
            return float(value) if value else float(DEFAULTS[key])
        except ValueError:
            return float(DEFAULTS[key])

    @api.model
    def _measure_all(self):
        """{trigger code: {"holds", "value", "source"}} for every trigger measured here."""
        measured = {}
        measured.update(self._measure_email())
        measured.update(self._measure_einvoice())
        measured.update(self._measure_helper_health())
        measured.update(self._measure_error_rate())
        measured.update(self._measure_slow_queries())
        return measured

    @api.model
    def _measure_slow_queries(self):
        """Queries of this database running longer than the threshold now: the ones that time out next.

        Odoo's workers connect with Odoo's role, so pg_stat_activity shows their queries to it."""
        limit = self._setting("query_seconds")
        # PostgreSQL keeps one picture of pg_stat_activity per transaction: ask for a fresh one.
        self.env.cr.execute("SELECT pg_stat_clear_snapshot()")
        self.env.cr.execute(
            """
            SELECT count(*), coalesce(max(extract(epoch FROM clock_timestamp() - query_start)), 0)
              FROM pg_stat_activity
             WHERE datname = current_database()
               AND state = 'active'
               AND pid <> pg_backend_pid()
               AND clock_timestamp() - query_start > make_interval(secs => %s)
            """,
            (limit,),
        )
        count, longest = self.env.cr.fetchone()
        return {
            "query_timeouts": {
                "holds": count > 0,
                "value": _(
                    "%(count)s queries running over %(limit)s s (longest %(longest)d s)",
                    count=count,
                    limit=limit,
                    longest=longest,
                ),
                "source": _("queries running in the database"),
            }
        }

    @api.model
    def _window_start(self):
        return fields.Datetime.now() - timedelta(minutes=self._setting("trigger_window_minutes"))

    @api.model
    def _measure_email(self):
        since = self._window_start()
        minutes = int(self._setting("trigger_window_minutes"))
        source = _("outgoing e-mails of the last %s minutes", minutes)
        mails = self.env["mail.mail"].sudo()
        failed = mails.search_count([("create_date", ">=", since), ("state", "=", "exception")])
        sent = mails.search_count([("create_date", ">=", since), ("state", "=", "sent")])
        # Sent notification e-mails are deleted once sent (auto_delete); their mail.notification stays,
        # its link to the deleted mail.mail emptied: count those as sent too.
        sent += (
            self.env["mail.notification"]
            .sudo()
            .search_count(
                [
                    ("notification_type", "=", "email"),
                    ("notification_status", "=", "sent"),
                    ("mail_mail_id", "=", False),
                    ("mail_message_id.date", ">=", since),
                ]
            )
        )
        attempted = failed + sent
        if not attempted:
            value = _("no e-mail sent or failed")
            return {
                "email_failures": {"holds": False, "value": value, "source": source},
                "email_broken": {"holds": False, "value": value, "source": source},
            }
        percent = 100.0 * failed / attempted
        value = _("%(failed)s of %(total)s failed (%(percent).0f%%)", failed=failed, total=attempted, percent=percent)
        return {
            "email_failures": {
                "holds": percent > self._setting("email_failure_percent"),
                "value": value,
                "source": source,
            },
            "email_broken": {
                "holds": failed == attempted and attempted >= BROKEN_MIN_ATTEMPTS,
                "value": value,
                "source": source,
            },
        }

    @api.model
    def _measure_einvoice(self):
        """E-invoice submission failures, from account_edi's documents when that module is installed."""
        if "account.edi.document" not in self.env:
            return {}
        since = self._window_start()
        documents = self.env["account.edi.document"].sudo()
        total = documents.search_count([("write_date", ">=", since)])
        failed = documents.search_count(
            [("write_date", ">=", since), ("error", "!=", False), ("blocking_level", "=", "error")]
        )
        source = _("e-invoices of the last %s minutes", int(self._setting("trigger_window_minutes")))
        if not total:
            return {"einvoice_failures": {"holds": False, "value": _("no e-invoice submitted"), "source": source}}
        percent = 100.0 * failed / total
        return {
            "einvoice_failures": {
                "holds": percent > self._setting("einvoice_failure_percent"),
                "value": _(
                    "%(failed)s of %(total)s failed (%(percent).0f%%)", failed=failed, total=total, percent=percent
                ),
                "source": source,
            }
        }

    @api.model
    def _measure_helper_health(self):
        """Response time and service states, from the helper's health check."""
        source = _("the helper's health check")
        try:
            health = self.env["deployment.rollback.helper"]._request("GET", "/v1/health")
        except UserError as exc:
            unreachable = {"holds": False, "value": _("not measured: %s", exc.args[0]), "source": source}
            return {code: dict(unreachable) for code in ("slow_response", "odoo_not_starting", "nginx_not_starting")}
        measured = {}
        http = health.get("http") or {}
        if http:
            seconds = http.get("seconds") or 0.0
            limit = self._setting("response_seconds")
            answered = bool(http.get("ok"))
            measured["slow_response"] = {
                "holds": answered and seconds > limit,
                "value": _("%(seconds).2f s (threshold %(limit)s s)", seconds=seconds, limit=limit)
                if answered
                else _("no answer: %s", http.get("error") or http.get("status")),
                "source": _("%(what)s of %(url)s", what=source, url=http.get("url")),
            }
        system = health.get("system") or {}
        for code, key, label in (
            ("cpu_high", "cpu_percent", _("5-minute load per CPU")),
            ("memory_high", "memory_percent", _("memory used")),
        ):
            if system.get(key) is not None:
                limit = self._setting(key)
                measured[code] = {
                    "holds": system[key] > limit,
                    "value": _(
                        "%(label)s %(value)s%% (threshold %(limit)s%%)", label=label, value=system[key], limit=limit
                    ),
                    "source": _("the server's load, read by the helper"),
                }
        services = health.get("services") or {}
        for code, needle in (("odoo_not_starting", "odoo"), ("nginx_not_starting", "nginx")):
            states = {name: state for name, state in services.items() if needle in name}
            if states:
                measured[code] = {
                    "holds": any(state not in ("running", "active") for state in states.values()),
                    "value": ", ".join(f"{name}: {state}" for name, state in sorted(states.items())),
                    "source": source,
                }
        return measured

    @api.model
    def _measure_error_rate(self):
        """Errors in Odoo's log in the last window against the window before, read by the helper."""
        minutes = self._setting("trigger_window_minutes")
        now = fields.Datetime.now()
        source = _("Odoo's log, read by the helper")
        helper = self.env["deployment.rollback.helper"]

        def errors_since(moment):
            reply = helper._request("GET", f"/v1/logs/errors?since={moment.isoformat(timespec='seconds')}")
            return reply, len(reply.get("errors") or [])

        try:
            recent, current = errors_since(now - timedelta(minutes=minutes))
            both = errors_since(now - timedelta(minutes=2 * minutes))[1]
        except UserError as exc:
            return {
                "error_rate_rising": {"holds": False, "value": _("not measured: %s", exc.args[0]), "source": source}
            }
        if not recent.get("checked", True):
            return {"error_rate_rising": {"holds": False, "value": _("no service log to read"), "source": source}}
        previous = max(0, both - current)
        return {
            "error_rate_rising": {
                "holds": current >= RISING_MIN_ERRORS and current > previous,
                "value": _(
                    "%(current)s errors in the last %(minutes)s minutes, "
                    "%(previous)s in the %(minutes)s minutes before",
                    current=current,
                    previous=previous,
                    minutes=int(minutes),
                ),
                "source": source,
            }
        }
