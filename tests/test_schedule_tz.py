# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The scheduled snapshot's hour is the hour on the clock of whoever sets it, all year round."""

from datetime import datetime

from freezegun import freeze_time
from odoo.addons.deployment_rollback.models.deployment_snapshot import SCHEDULE_HOUR_PARAM, SCHEDULE_TZ_PARAM
from odoo.addons.deployment_rollback.models.schedule_time import next_run_utc, setter_tz
from odoo.tests import Form
from odoo.tests.common import TransactionCase, new_test_user

CRON = "deployment_rollback.ir_cron_deployment_scheduled_snapshot"
SETTINGS_GROUPS = "base.group_user,base.group_system,deployment_rollback.group_deployment_rollback_manager"


class TestScheduleTimeZone(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.san_jose = new_test_user(cls.env, login="rb_sanjose", groups=SETTINGS_GROUPS, tz="America/Costa_Rica")
        cls.madrid = new_test_user(cls.env, login="rb_madrid", groups=SETTINGS_GROUPS, tz="Europe/Madrid")
        cls.params = cls.env["ir.config_parameter"].sudo()
        cls.snapshots = cls.env["deployment.snapshot"]

    def _set_schedule(self, user, hour, days="daily"):
        settings = Form(self.env["res.config.settings"].with_user(user))
        settings.deployment_schedule_enabled = True
        settings.deployment_schedule_hour = hour
        settings.deployment_schedule_days = days
        settings.save().execute()
        return settings

    def _nextcall(self):
        return self.env.ref(CRON).nextcall

    def test_costa_rica_two_oclock_is_eight_utc(self):
        with freeze_time("2026-12-07 07:00:00"):  # Monday 1:00 in San José
            settings = self._set_schedule(self.san_jose, 2)
            self.assertEqual(settings.deployment_schedule_tz, "America/Costa_Rica", "the screen names the zone")
            self.assertEqual(self.params.get_param(SCHEDULE_HOUR_PARAM), "2")
            self.assertEqual(self.params.get_param(SCHEDULE_TZ_PARAM), "America/Costa_Rica")
            self.assertEqual(self._nextcall(), datetime(2026, 12, 7, 8, 0), "2:00 in San José is 8:00 UTC")
            self.assertFalse(self.snapshots._schedule_due(), "2:00 in San José has not come yet")
        with freeze_time("2026-12-07 07:59:00"):
            self.assertFalse(self.snapshots._schedule_due())
        with freeze_time("2026-12-07 08:00:00"):
            self.assertEqual(self.snapshots._schedule_due(), "2026-12-07")
        with freeze_time("2026-12-08 05:00:00"):  # still 7 December, 23:00, in San José
            self.assertEqual(self.snapshots._schedule_due(), "2026-12-07")

    def test_madrid_two_oclock_follows_daylight_saving_time(self):
        with freeze_time("2026-12-06 12:00:00"):
            settings = self._set_schedule(self.madrid, 2, days="weekdays")
            self.assertEqual(settings.deployment_schedule_tz, "Europe/Madrid")
            # Winter (CET, UTC+1): Monday 7 December, 1:00 UTC.
            self.assertEqual(self._nextcall(), datetime(2026, 12, 7, 1, 0))
        with freeze_time("2026-12-07 00:59:00"):
            self.assertFalse(self.snapshots._schedule_due())
        with freeze_time("2026-12-07 01:00:00"):
            self.assertEqual(self.snapshots._schedule_due(), "2026-12-07")
        with freeze_time("2027-07-05 23:59:00"):  # Tuesday 01:59 in summer (CEST, UTC+2)
            self.assertFalse(self.snapshots._schedule_due())
            self.assertEqual(self.env["res.config.settings"]._schedule_cron_nextcall(), datetime(2027, 7, 6, 0, 0))
        with freeze_time("2027-07-06 00:00:00"):
            self.assertEqual(self.snapshots._schedule_due(), "2027-07-06")

    def test_the_next_call_across_the_daylight_saving_changes(self):
        days = range(7)
        # Spring forward, 28 March 2027: 2:00 does not exist in Madrid; the snapshot comes at 3:00 CEST.
        self.assertEqual(next_run_utc(datetime(2027, 3, 27, 12), 2, "Europe/Madrid", days), datetime(2027, 3, 28, 1))
        self.assertEqual(next_run_utc(datetime(2027, 3, 28, 12), 2, "Europe/Madrid", days), datetime(2027, 3, 29, 0))
        # Fall back, 25 October 2026: 2:00 comes twice; once, at the second.
        self.assertEqual(next_run_utc(datetime(2026, 10, 23, 12), 2, "Europe/Madrid", days), datetime(2026, 10, 24, 0))
        self.assertEqual(next_run_utc(datetime(2026, 10, 24, 12), 2, "Europe/Madrid", days), datetime(2026, 10, 25, 1))
        self.assertEqual(next_run_utc(datetime(2026, 10, 25, 12), 2, "Europe/Madrid", days), datetime(2026, 10, 26, 1))
        # Costa Rica keeps UTC-6 all year; Sundays only.
        self.assertEqual(
            next_run_utc(datetime(2026, 12, 7, 3), 2, "America/Costa_Rica", (6,)), datetime(2026, 12, 13, 8)
        )

    def test_another_zone_reads_the_hour_on_its_clock_and_saving_keeps_it(self):
        with freeze_time("2026-12-07 07:00:00"):
            self._set_schedule(self.san_jose, 2)
            settings = Form(self.env["res.config.settings"].with_user(self.madrid))
            # 2:00 in San José is 9:00 in Madrid in December.
            self.assertEqual(settings.deployment_schedule_hour, 9)
            self.assertEqual(settings.deployment_schedule_tz, "Europe/Madrid")
            settings.deployment_progress_minutes = 20  # saving something else
            settings.save().execute()
            self.assertEqual(self.params.get_param(SCHEDULE_HOUR_PARAM), "2")
            self.assertEqual(self.params.get_param(SCHEDULE_TZ_PARAM), "America/Costa_Rica")
            self.assertEqual(self._nextcall(), datetime(2026, 12, 7, 8, 0))

    def test_the_zone_is_the_users_else_the_companys_else_utc(self):
        nobody = new_test_user(self.env, login="rb_no_tz", groups=SETTINGS_GROUPS, tz=False)
        company = nobody.company_id.partner_id
        company.tz = "America/Costa_Rica"
        self.assertEqual(setter_tz(self.env(user=nobody)), "America/Costa_Rica")
        self.assertEqual(setter_tz(self.env(user=self.madrid)), "Europe/Madrid")
        company.tz = False
        self.assertEqual(setter_tz(self.env(user=nobody)), "UTC")

    def test_an_hour_set_before_time_zones_stays_utc(self):
        # 16.0.3.0.0 stored the hour alone, meant as UTC: it keeps meaning that until someone changes it.
        self.params.set_param("deployment_rollback.schedule_enabled", "True")
        self.params.set_param(SCHEDULE_HOUR_PARAM, "3")
        self.params.set_param(SCHEDULE_TZ_PARAM, False)  # no zone stored: removed
        self.params.set_param("deployment_rollback.schedule_days", "daily")
        with freeze_time("2026-12-07 02:59:00"):
            self.assertFalse(self.snapshots._schedule_due())
            # 3:00 UTC is 21:00 the day before in San José: the screen says so on the reader's clock.
            self.assertEqual(
                Form(self.env["res.config.settings"].with_user(self.san_jose)).deployment_schedule_hour, 21
            )
        with freeze_time("2026-12-07 03:00:00"):
            self.assertEqual(self.snapshots._schedule_due(), "2026-12-07")
