"""Configured commands (argument lists, never a shell line) to stop and start the services."""

from __future__ import annotations

import shutil

from ..errors import OperationFailed, ServiceError
from ..process import call, last_line
from .base import ServiceBackend


class CommandBackend(ServiceBackend):
    name = "command"

    def check(self) -> None:
        for label, argv in (("stop_command", self.cfg.stop_command), ("start_command", self.cfg.start_command)):
            if not argv or shutil.which(argv[0]) is None:
                raise ServiceError(f"services.{label}: {argv[0] if argv else '(empty)'} is not an executable")

    def _run(self, argv: tuple[str, ...], what: str, timeout: int) -> None:
        try:
            result = call(argv, what=f"{what} command", timeout=timeout)
        except OperationFailed as exc:  # not installed, or no answer in time
            raise ServiceError(str(exc)) from exc
        if result.returncode != 0:
            detail = last_line(result.stderr) or last_line(result.stdout) or f"exit status {result.returncode}"
            raise ServiceError(f"{what} command failed: {detail}")

    def stop(self) -> None:
        self._run(self.cfg.stop_command, "stop", self.cfg.stop_timeout)

    def start(self) -> None:
        self._run(self.cfg.start_command, "start", self.cfg.start_timeout)

    def status(self) -> dict[str, str]:
        if not self.cfg.status_command:
            return {}
        try:
            result = call(self.cfg.status_command, what="status command", timeout=30)
        except OperationFailed as exc:
            raise ServiceError(str(exc)) from exc
        return {"services": "running" if result.returncode == 0 else "stopped"}
