"""The memory figure of /proc/meminfo's text, including what an odd kernel may print."""

from __future__ import annotations

from odoo_rollback.system import memory_percent

MEMINFO = """MemTotal:       24000000 kB
MemFree:         1000000 kB
MemAvailable:    6000000 kB
Buffers:          200000 kB
"""


def test_used_memory_is_total_less_available() -> None:
    assert memory_percent(MEMINFO) == 75.0


def test_unreadable_meminfo_measures_nothing() -> None:
    assert memory_percent("MemTotal: 24000000 kB\n") is None
    assert memory_percent("") is None
