"""systemd units, stopped in the configured order and started in the reverse order."""

from __future__ import annotations

import shutil
import subprocess

from ..errors import OperationFailed, ServiceError
from ..process import call, last_line
from .base import ServiceBackend


class SystemdBackend(ServiceBackend):
    name = "systemd"

    def _systemctl(self, *args: str, timeout: int = 30) -> subprocess.CompletedProcess[str]:
        try:
            return call(["systemctl", *args], timeout=timeout)
        except OperationFailed as exc:  # not installed, or no answer in time
            raise ServiceError(str(exc)) from exc

    def check(self) -> None:
        if shutil.which("systemctl") is None:
            raise ServiceError('systemctl is not available on this machine (services.backend = "systemd")')
        for unit in self.cfg.units:
            result = self._systemctl("cat", unit)
            if result.returncode != 0:
                raise ServiceError(f"systemd unit {unit} is unknown: {last_line(result.stderr)}")

    def stop(self) -> None:
        for unit in self.cfg.units:
            result = self._systemctl("stop", unit, timeout=self.cfg.stop_timeout)
            if result.returncode != 0:
                raise ServiceError(f"systemctl stop {unit} failed: {last_line(result.stderr)}")

    def start(self) -> None:
        for unit in reversed(self.cfg.units):
            result = self._systemctl("start", unit, timeout=self.cfg.start_timeout)
            if result.returncode != 0:
                raise ServiceError(f"systemctl start {unit} failed: {last_line(result.stderr)}")

    def status(self) -> dict[str, str]:
        return {unit: self._systemctl("is-active", unit).stdout.strip() or "unknown" for unit in self.cfg.units}
