"""Which process owns an operation, and whether it still runs.

A PID alone is not an identity: after a crash the kernel may give the same number to another
process. The process's start time (``/proc/<pid>/stat``, clock ticks since boot) is recorded with it;
a process with that PID and that start time is the owner, any other is not.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# /proc/<pid>/stat: "pid (comm) state ppid ...": starttime is field 22, the 20th after the ")".
_STARTTIME_AFTER_COMM = 19


def process_start(pid: int) -> int | None:
    """The start time of process *pid* in clock ticks since boot; None when it does not run (a zombie,
    dead but not yet reaped by its parent, has closed its files and released its locks: not running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return None if fields[0] in ("Z", "X") else int(fields[_STARTTIME_AFTER_COMM])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Owner:
    pid: int
    start: int | None
    host: str

    @classmethod
    def me(cls) -> Owner:
        return cls(os.getpid(), process_start(os.getpid()), socket.gethostname())

    @classmethod
    def from_data(cls, data: Any) -> Owner | None:
        """The owner recorded in an operation's data (None for operations recorded before owners were)."""
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None
        start = data.get("start")
        return cls(data["pid"], start if isinstance(start, int) else None, str(data.get("host") or ""))

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "start": self.start, "host": self.host}

    def alive(self) -> bool:
        """Whether this process still runs. Another host's process cannot be seen: assume it runs."""
        if self.host and self.host != socket.gethostname():
            return True
        start = process_start(self.pid)
        if start is None:
            return not Path("/proc/self/stat").exists() and pid_exists(self.pid)
        return self.start is None or start == self.start


def pid_exists(pid: int) -> bool:
    """The signal 0 probe: whether a process of that PID exists (a reused PID reads as alive, the
    safe side; :meth:`Owner.alive` also compares the start time where /proc has it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
