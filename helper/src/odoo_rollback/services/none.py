"""No service control: for set-ups where the operator stops and starts Odoo by hand."""

from __future__ import annotations

from .base import ServiceBackend


class NoBackend(ServiceBackend):
    name = "none"

    def check(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def start(self) -> None:
        return None

    def status(self) -> dict[str, str]:
        return {}
