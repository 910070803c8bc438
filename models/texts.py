# Copyright 2026 The deployment_rollback authors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Numbers as people read them: "1 minute", "3 hours" in their language, "1.5 GiB"."""

from odoo import _


def minutes_text(env, minutes):
    """*minutes* in words: "1 minute", "12 minutes"."""
    context = env.context  # noqa: F841 - _() reads the language from this local
    minutes = round(minutes)
    return _("1 minute") if minutes == 1 else _("%d minutes", minutes)


def age_text(env, hours):
    """An age in the largest unit that keeps it readable: minutes under an hour, hours under two days."""
    context = env.context  # noqa: F841 - _() reads the language from this local
    if hours < 1 / 60:
        return _("less than a minute")
    if hours < 1:
        return minutes_text(env, int(hours * 60))
    if hours < 48:
        whole = int(hours)
        return _("1 hour") if whole == 1 else _("%d hours", whole)
    return _("%d days", int(hours / 24))


def human_size(size):
    """Bytes as people read them: "1.5 GiB"."""
    size = float(size or 0)
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:.1f} {unit}"
