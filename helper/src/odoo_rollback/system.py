"""The host's load, for Odoo's rollback checklist ("CPU over 90% sustained", "memory over 95%").

The helper runs beside Odoo with no agent of its own, so it reads what the kernel already keeps: the
five-minute load average per CPU (a sustained figure, unlike an instant sample) and MemAvailable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MEMINFO = Path("/proc/meminfo")


def memory_percent(meminfo: str) -> float | None:
    """Used memory as a percentage of the total, from /proc/meminfo's text (None when unreadable)."""
    values: dict[str, int] = {}
    for line in meminfo.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[name] = int(fields[0])
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        return None
    return round(100.0 * (total - available) / total, 1)


def system_load() -> dict[str, Any]:
    cpus = os.cpu_count() or 1
    try:
        load5 = os.getloadavg()[1]
    except OSError:
        load5 = None
    try:
        memory = memory_percent(MEMINFO.read_text(encoding="ascii"))
    except OSError:
        memory = None
    return {
        "cpus": cpus,
        "load5": None if load5 is None else round(load5, 2),
        "cpu_percent": None if load5 is None else round(100.0 * load5 / cpus, 1),
        "memory_percent": memory,
    }
