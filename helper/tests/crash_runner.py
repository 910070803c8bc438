"""For the crash tests only, never shipped (the wheel holds ``src/`` alone): the real command line,
killed with SIGKILL right after the journal line ``<step>:<status>`` reached the disk, or, with
``stop@``, stopped there with SIGSTOP (frozen mid-work until the test sends SIGCONT).

    python crash_runner.py [stop@]STEP:STATUS [odoo-rollback arguments...]

The helper itself carries no test switch: this script wraps the journal's writer from outside, so
that each step's interruption is tested at an exact, repeatable moment (a test watching the journal
from another process could not stop, say, the rename that follows ``swap:start``).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from odoo_rollback import cli
from odoo_rollback.journal import Journal


def main() -> int:
    point, argv = sys.argv[1], sys.argv[2:]
    kill_at = point.removeprefix("stop@")
    how = signal.SIGSTOP if point.startswith("stop@") else signal.SIGKILL
    write = Journal.event

    def event(
        self: Journal, operation_id: str, step: str, status: str, message: str = "", data: dict[str, Any] | None = None
    ) -> int:
        seq = write(self, operation_id, step, status, message, data)
        if f"{step}:{status}" == kill_at:
            os.kill(os.getpid(), how)  # as a kill -9 (or -STOP) would, with this line on disk
        return seq

    Journal.event = event  # type: ignore[method-assign]
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
