# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The scheduled snapshot's hour is a wall-clock hour in the time zone of whoever set it.

An operator in Costa Rica who types 2 means 2:00 in San José, not 2:00 UTC (20:00 the day before for
him). The hour is stored with its time zone and turned into UTC instants with pytz, as Odoo 16 does,
so that an hour set in a zone with daylight saving time stays the same wall-clock hour all year.
"""

from datetime import datetime, time, timedelta

import pytz

UTC = "UTC"


def setter_tz(env):
    """The time zone the hour is typed in: the user's (Preferences), else the company's, else UTC."""
    for name in (env.user.tz, env.company.partner_id.tz):
        if name and name in pytz.all_timezones_set:
            return name
    return UTC


def zone(name):
    """A pytz zone; an unknown name (a zone removed from tzdata) reads as UTC rather than failing a cron."""
    try:
        return pytz.timezone(name or UTC)
    except pytz.UnknownTimeZoneError:
        return pytz.utc


def local_now(now_utc, tz_name):
    """Naive UTC (Odoo's) to the aware wall-clock time of *tz_name*."""
    return pytz.utc.localize(now_utc).astimezone(zone(tz_name))


def at_hour_utc(day, hour, tz_name):
    """The naive UTC instant of *hour*:00 on *day* in *tz_name*. An hour that does not exist that day
    (the spring-forward gap) is read as standard time, i.e. it falls on the hour after the gap; an hour
    that occurs twice (fall back) is its second occurrence."""
    tz = zone(tz_name)
    aware = tz.normalize(tz.localize(datetime.combine(day, time(hour)), is_dst=False))
    return aware.astimezone(pytz.utc).replace(tzinfo=None)


def next_run_utc(now_utc, hour, tz_name, weekdays):
    """The first instant at or after *now_utc* (naive UTC) that is *hour*:00 in *tz_name* on one of
    *weekdays* (0 = Monday), as naive UTC: the cron's nextcall."""
    today = local_now(now_utc, tz_name).date()
    for offset in range(8):
        day = today + timedelta(days=offset)
        if day.weekday() not in weekdays:
            continue
        run = at_hour_utc(day, hour, tz_name)
        if run >= now_utc:
            return run
    raise ValueError("no scheduled weekday")


def hour_in(hour, from_tz, to_tz, now_utc):
    """*hour* of *from_tz* read on a clock of *to_tz* today (offsets as they are on today's date)."""
    if zone(from_tz).zone == zone(to_tz).zone:
        return hour
    run = at_hour_utc(local_now(now_utc, from_tz).date(), hour, from_tz)
    return local_now(run, to_tz).hour
