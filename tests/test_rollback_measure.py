# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The triggers Odoo measures itself: e-mail failures from real mail.mail records, the helper's health."""

import contextlib
import os
import tempfile
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import psycopg2.errors
from odoo import fields
from odoo.sql_db import db_connect
from odoo.tests.common import TransactionCase

from .common import RealHelperMixin


class TestEmailMeasure(TransactionCase):
    def setUp(self):
        super().setUp()
        self.measure = self.env["deployment.rollback.measure"]
        # Mails of earlier tests or of the installation must not count.
        self.env["mail.mail"].sudo().search([]).unlink()
        self.env["mail.notification"].sudo().search([("notification_type", "=", "email")]).unlink()

    def _mails(self, state, count, minutes_ago=0):
        mails = (
            self.env["mail.mail"]
            .sudo()
            .create([{"subject": f"{state} {i}", "email_to": "x@example.com", "state": state} for i in range(count)])
        )
        if minutes_ago:
            self.env.cr.execute(
                "UPDATE mail_mail SET create_date = %s WHERE id IN %s",
                (fields.Datetime.now() - timedelta(minutes=minutes_ago), tuple(mails.ids)),
            )
            mails.invalidate_recordset(["create_date"])
        return mails

    def test_failure_rate_over_the_threshold_is_a_team_trigger(self):
        self._mails("sent", 7)
        self._mails("exception", 3)
        self._mails("exception", 20, minutes_ago=180)  # outside the 60-minute window
        measured = self.measure._measure_email()
        self.assertTrue(measured["email_failures"]["holds"])
        self.assertIn("3 of 10 failed (30%)", measured["email_failures"]["value"])
        self.assertFalse(measured["email_broken"]["holds"])

    def test_threshold_and_window_are_settings(self):
        self._mails("sent", 7)
        self._mails("exception", 3)
        self.env["ir.config_parameter"].sudo().set_param("deployment_rollback.email_failure_percent", "40")
        self.assertFalse(self.measure._measure_email()["email_failures"]["holds"])
        self.env["ir.config_parameter"].sudo().set_param("deployment_rollback.trigger_window_minutes", "300")
        self._mails("exception", 20, minutes_ago=180)
        measured = self.measure._measure_email()
        self.assertIn("23 of 30 failed", measured["email_failures"]["value"])
        self.assertTrue(measured["email_failures"]["holds"])

    def test_every_mail_failing_is_an_immediate_trigger(self):
        self._mails("exception", 5)
        measured = self.measure._measure_email()
        self.assertTrue(measured["email_broken"]["holds"])
        self.assertTrue(measured["email_failures"]["holds"])

    def test_a_few_bounces_are_not_an_outage(self):
        self._mails("exception", 2)
        measured = self.measure._measure_email()
        self.assertFalse(measured["email_broken"]["holds"])
        self.assertTrue(measured["email_failures"]["holds"])  # for the team to judge

    def test_no_mail_measures_nothing(self):
        measured = self.measure._measure_email()
        self.assertFalse(measured["email_broken"]["holds"])
        self.assertIn("no e-mail", measured["email_failures"]["value"])

    def test_a_long_query_is_a_query_timing_out(self):
        self.env["ir.config_parameter"].sudo().set_param("deployment_rollback.query_seconds", "0")
        self.assertFalse(self.measure._measure_slow_queries()["query_timeouts"]["holds"])
        # Another session of this database, busy with a query (as an Odoo worker would be).
        with db_connect(self.env.cr.dbname).cursor() as other:
            other.execute("SELECT pg_backend_pid()")
            pid = other.fetchone()[0]

            def sleep():
                with contextlib.suppress(psycopg2.errors.QueryCanceled):
                    other.execute("SELECT pg_sleep(30)", log_exceptions=False)

            busy = threading.Thread(target=sleep, daemon=True)
            busy.start()
            try:
                for _attempt in range(200):
                    self.env.cr.execute("SELECT pg_stat_clear_snapshot()")
                    self.env.cr.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
                    if self.env.cr.fetchone()[0] == "active":
                        break
                    time.sleep(0.05)
                measured = self.measure._measure_slow_queries()["query_timeouts"]
            finally:
                self.env.cr.execute("SELECT pg_cancel_backend(%s)", (pid,))
                busy.join()
        self.assertTrue(measured["holds"], measured)
        self.assertIn("1 queries running over 0.0 s", measured["value"])
        self.assertEqual(measured["source"], "queries running in the database")

    def test_einvoice_not_measured_without_an_edi_module(self):
        self.assertNotIn("account.edi.document", self.env)
        self.assertEqual(self.measure._measure_einvoice(), {})


