"""A stand-in for Odoo's service in the benchmarks: a real HTTP server on loopback that the restore
stops and starts (``command`` backend) and whose health check it waits for, as a user would.

    python service.py start PORT PIDFILE     (returns once the server is launched, not once it answers)
    python service.py stop PIDFILE
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start(port: str, pidfile: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", port, "--bind", "127.0.0.1", "--directory", str(pidfile.parent)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives this command, as a service does
    )
    pidfile.write_text(str(process.pid))


def stop(pidfile: Path) -> None:
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    pidfile.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(500):
        if not running(pid):
            return
        time.sleep(0.01)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's end may wait for a reaper that never comes in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


if __name__ == "__main__":
    if sys.argv[1] == "start":
        start(sys.argv[2], Path(sys.argv[3]))
    else:
        stop(Path(sys.argv[2]))