class _SlowHandler(BaseHTTPRequestHandler):
    """A login page that answers in 0.3 s, slower than the threshold the test sets."""

    def do_GET(self):
        time.sleep(0.3)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class TestHealthMeasure(RealHelperMixin, TransactionCase):
    """Response time and service state, measured by a real helper against a real (slow) web server."""

    @classmethod
    def setUpClass(cls):
        # The web server first: the helper's configuration names its address.
        cls.web = HTTPServer(("127.0.0.1", 0), _SlowHandler)
        threading.Thread(target=cls.web.serve_forever, daemon=True).start()
        cls.addClassCleanup(cls.web.server_close)
        cls.addClassCleanup(cls.web.shutdown)
        super().setUpClass()

    @classmethod
    def _helper_toml(cls):
        # Odoo's log, as the helper reads it from a file ([deploy] log_file); each test writes its lines.
        handle, name = tempfile.mkstemp(prefix="rb-odoo-", suffix=".log")
        os.close(handle)
        cls.odoo_log = Path(name)
        cls.addClassCleanup(cls.odoo_log.unlink)
        return (
            f'[health]\nurl = "http://127.0.0.1:{cls.web.server_port}/web/login"\n'
            '[services]\nbackend = "command"\nstop_command = ["true"]\nstart_command = ["true"]\n'
            f'[deploy]\nlog_file = "{cls.odoo_log}"\n'
        )

    def _log_errors(self, minutes_ago, count):
        """Append *count* ERROR lines stamped *minutes_ago*, in Odoo's format and local time."""
        stamp = (datetime.now() - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%d %H:%M:%S")
        with self.odoo_log.open("a") as log:
            for index in range(count):
                log.write(f"{stamp},000 4242 ERROR prod odoo.addons.sale: the order {index} has no lines\n")

    def test_slow_answers_hold_the_response_time_trigger(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("deployment_rollback.response_seconds", "0.1")
        measured = self.env["deployment.rollback.measure"]._measure_helper_health()
        self.assertTrue(measured["slow_response"]["holds"], measured["slow_response"])
        self.assertIn("threshold 0.1 s", measured["slow_response"]["value"])
        self.assertIn("/web/login", measured["slow_response"]["source"])

        params.set_param("deployment_rollback.response_seconds", "10")
        measured = self.env["deployment.rollback.measure"]._measure_helper_health()
        self.assertFalse(measured["slow_response"]["holds"])

    def test_cpu_and_memory_from_the_helpers_host(self):
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("deployment_rollback.memory_percent", "1")
        measured = self.env["deployment.rollback.measure"]._measure_helper_health()
        self.assertTrue(measured["memory_high"]["holds"], measured["memory_high"])
        self.assertIn("memory used", measured["memory_high"]["value"])
        self.assertIn("threshold 1.0%", measured["memory_high"]["value"])
        params.set_param("deployment_rollback.memory_percent", "100")
        params.set_param("deployment_rollback.cpu_percent", "100000")
        measured = self.env["deployment.rollback.measure"]._measure_helper_health()
        self.assertFalse(measured["memory_high"]["holds"])
        self.assertFalse(measured["cpu_high"]["holds"])
        self.assertIn("5-minute load per CPU", measured["cpu_high"]["value"])

    def test_error_rate_rising_compares_two_windows_of_odoos_log(self):
        self.odoo_log.write_text("")
        self._log_errors(minutes_ago=90, count=2)
        self._log_errors(minutes_ago=5, count=6)
        measured = self.env["deployment.rollback.measure"]._measure_error_rate()["error_rate_rising"]
        self.assertTrue(measured["holds"], measured)
        self.assertEqual(measured["value"], "6 errors in the last 60 minutes, 2 in the 60 minutes before")

        self.odoo_log.write_text("")
        self._log_errors(minutes_ago=90, count=8)
        self._log_errors(minutes_ago=5, count=6)
        measured = self.env["deployment.rollback.measure"]._measure_error_rate()["error_rate_rising"]
        self.assertFalse(measured["holds"], measured)

    def test_helper_down_is_said_not_guessed(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "deployment_rollback.helper_address", f"unix:{self.helper.dir}/nobody.sock"
        )
        measured = self.env["deployment.rollback.measure"]._measure_helper_health()
        self.assertFalse(measured["slow_response"]["holds"])
        self.assertIn("not measured", measured["slow_response"]["value"])
